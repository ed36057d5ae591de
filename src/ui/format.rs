//! How values read on a page: sizes, times (relative, with the absolute UTC
//! time for a hover title) and short digests. Computed into the view
//! structs, so templates only place strings.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `12.3 MB`, in decimal units as Docker Hub shows compressed sizes.
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().si().to_string()
}

/// `2026-12-02T20:49:33Z`.
pub fn absolute(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `3 minutes ago`, relative to `now`.
pub fn relative(unix_seconds: i64, now: i64) -> String {
    let seconds = now - unix_seconds;
    if seconds < 0 {
        return "just now".to_string();
    }
    let (amount, unit) = match seconds {
        0..60 => return "just now".to_string(),
        60..3_600 => (seconds / 60, "minute"),
        3_600..86_400 => (seconds / 3_600, "hour"),
        86_400..2_592_000 => (seconds / 86_400, "day"),
        2_592_000..31_536_000 => (seconds / 2_592_000, "month"),
        _ => (seconds / 31_536_000, "year"),
    };
    let plural = if amount == 1 { "" } else { "s" };
    format!("{amount} {unit}{plural} ago")
}

/// The first 12 hex digits, as `docker images` shows ids.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(1_000, 1_030), "just now");
        assert_eq!(relative(1_000, 1_000 + 60), "1 minute ago");
        assert_eq!(relative(1_000, 1_000 + 7_200), "2 hours ago");
        assert_eq!(relative(1_000, 1_000 + 3 * 86_400), "3 days ago");
        assert_eq!(relative(2_000, 1_000), "just now");
    }

    #[test]
    fn absolute_times_are_rfc3339_utc() {
        assert_eq!(absolute(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn sizes_are_decimal() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(12_300_000), "12.3 MB");
    }

    #[test]
    fn short_digests_drop_the_algorithm() {
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
