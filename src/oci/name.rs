//! Repository names, tags and manifest references, validated against the
//! distribution spec's grammar before they can reach a query or a path.

use std::fmt;
use std::str::FromStr;

use super::digest::Digest;

/// The spec limits host plus name to 255 characters; a name alone must leave room for a host.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

/// The first path component: the namespace a repository belongs to.
pub fn namespace_of(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// True when `repository` is `path` or lies under it (`team` covers
/// `team/app`, not `teamx/app`): how visibility, tag rules and retention
/// policies name what they apply to.
pub fn lies_within(repository: &str, path: &str) -> bool {
    repository == path
        || (repository.starts_with(path) && repository.as_bytes().get(path.len()) == Some(&b'/'))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub &'static str);

impl RepositoryName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepositoryName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(NameError("repository name is empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError("repository name is longer than 255 characters"));
        }
        if !s.split('/').all(is_path_component) {
            return Err(NameError(
                "repository name must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*",
            ));
        }
        Ok(RepositoryName(s.to_string()))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of alphanumerics is required at the start and after every separator.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[sep_start..i];
        let valid = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || s.len() > MAX_TAG_LEN {
            return Err(NameError(
                "tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
            ));
        }
        Ok(Tag(s.to_string()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference containing `:` is a digest (tags cannot contain one).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(ReferenceError::Digest)
        } else {
            s.parse().map(Reference::Tag).map_err(ReferenceError::Tag)
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReferenceError {
    #[error("{0}")]
    Digest(super::digest::DigestError),
    #[error("{0}")]
    Tag(NameError),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn paths_cover_themselves_and_what_lies_below() {
        assert!(lies_within("team", "team"));
        assert!(lies_within("team/app", "team"));
        assert!(lies_within("team/a/b", "team/a"));
        assert!(!lies_within("teamx/app", "team"));
        assert!(!lies_within("team", "team/app"));
        assert_eq!(namespace_of("team/app"), "team");
        assert_eq!(namespace_of("app"), "app");
    }

    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "alice/our-web-server",
            "library/ubuntu",
            "a.b/c_d/e__f/g---h",
            "0/1/2",
            "foo/blobs/bar",
            "x.y.z",
        ] {
            assert!(ok.parse::<RepositoryName>().is_ok(), "{ok} refused");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "", "Alice", "a/", "/a", "a//b", "a/../b", "..", "a.-b", "a___b", "a._b", "-a", "a-",
            "a%2Fb", "a b", "a:5000/b",
        ] {
            assert!(bad.parse::<RepositoryName>().is_err(), "{bad:?} accepted");
        }
        assert!("a".repeat(256).parse::<RepositoryName>().is_err());
        assert!("a".repeat(255).parse::<RepositoryName>().is_ok());
    }

    #[test]
    fn validates_tags() {
        for ok in ["latest", "0.0.1", "_x", "V1-rc.2_b", &"t".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok} refused");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", &"t".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(Reference::parse("sha256:short").is_err());
    }
}
