//! The UI's URLs under `/r/`, parsed and built in one place. A repository
//! name holds slashes, so what follows it is set off by `/-/`, which no name
//! contains (a name component starts with a letter or digit):
//!
//! | URL | page |
//! | --- | --- |
//! | `/r/<name>` | the repository's tags |
//! | `/r/<name>/-/untagged` | its untagged manifests |
//! | `/r/<name>/-/tags/<tag>` | a tag's manifest |
//! | `/r/<name>/-/manifests/<digest>` | a manifest by digest |
//! | `/r/<name>/-/settings` | management (visibility, immutable tags, retention) |
//! | `/r/<name>/-/delete` | confirm (`GET`) and delete (`POST`) a tag or manifest |
//! | `/r/<name>/-/<action>` | other management forms (`POST`) |
//! | `/n/<namespace>` | a namespace's settings and quota |
//! | `/n/<namespace>/<action>` | its management forms (`POST`) |

use crate::oci::{Digest, RepositoryName, Tag};

/// What a `/r/...` URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryView {
    Tags,
    Untagged,
    Tag(Tag),
    Manifest(Digest),
    Settings,
    Delete,
    /// Any other word after `/-/`: a management form's action.
    Action(String),
}

/// `path` is what follows `/r/`. `None` when no page has that URL.
pub fn parse(path: &str) -> Option<(RepositoryName, RepositoryView)> {
    let (name, rest) = match path.split_once("/-/") {
        Some((name, rest)) => (name, Some(rest)),
        None => (path.trim_end_matches('/'), None),
    };
    let name: RepositoryName = name.parse().ok()?;
    let view = match rest {
        None => RepositoryView::Tags,
        Some("untagged") => RepositoryView::Untagged,
        Some("settings") => RepositoryView::Settings,
        Some("delete") => RepositoryView::Delete,
        Some(rest) => match rest.split_once('/') {
            Some(("tags", tag)) => RepositoryView::Tag(tag.parse().ok()?),
            Some(("manifests", digest)) => RepositoryView::Manifest(digest.parse().ok()?),
            Some(_) => return None,
            None if !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') =>
            {
                RepositoryView::Action(rest.to_string())
            }
            None => return None,
        },
    };
    Some((name, view))
}

pub fn repository(name: &str) -> String {
    format!("/r/{name}")
}

pub fn untagged(name: &str) -> String {
    format!("/r/{name}/-/untagged")
}

pub fn tag(name: &str, tag: &str) -> String {
    format!("/r/{name}/-/tags/{tag}")
}

pub fn manifest(name: &str, digest: &str) -> String {
    format!("/r/{name}/-/manifests/{digest}")
}

pub fn settings(name: &str) -> String {
    format!("/r/{name}/-/settings")
}

pub fn delete(name: &str) -> String {
    format!("/r/{name}/-/delete")
}

/// Where a repository's management forms post: this, then the action.
pub fn actions(name: &str) -> String {
    format!("/r/{name}/-/")
}

/// A namespace's settings page (quota, visibility, rules for all of it).
pub fn namespace(namespace: &str) -> String {
    format!("/n/{namespace}")
}

/// Where a namespace's forms post: this, then the action.
pub fn namespace_actions(namespace: &str) -> String {
    format!("/n/{namespace}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_back_to_their_pages() {
        let (name, view) = parse("alice/web").unwrap();
        assert_eq!(name.as_str(), "alice/web");
        assert_eq!(view, RepositoryView::Tags);
        assert_eq!(
            parse("alice/web/-/untagged").unwrap().1,
            RepositoryView::Untagged
        );
        assert_eq!(
            parse("alice/web/-/tags/0.0.1").unwrap().1,
            RepositoryView::Tag("0.0.1".parse().unwrap())
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parse(&format!("alice/web/-/manifests/{digest}")).unwrap().1,
            RepositoryView::Manifest(digest.parse().unwrap())
        );
        assert_eq!(
            parse("alice/web/-/set-visibility").unwrap().1,
            RepositoryView::Action("set-visibility".into())
        );
    }

    #[test]
    fn nonsense_is_no_page() {
        for path in [
            "",
            "Alice/web",
            "alice/web/-/tags/bad tag",
            "alice/web/-/manifests/sha256:zz",
            "alice/web/-/what/ever",
            "alice/web/-/",
            "alice/web/-/<script>",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }
}
