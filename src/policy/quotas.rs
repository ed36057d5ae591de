//! Quotas: a namespace (`team`, covering `team/*`) may store at most its
//! limit in bytes, each distinct blob counted once however many of its
//! repositories link it. The metadata store enforces the limit in the
//! transaction that records a blob or a mount; this module parses and
//! reports them.

use serde::Serialize;

use super::{PolicyError, PolicyResult};
use crate::metadata::QuotaUsage;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QuotaView {
    pub namespace: String,
    /// `None`: no quota.
    pub limit_bytes: Option<u64>,
    pub used_bytes: u64,
}

impl QuotaView {
    pub fn new(namespace: &str, usage: QuotaUsage) -> Self {
        Self {
            namespace: namespace.to_string(),
            limit_bytes: usage.limit,
            used_bytes: usage.used,
        }
    }
}

/// Quotas apply to namespaces: one path component.
pub fn check_namespace(namespace: &str) -> PolicyResult<()> {
    let valid = !namespace.contains('/') && namespace.parse::<crate::oci::RepositoryName>().is_ok();
    if valid {
        Ok(())
    } else {
        Err(PolicyError::Invalid(format!(
            "`{namespace}` is not a namespace name"
        )))
    }
}

/// Parses a size such as `10GiB`, `500MB` or `1048576` (bytes).
pub fn parse_size(text: &str) -> PolicyResult<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| PolicyError::Invalid(format!("`{text}` is not a size such as 10GiB")))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(PolicyError::Invalid(format!(
                "`{text}`: unknown unit (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )));
        }
    };
    Ok((number * factor as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size(" 1.5 KiB ").unwrap(), 1536);
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn quotas_name_a_namespace() {
        assert!(check_namespace("team").is_ok());
        assert!(check_namespace("team/app").is_err());
        assert!(check_namespace("Team").is_err());
    }
}
