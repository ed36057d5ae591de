//! Reading what the registry needs out of a manifest (its kind, the blobs
//! and child manifests it refers to, its subject and artifact type) while the
//! bytes themselves are stored exactly as they were sent.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

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
#[error("{0}")]
pub struct ManifestError(pub String);

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError(msg.into())
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
        self.digest
            .parse()
            .map_err(|e| invalid(format!("{field}: invalid digest `{}`: {e}", self.digest)))
    }
}

/// Parses a manifest body. `content_type` is the request's `Content-Type`
/// without parameters, if any; the manifest's own `mediaType` wins when both
/// are present, and the shape decides when neither is.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let declared = raw.media_type.as_deref();
    if declared.is_some_and(|t| DOCKER_SCHEMA1.contains(&t))
        || content_type.is_some_and(|t| DOCKER_SCHEMA1.contains(&t))
        || raw.fs_layers.is_some()
    {
        return Err(invalid(
            "Docker schema 1 manifests are not supported; push schema 2 or OCI",
        ));
    }
    if raw.schema_version.as_ref().and_then(|v| v.as_i64()) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let generic = |t: &&str| !matches!(*t, "" | "application/json" | "application/octet-stream");
    let media_type = declared
        .or(content_type.filter(generic))
        .map(str::to_string)
        .unwrap_or_else(|| {
            if raw.manifests.is_some() {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            }
            .to_string()
        });

    let kind = match media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => ManifestKind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image,
        _ if raw.manifests.is_some() => ManifestKind::Index,
        _ => ManifestKind::Image,
    };

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
            raw.artifact_type
                .clone()
                .or_else(|| config.media_type.clone())
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
            raw.artifact_type.clone()
        }
    };

    Ok(ParsedManifest {
        media_type,
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
}
