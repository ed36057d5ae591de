//! Visibility: a repository is public, so anyone may pull it, when it is a
//! public path or lies under one (`alice` makes every `alice/*` public).
//! Everything else is private: only its owner, the members of its
//! organization and administrators see it.

use crate::oci::name::lies_within;

/// True when `repository` is, or lies under, one of the public paths.
pub fn is_public(repository: &str, public_paths: &[String]) -> bool {
    public_via(repository, public_paths).is_some()
}

/// The public path that makes `repository` public, if any.
pub fn public_via<'p>(repository: &str, public_paths: &'p [String]) -> Option<&'p str> {
    public_paths
        .iter()
        .find(|path| lies_within(repository, path))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_path_covers_itself_and_what_lies_under_it() {
        let public = vec!["carol".to_string(), "dave/site".to_string()];
        assert_eq!(public_via("carol/x", &public), Some("carol"));
        assert!(is_public("dave/site", &public));
        assert!(!is_public("dave/site2", &public));
        assert!(!is_public("dave/other", &public));
        assert!(!is_public("carolx/app", &public));
        assert!(!is_public("anything", &[]));
    }
}
