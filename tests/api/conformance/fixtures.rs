//! The content the suite pushes (upstream `setup.go`), serialized as upstream
//! serializes it (`image.go`'s types through Go's `json.MarshalIndent` with a
//! tab): field order, `omitempty`, byte slices as base64, and the unknown
//! `newUnspecifiedField` (present, `null` where unset) that a registry must
//! store and serve untouched.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use super::{OCI_INDEX, OCI_MANIFEST};
use crate::support::sha256;

/// A small gzipped tarball holding one text file (upstream `layerBase64String`).
const LAYER_BASE64: &str = "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0\
WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD\
jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA";

const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EMPTY_JSON_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// Bytes with their digest (upstream `TestBlob`).
#[derive(Clone)]
pub struct TestBlob {
    pub content: Vec<u8>,
    pub digest: String,
}

impl TestBlob {
    fn new(content: Vec<u8>) -> Self {
        let digest = sha256(&content);
        Self { content, digest }
    }
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    media_type: String,
    digest: String,
    size: usize,
    /// Base64 (Go's `[]byte`).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// Base64, and `null` when unset: upstream's field has no `omitempty`.
    new_unspecified_field: Option<String>,
}

impl Descriptor {
    fn of(media_type: &str, blob: &TestBlob) -> Self {
        Self {
            media_type: media_type.into(),
            digest: blob.digest.clone(),
            size: blob.content.len(),
            data: None,
            new_unspecified_field: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'static str>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'static str, &'static str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: &'static str,
    artifact_type: &'static str,
    manifests: Vec<Descriptor>,
    subject: Descriptor,
    annotations: BTreeMap<&'static str, &'static str>,
}

/// An image configuration (upstream `image`).
#[derive(Serialize)]
struct ImageConfig {
    author: String,
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// Go's `json.MarshalIndent(value, "", "\t")`.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer).unwrap();
    out
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A blob sent in two chunks (upstream `setupChunkedBlob`).
pub struct ChunkedBlob {
    pub blob: TestBlob,
    pub chunk1: Vec<u8>,
    pub chunk2: Vec<u8>,
    /// `Content-Range` of each chunk.
    pub chunk1_range: String,
    pub chunk2_range: String,
}

impl ChunkedBlob {
    pub fn new(size: usize, seed: u64) -> Self {
        let blob = TestBlob::new(random_bytes(size, seed));
        let split = size / 2 + 1;
        Self {
            chunk1: blob.content[..split].to_vec(),
            chunk2: blob.content[split..].to_vec(),
            chunk1_range: format!("0-{}", split - 1),
            chunk2_range: format!("{split}-{}", size - 1),
            blob,
        }
    }
}

/// Reproducible bytes for a seed (upstream `randomBlob`).
fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; size];
    StdRng::seed_from_u64(seed).fill(&mut bytes[..]);
    bytes
}

/// Upstream `randomString`: a fresh author makes each config's digest unique.
fn random_author() -> String {
    const LETTERS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
        .collect()
}

pub struct Fixtures {
    pub seed: u64,
    /// One config per workflow: 0 pull, 1 push, 2 discovery, 3 management,
    /// 4 the subject of the referrers. (Upstream makes 16, uses these five.)
    pub configs: Vec<TestBlob>,
    /// `manifests[i]`: `configs[i]` and the layer.
    pub manifests: Vec<TestBlob>,
    pub layer: TestBlob,
    /// `configs[1]` and no layers, without a `mediaType`.
    pub empty_layer_manifest: TestBlob,
    pub blob_a: TestBlob,
    pub chunked: ChunkedBlob,
    pub empty_json: TestBlob,
    pub ref_blob_a: TestBlob,
    pub ref_blob_b: TestBlob,
    pub artifact_type_a: &'static str,
    /// Referrers of `manifests[4]`: artifact type as the config's media type…
    pub refs_a_config: TestBlob,
    pub refs_b_config: TestBlob,
    /// …or as `artifactType`, the config the empty JSON.
    pub refs_a_layer: TestBlob,
    pub refs_b_layer: TestBlob,
    /// An index of `refs_a_config` and `refs_a_layer`, a referrer too.
    pub refs_index: TestBlob,
    /// A referrer of `manifests[3]`, which is not pushed when it is.
    pub refs_c_layer: TestBlob,
    pub annotation_key: &'static str,
    /// The annotation each referrer of `manifests[4]` carries, by digest.
    pub annotation_values: HashMap<String, String>,
    /// A digest nothing has (`sha256("hello world")`).
    pub dummy_digest: String,
    /// A reference that names no manifest.
    pub nonexistent_manifest: &'static str,
    pub invalid_manifest_content: &'static [u8],
}

impl Fixtures {
    pub fn new(seed: u64) -> Self {
        let configs: Vec<TestBlob> = (0..5)
            .map(|_| {
                TestBlob::new(to_json(&ImageConfig {
                    author: random_author(),
                    architecture: "amd64",
                    os: "linux",
                    rootfs: RootFs {
                        kind: "layers",
                        diff_ids: Vec::new(),
                    },
                }))
            })
            .collect();
        let layer = TestBlob::new(
            base64::engine::general_purpose::STANDARD
                .decode(LAYER_BASE64)
                .unwrap(),
        );
        let config_descriptor = |config: &TestBlob| Descriptor {
            // The config's own bytes inline, and a field no spec defines.
            data: Some(base64(&config.content)),
            new_unspecified_field: Some(base64(b"hello world")),
            ..Descriptor::of(CONFIG_MEDIA_TYPE, config)
        };
        let manifests: Vec<TestBlob> = configs
            .iter()
            .map(|config| {
                TestBlob::new(to_json(&Manifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST),
                    artifact_type: None,
                    config: config_descriptor(config),
                    layers: vec![Descriptor::of(LAYER_MEDIA_TYPE, &layer)],
                    subject: None,
                    annotations: None,
                }))
            })
            .collect();
        let empty_layer_manifest = TestBlob::new(to_json(&Manifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: config_descriptor(&configs[1]),
            layers: Vec::new(),
            subject: None,
            annotations: None,
        }));

        let empty_json = TestBlob::new(b"{}".to_vec());
        let empty_json_descriptor = Descriptor::of(EMPTY_JSON_MEDIA_TYPE, &empty_json);
        let ref_blob_a = TestBlob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
        let ref_blob_b = TestBlob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
        let artifact_type_a = "application/vnd.nhl.peanut.butter.bagel";
        let artifact_type_b = "application/vnd.nba.strawberry.jam.croissant";
        let annotation_key = "org.opencontainers.conformance.test";
        let mut annotation_values = HashMap::new();
        let subject = |manifest: &TestBlob| Descriptor::of(OCI_MANIFEST, manifest);
        let mut referrer = |artifact: Manifest| {
            let blob = TestBlob::new(to_json(&artifact));
            if let Some(annotations) = &artifact.annotations {
                annotation_values.insert(blob.digest.clone(), annotations[annotation_key].into());
            }
            blob
        };
        let config_artifact = |kind: &str, blob: &TestBlob, annotation| Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST),
            artifact_type: None,
            config: Descriptor::of(kind, blob),
            layers: vec![empty_json_descriptor.clone()],
            subject: Some(subject(&manifests[4])),
            annotations: Some(BTreeMap::from([(annotation_key, annotation)])),
        };
        let layer_artifact = |kind: &'static str, blob: &TestBlob, of: &TestBlob| Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST),
            artifact_type: Some(kind),
            config: empty_json_descriptor.clone(),
            layers: vec![Descriptor::of(kind, blob)],
            subject: Some(subject(of)),
            annotations: None,
        };
        let refs_a_config = referrer(config_artifact(
            artifact_type_a,
            &ref_blob_a,
            "test config a",
        ));
        let refs_b_config = referrer(config_artifact(
            artifact_type_b,
            &ref_blob_b,
            "test config b",
        ));
        let refs_a_layer = referrer(Manifest {
            annotations: Some(BTreeMap::from([(annotation_key, "test layer a")])),
            ..layer_artifact(artifact_type_a, &ref_blob_a, &manifests[4])
        });
        let refs_b_layer = referrer(Manifest {
            annotations: Some(BTreeMap::from([(annotation_key, "test layer b")])),
            ..layer_artifact(artifact_type_b, &ref_blob_b, &manifests[4])
        });
        let refs_c_layer = referrer(layer_artifact(artifact_type_b, &ref_blob_b, &manifests[3]));
        let refs_index = TestBlob::new(to_json(&Index {
            schema_version: 2,
            media_type: OCI_INDEX,
            artifact_type: "application/vnd.food.stand",
            manifests: vec![
                Descriptor::of(OCI_MANIFEST, &refs_a_config),
                Descriptor::of(OCI_MANIFEST, &refs_a_layer),
            ],
            subject: subject(&manifests[4]),
            annotations: BTreeMap::from([(annotation_key, "test index")]),
        }));
        annotation_values.insert(refs_index.digest.clone(), "test index".into());

        Self {
            seed,
            configs,
            manifests,
            layer,
            empty_layer_manifest,
            blob_a: TestBlob::new(random_bytes(42, seed.wrapping_add(1))),
            chunked: ChunkedBlob::new(42, seed.wrapping_add(2)),
            empty_json,
            ref_blob_a,
            ref_blob_b,
            artifact_type_a,
            refs_a_config,
            refs_b_config,
            refs_a_layer,
            refs_b_layer,
            refs_index,
            refs_c_layer,
            annotation_key,
            annotation_values,
            dummy_digest: sha256(b"hello world"),
            nonexistent_manifest: ".INVALID_MANIFEST_NAME",
            invalid_manifest_content: b"blablabla",
        }
    }
}
