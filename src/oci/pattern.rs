//! `*` wildcards, as in access-token scopes (`team/*`) and tag rules (`v*`),
//! and the tag rules themselves.

use super::name::lies_within;

/// `*` matches any run of characters (`/` included); everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// A rule naming tags under a path: pattern `v*` at path `team` covers
/// `team/app:v1` and `team:v2`, not `teamx/app:v1` nor `team/app:latest`.
/// Immutable-tag rules are these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRule {
    /// A repository (`team/app`) or a namespace (`team`).
    pub path: String,
    pub pattern: String,
}

impl TagRule {
    pub fn covers(&self, repository: &str, tag: &str) -> bool {
        lies_within(repository, &self.path) && glob_matches(&self.pattern, tag)
    }
}

/// As refusals name it: "the rule `v*` on `team`".
impl std::fmt::Display for TagRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the rule `{}` on `{}`", self.pattern, self.path)
    }
}

/// The first of `tags` of `repository` that one of `rules` covers, and that rule.
pub fn first_covered<'t, 'r>(
    rules: &'r [TagRule],
    repository: &str,
    tags: impl IntoIterator<Item = &'t str>,
) -> Option<(&'t str, &'r TagRule)> {
    tags.into_iter().find_map(|tag| {
        rules
            .iter()
            .find(|rule| rule.covers(repository, tag))
            .map(|rule| (tag, rule))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules_cover_their_path_and_what_lies_under_it() {
        let rules = [TagRule {
            path: "team".into(),
            pattern: "v*".into(),
        }];
        assert_eq!(
            first_covered(&rules, "team/app", ["latest", "v1"]),
            Some(("v1", &rules[0]))
        );
        assert_eq!(
            first_covered(&rules, "team", ["v2"]),
            Some(("v2", &rules[0]))
        );
        assert_eq!(first_covered(&rules, "teamx/app", ["v1"]), None);
        assert_eq!(first_covered(&rules, "team/app", ["latest"]), None);
        assert_eq!(first_covered(&[], "team/app", ["v1"]), None);
    }

    #[test]
    fn stars_match_any_run() {
        assert!(glob_matches("v*", "v1.2.3"));
        assert!(!glob_matches("v*", "latest"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "aXc"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("ab*ba", "aba"));
    }
}
