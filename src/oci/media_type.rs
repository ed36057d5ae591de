//! Media types as RFC 6838 writes them (`type "/" subtype`, each a
//! restricted-name) with optional RFC 9110 parameters, and a length cap.
//! A value that passes is safe to send back as a `Content-Type` header: no
//! control characters, no line breaks, nothing a proxy would choke on.
//!
//! Only the grammar is checked here: config and layer media types of
//! artifacts are whatever their tools chose.

use std::fmt;
use std::str::FromStr;

/// Far above any registered media type, far below what breaks a proxy.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

/// RFC 6838 §4.2: a restricted-name is at most 127 characters.
const MAX_RESTRICTED_NAME_LEN: usize = 127;

/// What a media type falls back to when the one stored cannot be served.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// A media type that passed the grammar, kept as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    text: String,
    /// Where `type/subtype` ends (the parameters, if any, follow).
    essence_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaTypeError {
    #[error("a media type is at most {MAX_MEDIA_TYPE_LEN} characters")]
    TooLong,
    #[error(
        "a media type is type/subtype, each a letter or digit followed by up to 126 of letters, digits and !#$&-^_.+"
    )]
    BadEssence,
    #[error("media type parameters must be `; name=value`, the value a token or a quoted string")]
    BadParameter,
}

impl MediaType {
    pub fn parse(text: &str) -> Result<MediaType, MediaTypeError> {
        text.parse()
    }

    /// The whole text, parameters included.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `type/subtype`, without parameters, as written.
    pub fn essence(&self) -> &str {
        &self.text[..self.essence_len]
    }

    /// Whether the two name the same type and subtype, which are
    /// case-insensitive (RFC 6838 §4.2); parameters are ignored.
    pub fn same_essence(&self, other: &str) -> bool {
        self.essence().eq_ignore_ascii_case(other)
    }
}

impl FromStr for MediaType {
    type Err = MediaTypeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_MEDIA_TYPE_LEN {
            return Err(MediaTypeError::TooLong);
        }
        let bytes = text.as_bytes();
        let type_len = restricted_name(bytes).ok_or(MediaTypeError::BadEssence)?;
        if bytes.get(type_len) != Some(&b'/') {
            return Err(MediaTypeError::BadEssence);
        }
        let subtype_len =
            restricted_name(&bytes[type_len + 1..]).ok_or(MediaTypeError::BadEssence)?;
        let essence_len = type_len + 1 + subtype_len;
        parameters(&bytes[essence_len..]).ok_or(MediaTypeError::BadParameter)?;
        Ok(MediaType {
            text: text.to_string(),
            essence_len,
        })
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The length of the restricted-name `bytes` starts with, if it starts with one.
fn restricted_name(bytes: &[u8]) -> Option<usize> {
    if !bytes.first()?.is_ascii_alphanumeric() {
        return None;
    }
    let len = bytes
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        .count();
    (len <= MAX_RESTRICTED_NAME_LEN).then_some(len)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

/// `*( OWS ";" OWS [ token "=" ( token / quoted-string ) ] )` (RFC 9110
/// §5.6.6), the whole of `bytes`. Quoted strings hold printable ASCII only:
/// no control characters, and no bytes outside ASCII that a header may not carry.
fn parameters(bytes: &[u8]) -> Option<()> {
    let mut at = 0;
    loop {
        at = skip_whitespace(bytes, at);
        if at == bytes.len() {
            return Some(());
        }
        if bytes[at] != b';' {
            return None;
        }
        at = skip_whitespace(bytes, at + 1);
        // An empty parameter (`a/b;`) is allowed.
        if at == bytes.len() || bytes[at] == b';' {
            continue;
        }
        let name = bytes[at..].iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 || bytes.get(at + name) != Some(&b'=') {
            return None;
        }
        at += name + 1;
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match *bytes.get(at)? {
                    b'"' => break,
                    b'\\' => {
                        if !matches!(bytes.get(at + 1)?, b' ' | 0x21..=0x7e) {
                            return None;
                        }
                        at += 2;
                    }
                    b' ' | 0x21..=0x7e => at += 1,
                    _ => return None,
                }
            }
            at += 1;
        } else {
            let value = bytes[at..].iter().take_while(|&&b| is_tchar(b)).count();
            if value == 0 {
                return None;
            }
            at += value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_registered_and_vendor_types_with_parameters() {
        for text in [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.cncf.helm.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "text/plain; charset=utf-8",
            "text/plain;charset=\"utf-8\"",
            "a/b; x=\"quoted \\\" and ; inside\"; y=z",
            "application/json;",
            "x/y ;a=b\t; c=d",
            "A1!#$&-^_.+/b",
        ] {
            assert!(MediaType::parse(text).is_ok(), "{text} refused");
        }
        let parsed = MediaType::parse("Text/Plain; charset=utf-8").unwrap();
        assert_eq!(parsed.essence(), "Text/Plain");
        assert_eq!(parsed.as_str(), "Text/Plain; charset=utf-8");
        assert!(parsed.same_essence("text/plain"));
        assert!(!parsed.same_essence("text/html"));
    }

    #[test]
    fn refuses_what_the_grammar_does_not_allow() {
        for text in [
            "",
            "x",
            "application",
            "application/",
            "/json",
            "application//json",
            "-application/json",
            "application/-json",
            "application/json/extra",
            " application/json",
            "application /json",
            "application/js on",
            "application/json\r\nX-Injected: 1",
            "application/json\0",
            "application/jsön",
            "application/*",
            "application/json; charset",
            "application/json; charset=",
            "application/json; =utf-8",
            "application/json; charset=utf 8",
            "application/json; charset=\"unterminated",
            "application/json; charset=\"line\nbreak\"",
            "application/json; charset=\"tab\there\"",
            "application/json; charset=\"é\"",
            "application/json extra",
        ] {
            assert!(MediaType::parse(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn caps_names_and_the_whole_length() {
        let longest_name = "a".repeat(MAX_RESTRICTED_NAME_LEN);
        assert!(MediaType::parse(&format!("{longest_name}/{longest_name}")).is_ok());
        let long_name = "a".repeat(MAX_RESTRICTED_NAME_LEN + 1);
        assert_eq!(
            MediaType::parse(&format!("{long_name}/b")),
            Err(MediaTypeError::BadEssence)
        );
        assert_eq!(
            MediaType::parse(&format!("a/b; p={}", "v".repeat(MAX_MEDIA_TYPE_LEN))),
            Err(MediaTypeError::TooLong)
        );
        assert_eq!(
            MediaType::parse(&"a".repeat(100 * 1024)),
            Err(MediaTypeError::TooLong)
        );
    }
}
