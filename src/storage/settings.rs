//! The `[storage]` and `[s3]` settings: where blobs live, and how the S3
//! client reaches its bucket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::S3Config;
use crate::setting::{Invalid, non_empty};

/// `[storage]` as a file or the environment spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// A filesystem path or `s3://bucket/prefix`; default `<data_dir>/blobs`.
    pub location: Option<String>,
    /// Filesystem storage: flush each blob to disk before its upload is
    /// acknowledged (the default). `false` leaves that to the kernel, as the
    /// reference registry and zot do: faster on slow disks, and safe against
    /// a crash of Berth, but a power loss can corrupt blobs pushed in the
    /// last seconds.
    pub fsync: bool,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            location: None,
            fsync: true,
        }
    }
}

/// `[s3]` as a file or the environment spell it; read when
/// `storage.location` is an `s3://` URL. Unset values come from the
/// standard `AWS_*` variables.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// For S3-compatible servers; `AWS_ENDPOINT` otherwise.
    pub endpoint: Option<String>,
    /// `AWS_REGION` otherwise.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID` otherwise.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY` otherwise.
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint; `AWS_ALLOW_HTTP` otherwise.
    pub allow_http: Option<bool>,
    /// Bucket-in-host-name addressing; path style (what S3-compatible servers expect) by default.
    pub virtual_hosted_style: bool,
    /// Multipart part size (5 MiB to 5 GiB), announced as `OCI-Chunk-Min-Length`.
    #[serde(deserialize_with = "crate::setting::size")]
    pub part_size: ByteSize,
    /// Redirect blob downloads to presigned URLs valid this long (e.g. `5m`); `off` by default.
    #[serde(with = "crate::setting::duration_or_off")]
    pub redirect: Option<Duration>,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: None,
            virtual_hosted_style: false,
            part_size: ByteSize::mib(8),
            redirect: None,
        }
    }
}

/// Where blobs live, after checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Filesystem(PathBuf),
    S3(S3Config),
}

impl StorageSettings {
    /// The blob store to open; `s3` is checked when the location is a bucket.
    /// An error in `s3` names that section.
    pub fn check(self, data_dir: &Path, s3: S3Settings) -> Result<StorageConfig, Invalid> {
        let location = match self.location {
            None => return Ok(StorageConfig::Filesystem(data_dir.join("blobs"))),
            Some(location) => location,
        };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return Err(Invalid::new(
                    "location",
                    format!("`{location}`: `{bucket}` is not an S3 bucket name"),
                ));
            }
            let s3 = s3.check(bucket, prefix).map_err(|e| e.in_section("s3"))?;
            return Ok(StorageConfig::S3(s3));
        }
        if location.contains("://") {
            return Err(Invalid::new(
                "location",
                format!("`{location}`: use a filesystem path or s3://bucket/prefix"),
            ));
        }
        if location.trim().is_empty() {
            return Err(Invalid::new("location", "is empty"));
        }
        Ok(StorageConfig::Filesystem(PathBuf::from(location)))
    }
}

impl S3Settings {
    /// The S3 client's settings for `bucket`, keys under `prefix`.
    pub fn check(self, bucket: &str, prefix: &str) -> Result<S3Config, Invalid> {
        let part_size = self.part_size.as_u64();
        if !(ByteSize::mib(5).as_u64()..=ByteSize::gib(5).as_u64()).contains(&part_size) {
            return Err(Invalid::new(
                "part_size",
                format!("`{}` is not between 5 MiB and 5 GiB", self.part_size),
            ));
        }
        if let Some(redirect) = self.redirect
            && !(1..=7 * 24 * 3600).contains(&redirect.as_secs())
        {
            return Err(Invalid::new(
                "redirect",
                format!(
                    "`{}` is not a duration between 1s and 7d, such as 5m",
                    humantime::format_duration(redirect)
                ),
            ));
        }
        Ok(S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: non_empty(self.endpoint),
            region: non_empty(self.region),
            access_key_id: non_empty(self.access_key_id),
            secret_access_key: non_empty(self.secret_access_key),
            allow_http: self.allow_http,
            virtual_hosted_style: self.virtual_hosted_style,
            part_size,
            redirect: self.redirect,
        })
    }
}

/// Never prints the secret key.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("part_size", &self.part_size)
            .field("redirect", &self.redirect)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(location: &str) -> StorageSettings {
        StorageSettings {
            location: Some(location.into()),
            ..StorageSettings::default()
        }
    }

    #[test]
    fn the_default_is_the_blobs_directory_of_the_data_dir() {
        let config = StorageSettings::default()
            .check(Path::new("/srv"), S3Settings::default())
            .unwrap();
        assert_eq!(
            config,
            StorageConfig::Filesystem(PathBuf::from("/srv/blobs"))
        );
        assert!(StorageSettings::default().fsync);
        let config = storage("/var/blobs")
            .check(Path::new("/srv"), S3Settings::default())
            .unwrap();
        assert_eq!(
            config,
            StorageConfig::Filesystem(PathBuf::from("/var/blobs"))
        );
    }

    #[test]
    fn a_bucket_takes_the_s3_section() {
        let s3 = S3Settings {
            endpoint: Some("http://127.0.0.1:8333".into()),
            region: Some(String::new()),
            part_size: ByteSize::mib(16),
            redirect: Some(Duration::from_secs(300)),
            ..S3Settings::default()
        };
        let StorageConfig::S3(config) = storage("s3://berth/registry/")
            .check(Path::new("."), s3)
            .unwrap()
        else {
            panic!("not S3");
        };
        assert_eq!(config.bucket, "berth");
        assert_eq!(config.prefix, "registry");
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(config.region, None, "empty means unset");
        assert_eq!(config.part_size, 16 * 1024 * 1024);
        assert_eq!(config.redirect, Some(Duration::from_secs(300)));
        let StorageConfig::S3(config) = storage("s3://berth")
            .check(Path::new("."), S3Settings::default())
            .unwrap()
        else {
            panic!("not S3");
        };
        assert_eq!(
            (config.prefix.as_str(), config.part_size),
            ("", 8 * 1024 * 1024)
        );
    }

    #[test]
    fn bad_values_name_their_key_and_section() {
        let check = |settings: StorageSettings, s3: S3Settings| {
            let e = settings.check(Path::new("."), s3).unwrap_err();
            (e.section, e.key)
        };
        for location in ["s3://Not_A_Bucket", "ftp://x", " ", "s3://ab"] {
            assert_eq!(
                check(storage(location), S3Settings::default()),
                (None, "location"),
                "{location}"
            );
        }
        let small = S3Settings {
            part_size: ByteSize::mb(5),
            ..S3Settings::default()
        };
        assert_eq!(
            check(storage("s3://berth"), small),
            (Some("s3"), "part_size")
        );
        let huge = S3Settings {
            part_size: ByteSize::gib(6),
            ..S3Settings::default()
        };
        assert_eq!(
            check(storage("s3://berth"), huge),
            (Some("s3"), "part_size")
        );
        let forever = S3Settings {
            redirect: Some(Duration::from_secs(8 * 24 * 3600)),
            ..S3Settings::default()
        };
        assert_eq!(
            check(storage("s3://berth"), forever),
            (Some("s3"), "redirect")
        );
        // The S3 section only matters for a bucket.
        let small = S3Settings {
            part_size: ByteSize::mib(1),
            ..S3Settings::default()
        };
        assert!(storage("/blobs").check(Path::new("."), small).is_ok());
    }

    #[test]
    fn no_secret_in_debug() {
        let s3 = S3Settings {
            secret_access_key: Some("s3cr3t".into()),
            ..S3Settings::default()
        };
        assert!(!format!("{s3:?}").contains("s3cr3t"));
        let config = s3.check("berth", "").unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
