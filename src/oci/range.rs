//! Byte ranges: the `Content-Range` of an upload chunk and the `Range` of a
//! blob download.

/// An inclusive byte range `start..=end`, as HTTP writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes covered; never zero, since the range is inclusive.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// Parses an upload chunk's `Content-Range`: `<start>-<end>` as the spec
/// writes it, also tolerating the HTTP forms `bytes <start>-<end>[/<total>]`
/// and `bytes=<start>-<end>` that some clients send.
pub fn parse_chunk_range(value: &str) -> Option<ByteRange> {
    let value = value.trim();
    let value = value
        .strip_prefix("bytes=")
        .or_else(|| value.strip_prefix("bytes "))
        .unwrap_or(value);
    let value = value.split_once('/').map_or(value, |(range, _total)| range);
    let (start, end) = value.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = end.trim().parse().ok()?;
    (start <= end).then_some(ByteRange { start, end })
}

/// The outcome of a download's `Range` header against a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole blob (also for forms we do not serve,
    /// such as several ranges, which HTTP lets a server ignore).
    Whole,
    Partial(ByteRange),
    Unsatisfiable,
}

/// Reads a download's `Range` as RFC 9110 (section 14) lets a server:
///
/// - `bytes=N-M`, `bytes=N-` and `bytes=-N` are served, cut to the blob
///   (`bytes=-N` past the start is the whole blob, as a 206);
/// - a range starting at or past the end, an empty suffix (`bytes=-0`), any
///   range of an empty blob, and `bytes=N-M` with `M < N` (an invalid
///   range, which the RFC lets a server reject) are unsatisfiable: 416;
/// - several ranges, another unit, and text that is not a range at all are
///   ignored: the whole blob with 200 (a server may always ignore `Range`,
///   and a multipart answer is more than any registry client reads).
pub fn parse_download_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        // Suffix form: the last N bytes.
        let Some(suffix) = position(end) else {
            return RangeRequest::Whole;
        };
        if suffix == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        ByteRange {
            start: size.saturating_sub(suffix),
            end: size - 1,
        }
    } else {
        let Some(start) = position(start) else {
            return RangeRequest::Whole;
        };
        let end = if end.is_empty() {
            u64::MAX
        } else {
            match position(end) {
                Some(end) if end >= start => end,
                Some(_) => return RangeRequest::Unsatisfiable,
                None => return RangeRequest::Whole,
            }
        };
        if start >= size {
            return RangeRequest::Unsatisfiable;
        }
        ByteRange {
            start,
            end: end.min(size - 1),
        }
    };
    RangeRequest::Partial(range)
}

/// A byte position: digits only (Rust's own parse would take a `+`).
fn position(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges() {
        assert_eq!(
            parse_chunk_range("0-99"),
            Some(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_chunk_range("bytes 10-19/*"),
            Some(ByteRange { start: 10, end: 19 })
        );
        assert_eq!(
            parse_chunk_range("bytes=10-19"),
            Some(ByteRange { start: 10, end: 19 })
        );
        assert_eq!(parse_chunk_range("9-3"), None);
        assert_eq!(parse_chunk_range("x-3"), None);
        assert_eq!(parse_chunk_range("3"), None);
        assert_eq!(ByteRange { start: 5, end: 5 }.len(), 1);
    }

    #[test]
    fn download_ranges() {
        use RangeRequest::*;
        let r = |s, e| Partial(ByteRange { start: s, end: e });
        assert_eq!(parse_download_range(None, 10), Whole);
        assert_eq!(parse_download_range(Some("bytes=0-4"), 10), r(0, 4));
        assert_eq!(parse_download_range(Some("bytes=5-"), 10), r(5, 9));
        assert_eq!(parse_download_range(Some("bytes=5-100"), 10), r(5, 9));
        assert_eq!(parse_download_range(Some("bytes=-3"), 10), r(7, 9));
        assert_eq!(parse_download_range(Some("bytes=-30"), 10), r(0, 9));
        assert_eq!(parse_download_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_download_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_download_range(Some("bytes=0-1,3-4"), 10), Whole);
        assert_eq!(parse_download_range(Some("items=0-1"), 10), Whole);
        assert_eq!(parse_download_range(Some("bytes=4-2"), 10), Unsatisfiable);
        assert_eq!(parse_download_range(Some("bytes=500-0"), 10), Unsatisfiable);
        assert_eq!(parse_download_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_download_range(Some("bytes=-5"), 0), Unsatisfiable);
        assert_eq!(parse_download_range(Some("bytes= 2 - 3 "), 10), r(2, 3));
        assert_eq!(parse_download_range(Some("bytes=-"), 10), Whole);
        assert_eq!(parse_download_range(Some("bytes=1-2-3"), 10), Whole);
        assert_eq!(parse_download_range(Some("bytes=x-3"), 10), Whole);
        assert_eq!(parse_download_range(Some("bytes=+2-3"), 10), Whole);
        assert_eq!(
            parse_download_range(Some("bytes=99999999999999999999-"), 10),
            Whole
        );
    }
}
