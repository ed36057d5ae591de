//! Reading what the registry needs out of a manifest (its kind, the blobs
//! and child manifests it refers to, its subject and artifact type) while the
//! bytes themselves are stored exactly as they were sent.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::Digest;
use super::media_type::{MediaType, OCTET_STREAM};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Whether a stored manifest's media type is an index or manifest list.
pub fn is_index_type(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// The largest manifest accepted; the spec asks registries to take at least 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image or artifact manifest: a config and layers.
    Image,
    /// An index or manifest list: child manifests.
    Index,
}

/// A blob a manifest refers to. `required` is false for non-distributable
/// layers that carry `urls`: the spec lets those be absent from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobReference {
    pub digest: Digest,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub media_type: String,
    pub kind: ManifestKind,
    pub blobs: Vec<BlobReference>,
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one, its config's media type
    /// (what the referrers API reports).
    pub artifact_type: Option<String>,
    /// The manifest's annotations as a JSON object, kept for the referrers API.
    pub annotations: Option<String>,
}

impl ParsedManifest {
    /// The digests of the blobs it refers to.
    pub fn blob_digests(&self) -> Vec<&str> {
        self.blobs.iter().map(|b| b.digest.as_str()).collect()
    }

    /// The digests of the manifests it refers to (an index's children).
    pub fn child_digests(&self) -> Vec<&str> {
        self.children.iter().map(Digest::as_str).collect()
    }

    /// The first blob it requires that `present` says the registry lacks.
    pub fn missing_blob(&self, present: impl Fn(&str) -> bool) -> Option<&Digest> {
        self.blobs
            .iter()
            .find(|b| b.required && !present(b.digest.as_str()))
            .map(|b| &b.digest)
    }

    /// The first child manifest that `present` says the registry lacks.
    pub fn missing_child(&self, present: impl Fn(&str) -> bool) -> Option<&Digest> {
        self.children.iter().find(|c| !present(c.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Invalid(String),
    /// The body says one kind of manifest and the request's `Content-Type` another.
    #[error(
        "the manifest's mediaType `{declared}` contradicts the request's Content-Type `{content_type}`"
    )]
    Contradiction {
        declared: String,
        content_type: String,
    },
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

/// `text` for an error message, cut short: a hostile value may be huge.
fn shown(text: &str) -> String {
    const MAX_SHOWN: usize = 80;
    match text.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `text` as a media type, or an error naming `field`.
fn checked_media_type(field: &str, text: &str) -> Result<MediaType, ManifestError> {
    MediaType::parse(text).map_err(|e| {
        invalid(format!(
            "{field} `{}` is not a valid media type: {e}",
            shown(text)
        ))
    })
}

/// The manifest types Berth stores, in the spelling it serves them with.
pub const ACCEPTED_MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// The accepted manifest type `media_type` names (case-insensitively, parameters ignored).
pub fn accepted_manifest_type(media_type: &MediaType) -> Option<&'static str> {
    ACCEPTED_MANIFEST_TYPES
        .into_iter()
        .find(|t| media_type.same_essence(t))
}

/// The `Content-Type` to serve a stored manifest with: its media type when
/// that is one Berth accepts, else `application/octet-stream`. Values stored
/// before media types were checked may be anything, even `text/html` or a
/// line break, and must neither reach a browser as a page nor break the header.
pub fn served_media_type(stored: &str) -> &'static str {
    MediaType::parse(stored)
        .ok()
        .as_ref()
        .and_then(accepted_manifest_type)
        .unwrap_or(OCTET_STREAM)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
    fs_layers: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

impl RawDescriptor {
    fn digest(&self, field: &str) -> Result<Digest, ManifestError> {
        if self.size < 0 {
            return Err(invalid(format!("{field}: size must not be negative")));
        }
        self.digest.parse().map_err(|e| {
            invalid(format!(
                "{field}: invalid digest `{}`: {e}",
                shown(&self.digest)
            ))
        })
    }
}

/// Parses a manifest body. `content_type` is the request's `Content-Type`,
/// parameters included, if any. The manifest's own `mediaType` and the
/// `Content-Type` must agree unless the latter is generic; the shape decides
/// when neither names a type. Either way it must be a type Berth accepts.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let declared = raw
        .media_type
        .as_deref()
        .map(|t| checked_media_type("mediaType", t))
        .transpose()?;
    let content_type = content_type
        .filter(|t| !t.trim().is_empty())
        .map(|t| checked_media_type("Content-Type", t))
        .transpose()?;
    let schema1 = |t: &MediaType| DOCKER_SCHEMA1.iter().any(|s| t.same_essence(s));
    if declared.as_ref().is_some_and(schema1)
        || content_type.as_ref().is_some_and(schema1)
        || raw.fs_layers.is_some()
    {
        return Err(invalid(
            "Docker schema 1 manifests are not supported; push schema 2 or OCI",
        ));
    }
    if raw.schema_version.as_ref().and_then(|v| v.as_i64()) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    // Clients that do not know the type send a generic one, which says nothing.
    let specific = |t: &&MediaType| {
        !(t.same_essence("application/json") || t.same_essence("application/octet-stream"))
    };
    let content_type = content_type.as_ref().filter(specific);
    if let (Some(declared), Some(content_type)) = (&declared, content_type)
        && !declared.same_essence(content_type.essence())
    {
        return Err(ManifestError::Contradiction {
            declared: declared.to_string(),
            content_type: content_type.to_string(),
        });
    }
    let media_type = match declared.as_ref().or(content_type) {
        Some(named) => accepted_manifest_type(named).ok_or_else(|| {
            invalid(format!(
                "`{named}` is not a manifest type this registry accepts: use one of {}",
                ACCEPTED_MANIFEST_TYPES.join(", ")
            ))
        })?,
        None if raw.manifests.is_some() => OCI_INDEX,
        None => OCI_MANIFEST,
    };

    let kind = match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => ManifestKind::Index,
        _ => ManifestKind::Image,
    };
    // Served in the referrers list and matched by its filter.
    let artifact_type = raw
        .artifact_type
        .as_deref()
        .map(|t| checked_media_type("artifactType", t).map(|_| t.to_string()))
        .transpose()?;

    let subject = raw
        .subject
        .as_ref()
        .map(|s| s.digest("subject"))
        .transpose()?;
    let annotations = raw
        .annotations
        .as_ref()
        .filter(|a| !a.is_empty())
        .map(|a| serde_json::to_string(a).expect("string map serializes"));

    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let artifact_type = match kind {
        ManifestKind::Image => {
            if raw.manifests.is_some() {
                return Err(invalid(format!(
                    "an image manifest ({media_type}) cannot have `manifests`"
                )));
            }
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("image manifest has no `config`"))?;
            blobs.push(BlobReference {
                digest: config.digest("config")?,
                required: true,
            });
            for (i, layer) in raw.layers.iter().flatten().enumerate() {
                blobs.push(BlobReference {
                    digest: layer.digest(&format!("layers[{i}]"))?,
                    required: layer.urls.is_empty(),
                });
            }
            match (artifact_type, &config.media_type) {
                (Some(artifact_type), _) => Some(artifact_type),
                (None, Some(config_type)) => {
                    checked_media_type("config.mediaType (the artifact type)", config_type)?;
                    Some(config_type.clone())
                }
                (None, None) => None,
            }
        }
        ManifestKind::Index => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid(format!(
                    "an index ({media_type}) cannot have `config` or `layers`"
                )));
            }
            let manifests = raw
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("index has no `manifests`"))?;
            for (i, child) in manifests.iter().enumerate() {
                children.push(child.digest(&format!("manifests[{i}]"))?);
            }
            artifact_type
        }
    };

    Ok(ParsedManifest {
        media_type: media_type.to_string(),
        kind,
        blobs,
        children,
        subject,
        artifact_type,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn parses_an_oci_image_with_subject_and_foreign_layer() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example.sbom", "digest": d('a'), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d('b'), "size": 5},
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar", "digest": d('c'), "size": 5, "urls": ["https://example.com/x"]}
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d('e'), "size": 10},
            "annotations": {"org.example": "yes"}
        });
        let m = parse(body.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blobs.len(), 3);
        assert!(m.blobs[1].required && !m.blobs[2].required);
        assert_eq!(m.subject.as_ref().unwrap().to_string(), d('e'));
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.annotations.as_deref(), Some(r#"{"org.example":"yes"}"#));
        assert_eq!(m.blob_digests(), [d('a'), d('b'), d('c')]);
        // The foreign layer may be absent; the others may not.
        let (config, layer) = (d('a'), d('b'));
        assert_eq!(m.missing_blob(|x| x == config || x == layer), None);
        assert_eq!(
            m.missing_blob(|x| x == config).map(|d| d.to_string()),
            Some(layer.clone())
        );
        assert!(m.child_digests().is_empty() && m.missing_child(|_| false).is_none());
    }

    #[test]
    fn parses_indexes_and_infers_media_types() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": d('a'), "size": 7, "platform": {"os": "linux", "architecture": "amd64"}}]
        });
        let m = parse(body.to_string().as_bytes(), Some(DOCKER_MANIFEST_LIST)).unwrap();
        assert_eq!(
            (m.kind, m.media_type.as_str()),
            (ManifestKind::Index, DOCKER_MANIFEST_LIST)
        );
        let m = parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        assert_eq!(m.children.len(), 1);
    }

    #[test]
    fn refuses_malformed_manifests() {
        let cases = [
            "not json".to_string(),
            "{}".to_string(),
            r#"{"schemaVersion": 1, "fsLayers": []}"#.to_string(),
            r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}"#.to_string(),
            r#"{"schemaVersion": 2, "config": {"mediaType":"x","digest":"sha256:zz","size":1}, "layers": []}"#.to_string(),
            format!(r#"{{"schemaVersion": 2, "config": {{"mediaType":"x","digest":"{}","size":-1}}}}"#, d('a')),
            format!(r#"{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", "config": {{"mediaType":"x","digest":"{}","size":1}}}}"#, d('a')),
        ];
        for body in cases {
            assert!(parse(body.as_bytes(), None).is_err(), "{body} accepted");
        }
    }

    fn image(media_type: Option<&str>, artifact_type: Option<&str>, config_type: &str) -> String {
        let mut body = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": config_type, "digest": d('a'), "size": 2},
            "layers": [],
        });
        if let Some(media_type) = media_type {
            body["mediaType"] = media_type.into();
        }
        if let Some(artifact_type) = artifact_type {
            body["artifactType"] = artifact_type.into();
        }
        body.to_string()
    }

    const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

    #[test]
    fn only_manifest_types_are_stored_and_served() {
        for refused in [
            "text/html",
            "application/vnd.oci.image.layer.v1.tar",
            "application/json\r\nX-Injected: 1",
            "not a type",
        ] {
            let body = image(Some(refused), None, CONFIG);
            assert!(
                matches!(parse(body.as_bytes(), None), Err(ManifestError::Invalid(_))),
                "{refused} accepted as mediaType"
            );
            let body = image(None, None, CONFIG);
            assert!(
                parse(body.as_bytes(), Some(refused)).is_err(),
                "{refused} accepted as Content-Type"
            );
        }
        let huge = "a/".to_string() + &"b".repeat(100 * 1024);
        let error = parse(image(Some(&huge), None, CONFIG).as_bytes(), None).unwrap_err();
        assert!(error.to_string().len() < 400, "{error}");

        // Case and parameters do not matter; the canonical spelling is stored.
        let m = parse(
            image(None, None, CONFIG).as_bytes(),
            Some("Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        let m = parse(image(Some(DOCKER_MANIFEST), None, CONFIG).as_bytes(), None).unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);

        assert_eq!(served_media_type(OCI_INDEX), OCI_INDEX);
        assert_eq!(
            served_media_type("application/vnd.oci.image.index.v1+json; x=y"),
            OCI_INDEX
        );
        for stored in ["text/html", "application/json\r\nX: y", "", "a/b\0"] {
            assert_eq!(served_media_type(stored), "application/octet-stream");
        }
    }

    #[test]
    fn a_content_type_must_not_contradict_the_body() {
        let body = image(Some(OCI_MANIFEST), None, CONFIG);
        assert_eq!(
            parse(body.as_bytes(), Some(DOCKER_MANIFEST)).unwrap_err(),
            ManifestError::Contradiction {
                declared: OCI_MANIFEST.into(),
                content_type: DOCKER_MANIFEST.into()
            }
        );
        assert!(parse(body.as_bytes(), Some("text/html")).is_err());
        for agreeing in [
            None,
            Some(""),
            Some("application/json"),
            Some("Application/Octet-Stream"),
            Some("application/vnd.oci.image.manifest.v1+json;charset=utf-8"),
        ] {
            let m = parse(body.as_bytes(), agreeing).unwrap();
            assert_eq!(m.media_type, OCI_MANIFEST, "{agreeing:?}");
        }
    }

    #[test]
    fn artifact_types_follow_the_grammar_and_other_media_types_do_not_matter() {
        let m = parse(
            image(None, Some("application/vnd.example+json"), "x").as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );
        for (artifact_type, config_type) in [
            (Some("text/html\u{0}"), CONFIG),
            (Some("bad"), CONFIG),
            (None, "config\r\ntype"),
        ] {
            let body = image(None, artifact_type, config_type);
            assert!(
                parse(body.as_bytes(), None).is_err(),
                "{artifact_type:?} {config_type:?} accepted"
            );
        }
        // Layer media types are the artifact's business.
        let body = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": CONFIG, "digest": d('a'), "size": 2},
            "layers": [{"mediaType": "anything at all", "digest": d('b'), "size": 2}],
        });
        assert!(parse(body.to_string().as_bytes(), None).is_ok());
    }
}
