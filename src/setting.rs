//! What the settings sections share: the error a section's check returns,
//! and the serde forms of the typed values (`5m` or `off`, `8MiB`).
//!
//! A leaf: it uses nothing else in the crate, so the modules that own a
//! section (`metadata`, `storage`, `auth`, `gc`) depend on it and never on
//! `config`, which composes them.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer, Serializer, de};

/// A setting that failed its section's check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct Invalid {
    /// The key within the section whose check failed, e.g. `token_lifetime`.
    pub key: &'static str,
    /// Set when the check looked at a key of another section (the storage
    /// check reads `[s3]`): that section's name.
    pub section: Option<&'static str>,
    /// Why, e.g. "`forever` is not a duration between 1m and 24h".
    pub reason: String,
}

impl Invalid {
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            section: None,
            reason: reason.into(),
        }
    }

    /// The same error, naming `section` as the one its key belongs to.
    pub fn in_section(self, section: &'static str) -> Self {
        Self {
            section: Some(section),
            ..self
        }
    }
}

/// Replaces a URL's password with `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

/// `Some(text)` unless it is empty: an empty value means "unset", as an
/// empty environment variable does.
pub fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

/// Serde form of an optional duration: `5m`, or `off` (or an empty value)
/// for none. `#[serde(with = "crate::setting::duration_or_off")]`.
pub mod duration_or_off {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => s.collect_str(&humantime::format_duration(*duration)),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Option<Duration>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration or `off`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                match text {
                    "" | "off" => Ok(None),
                    _ => humantime::parse_duration(text)
                        .map(Some)
                        .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self)),
                }
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Serde form of a size: `8MiB`, `5 MB`, or a number of bytes (bytesize's
/// syntax, with an error that says what a size looks like). Serialized by
/// bytesize itself. `#[serde(deserialize_with = "crate::setting::size")]`.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Bytes(u64),
        Text(String),
    }
    const EXPECTED: &str = "a size such as 8MiB";
    match Written::deserialize(d).map_err(|_| de::Error::custom(format!("not {EXPECTED}")))? {
        Written::Bytes(bytes) => Ok(ByteSize::b(bytes)),
        Written::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Str(&text), &EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
    struct Typed {
        #[serde(with = "duration_or_off")]
        interval: Option<Duration>,
        #[serde(deserialize_with = "size")]
        part: ByteSize,
    }

    #[test]
    fn durations_may_be_off_and_sizes_have_units() {
        let parse = |json: &str| serde_json::from_str::<Typed>(json);
        let typed = parse(r#"{"interval": "90s", "part": "16MiB"}"#).unwrap();
        assert_eq!(typed.interval, Some(Duration::from_secs(90)));
        assert_eq!(typed.part, ByteSize::mib(16));
        let typed = parse(r#"{"interval": "off", "part": 5242880}"#).unwrap();
        assert_eq!(typed.interval, None);
        assert_eq!(typed.part, ByteSize::mib(5));
        assert_eq!(
            parse(r#"{"interval": "", "part": "1 GiB"}"#)
                .unwrap()
                .interval,
            None
        );
        let err = parse(r#"{"interval": "soon", "part": 1}"#).unwrap_err();
        assert!(err.to_string().contains("a duration or `off`"), "{err}");
        let err = parse(r#"{"interval": "off", "part": "huge"}"#).unwrap_err();
        assert!(err.to_string().contains("a size such as 8MiB"), "{err}");
        // What is written out reads back the same.
        let typed = Typed {
            interval: Some(Duration::from_secs(600)),
            part: ByteSize::mib(8),
        };
        let json = serde_json::to_string(&typed).unwrap();
        assert_eq!(json, r#"{"interval":"10m","part":"8.0 MiB"}"#);
        assert_eq!(parse(&json).unwrap(), typed);
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("sqlite:./data/berth.db"),
            "sqlite:./data/berth.db"
        );
    }
}
