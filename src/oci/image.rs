//! What pages and `/api/v1` show of an image, read without blob storage:
//! the descriptors of a stored manifest (config, layers, an index's
//! children and their platforms), and a bounded summary of an image's
//! config (platform, created time, entrypoint and command, environment,
//! ports, labels, history), recorded once when the manifest is pushed.
//! Both parsers are lenient (unknown and missing fields are fine: a page
//! shows what there is) and bounded, so a hostile config cannot bloat the
//! database; strings are kept verbatim but for NUL, which the database
//! cannot hold (escaping is the page's job).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The config types whose content is an image config.
pub const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The largest config read at push; real ones are a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

const MAX_ENTRIES: usize = 200;
const MAX_TEXT: usize = 2048;

/// A platform: `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A step of the image's build history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The step made no layer (`ENV`, `CMD`, ...).
    #[serde(default)]
    pub empty_layer: bool,
}

/// What an image's config says about running it, as stored (JSON) with the manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryStep>,
}

/// What is recorded of an image config.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSummary {
    pub platform: Option<Platform>,
    /// Unix seconds.
    pub created: Option<i64>,
    pub config: ConfigSummary,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<RawRunConfig>,
    #[serde(default)]
    history: Option<Vec<RawHistory>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawHistory {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    empty_layer: Option<bool>,
}

/// `text` without NUL and cut to `MAX_TEXT` bytes (at a character boundary).
fn bounded(text: &str) -> String {
    let mut out: String = text.chars().filter(|&c| c != '\0').collect();
    if out.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

fn bounded_all(items: impl IntoIterator<Item = String>) -> Vec<String> {
    items
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|s| bounded(&s))
        .collect()
}

fn unix_time(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// An image config's summary; `None` when `bytes` is not a JSON object.
pub fn summarize_config(bytes: &[u8]) -> Option<ImageSummary> {
    let raw: RawConfig = serde_json::from_slice(bytes).ok()?;
    let platform = match (raw.os, raw.architecture) {
        (Some(os), Some(architecture)) if !os.is_empty() && !architecture.is_empty() => {
            Some(Platform {
                os: bounded(&os),
                architecture: bounded(&architecture),
                variant: raw.variant.filter(|v| !v.is_empty()).map(|v| bounded(&v)),
            })
        }
        _ => None,
    };
    let run = raw.config;
    let mut config = ConfigSummary::default();
    if let Some(run) = run {
        config.entrypoint = run.entrypoint.map(bounded_all);
        config.cmd = run.cmd.map(bounded_all);
        config.env = bounded_all(run.env.unwrap_or_default());
        config.exposed_ports = bounded_all(run.exposed_ports.unwrap_or_default().into_keys());
        config.labels = run
            .labels
            .unwrap_or_default()
            .into_iter()
            .take(MAX_ENTRIES)
            .map(|(k, v)| (bounded(&k), bounded(&v)))
            .collect();
        config.working_dir = run
            .working_dir
            .filter(|w| !w.is_empty())
            .map(|w| bounded(&w));
        config.user = run.user.filter(|u| !u.is_empty()).map(|u| bounded(&u));
    }
    config.history = raw
        .history
        .unwrap_or_default()
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|h| HistoryStep {
            created: h.created.as_deref().and_then(unix_time),
            created_by: bounded(h.created_by.as_deref().unwrap_or("")),
            comment: h.comment.filter(|c| !c.is_empty()).map(|c| bounded(&c)),
            empty_layer: h.empty_layer.unwrap_or(false),
        })
        .collect();
    Some(ImageSummary {
        platform,
        created: raw.created.as_deref().and_then(unix_time),
        config,
    })
}

/// A content descriptor of a stored manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// An index entry's platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The descriptors a stored manifest names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Descriptors {
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// An index's children.
    pub manifests: Vec<Descriptor>,
}

impl Descriptors {
    /// Config and layers: what an image's content weighs.
    pub fn content_size(&self) -> u64 {
        self.config.iter().chain(&self.layers).map(|d| d.size).sum()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<RawPlatform>,
    #[serde(default)]
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

impl From<RawDescriptor> for Descriptor {
    fn from(raw: RawDescriptor) -> Self {
        Descriptor {
            media_type: raw.media_type,
            digest: raw.digest,
            size: raw.size,
            platform: raw.platform.map(|p| Platform {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant.filter(|v| !v.is_empty()),
            }),
            artifact_type: raw.artifact_type,
        }
    }
}

/// The descriptors of a manifest's bytes (empty when they are not JSON).
pub fn descriptors(payload: &[u8]) -> Descriptors {
    let Ok(raw) = serde_json::from_slice::<RawManifest>(payload) else {
        return Descriptors::default();
    };
    Descriptors {
        config: raw.config.map(Descriptor::from),
        layers: raw
            .layers
            .unwrap_or_default()
            .into_iter()
            .map(Descriptor::from)
            .collect(),
        manifests: raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .map(Descriptor::from)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_config_is_summarized() {
        let config = br#"{"architecture":"arm64","variant":"v8","os":"linux",
            "created":"2026-11-30T10:00:00Z",
            "config":{"Entrypoint":["/bin/server"],"Cmd":["--port","80"],"Env":["PATH=/bin"],
              "ExposedPorts":{"80/tcp":{}},"Labels":{"evil":"<script>alert(1)</script>"},
              "WorkingDir":"/app","User":"1000"},
            "history":[{"created":"2026-11-30T10:00:00Z","created_by":"COPY . /app"},
              {"created_by":"CMD [\"--port\"]","empty_layer":true}],
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        let summary = summarize_config(config).unwrap();
        assert_eq!(summary.platform.unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(summary.created, Some(1_796_032_800));
        assert_eq!(
            summary.config.entrypoint,
            Some(vec!["/bin/server".to_string()])
        );
        assert_eq!(summary.config.exposed_ports, vec!["80/tcp".to_string()]);
        assert_eq!(summary.config.labels["evil"], "<script>alert(1)</script>");
        assert_eq!(summary.config.history.len(), 2);
        assert!(summary.config.history[1].empty_layer);
    }

    #[test]
    fn absurd_configs_are_bounded_or_refused() {
        assert_eq!(summarize_config(b"not json"), None);
        assert_eq!(summarize_config(b"[1,2]"), None);
        let empty = summarize_config(b"{}").unwrap();
        assert_eq!(empty.platform, None);
        let env: Vec<String> = (0..10_000).map(|i| format!("V{i}=x")).collect();
        let huge = serde_json::json!({
            "os": "linux\u{0}", "architecture": "amd64",
            "config": {"Env": env, "Labels": {"a": "b".repeat(100_000)}},
        });
        let summary = summarize_config(huge.to_string().as_bytes()).unwrap();
        assert_eq!(summary.platform.unwrap().os, "linux");
        assert_eq!(summary.config.env.len(), MAX_ENTRIES);
        assert!(summary.config.labels["a"].len() <= MAX_TEXT + '…'.len_utf8());
    }

    #[test]
    fn descriptors_of_an_index_carry_platforms() {
        let index = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":10,
             "platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let found = descriptors(index);
        assert_eq!(
            found.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/amd64"
        );
        let image = br#"{"config":{"mediaType":"c","digest":"sha256:c","size":5},
            "layers":[{"mediaType":"l","digest":"sha256:l","size":7}]}"#;
        assert_eq!(descriptors(image).content_size(), 12);
    }
}
