//! Scopes as Docker's token protocol spells them (`repository:team/app:pull,push`,
//! `registry:catalog:*`), the `access` claim of a token, and the patterns an
//! access token may be limited to (`repository:team/*:pull`). Pure; no I/O.

use serde::{Deserialize, Serialize};

use crate::oci::pattern::glob_matches;

/// A set of repository actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const ALL: Actions = Actions(7);

    /// Parses `pull,push`; `*` means every action; unknown names are ignored.
    pub fn parse(list: &str) -> Actions {
        list.split(',').fold(Actions::NONE, |set, name| {
            set | match name.trim() {
                "pull" => Actions::PULL,
                "push" => Actions::PUSH,
                "delete" => Actions::DELETE,
                "*" => Actions::ALL,
                _ => Actions::NONE,
            }
        })
    }

    pub fn names(self) -> Vec<String> {
        [
            (Actions::PULL, "pull"),
            (Actions::PUSH, "push"),
            (Actions::DELETE, "delete"),
        ]
        .into_iter()
        .filter(|(action, _)| self.contains(*action))
        .map(|(_, name)| name.to_string())
        .collect()
    }

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Actions {
    type Output = Actions;
    fn bitor(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }
}

impl std::ops::BitAnd for Actions {
    type Output = Actions;
    fn bitand(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }
}

/// What a request needs, or what a token asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Repository { name: String, actions: Actions },
    Catalog,
}

impl Scope {
    /// Parses one scope. A repository name may itself contain a colon (a
    /// `host:port` prefix), so the type ends at the first colon and the
    /// actions start after the last.
    pub fn parse(text: &str) -> Option<Scope> {
        let (kind, rest) = text.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        match kind {
            "repository" if !name.is_empty() => Some(Scope::Repository {
                name: name.to_string(),
                actions: Actions::parse(actions),
            }),
            "registry" if name == "catalog" => Some(Scope::Catalog),
            _ => None,
        }
    }

    /// Space-separated scopes, as in the OAuth2 form and the challenge.
    pub fn parse_list(text: &str) -> Vec<Scope> {
        text.split_whitespace().filter_map(Scope::parse).collect()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Repository { name, actions } => {
                write!(f, "repository:{name}:{}", actions.names().join(","))
            }
            Scope::Catalog => f.write_str("registry:catalog:*"),
        }
    }
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn from_scope(scope: &Scope) -> Access {
        match scope {
            Scope::Repository { name, actions } => Access {
                kind: "repository".into(),
                name: name.clone(),
                actions: actions.names(),
            },
            Scope::Catalog => Access {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            },
        }
    }

    /// True when these claims cover everything `scope` needs.
    pub fn covers(claims: &[Access], scope: &Scope) -> bool {
        match scope {
            Scope::Catalog => claims.iter().any(|a| {
                a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*")
            }),
            Scope::Repository { name, actions } => {
                let granted = claims
                    .iter()
                    .filter(|a| a.kind == "repository" && a.name == *name)
                    .fold(Actions::NONE, |set, a| {
                        set | Actions::parse(&a.actions.join(","))
                    });
                granted.contains(*actions)
            }
        }
    }
}

/// A limit on what an access token may do: a scope whose repository name may
/// contain `*` wildcards (matching any run of characters, `/` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopePattern {
    Repository { pattern: String, actions: Actions },
    Catalog,
}

impl ScopePattern {
    pub fn parse(text: &str) -> Result<ScopePattern, String> {
        let bad = || {
            format!(
                "`{text}` is not a scope such as repository:team/*:pull,push or registry:catalog:*"
            )
        };
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
        match kind {
            "repository" => {
                let valid = !name.is_empty()
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*".contains(c)
                    });
                let actions = Actions::parse(actions);
                if !valid || actions.is_empty() {
                    return Err(bad());
                }
                Ok(ScopePattern::Repository {
                    pattern: name.to_string(),
                    actions,
                })
            }
            "registry" if name == "catalog" => Ok(ScopePattern::Catalog),
            _ => Err(bad()),
        }
    }

    /// The actions this pattern allows on `repository`.
    pub fn allows(&self, repository: &str) -> Actions {
        match self {
            ScopePattern::Repository { pattern, actions } if glob_matches(pattern, repository) => {
                *actions
            }
            _ => Actions::NONE,
        }
    }
}

impl std::fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopePattern::Repository { pattern, actions } => {
                write!(f, "repository:{pattern}:{}", actions.names().join(","))
            }
            ScopePattern::Catalog => f.write_str("registry:catalog:*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_split_on_the_first_and_last_colon() {
        assert_eq!(
            Scope::parse("repository:localhost:5000/team/app:pull,push"),
            Some(Scope::Repository {
                name: "localhost:5000/team/app".into(),
                actions: Actions::PULL | Actions::PUSH
            })
        );
        assert_eq!(Scope::parse("registry:catalog:*"), Some(Scope::Catalog));
        assert_eq!(Scope::parse("repository:app"), None);
        assert_eq!(Scope::parse("other:x:pull"), None);
        assert_eq!(
            Scope::parse_list("repository:a:pull registry:catalog:*").len(),
            2
        );
    }

    #[test]
    fn access_claims_cover_only_what_they_name() {
        let claims = vec![Access::from_scope(&Scope::Repository {
            name: "a/app".into(),
            actions: Actions::PULL,
        })];
        let pull = |name: &str| Scope::Repository {
            name: name.into(),
            actions: Actions::PULL,
        };
        assert!(Access::covers(&claims, &pull("a/app")));
        assert!(!Access::covers(&claims, &pull("b/app")));
        assert!(!Access::covers(
            &claims,
            &Scope::Repository {
                name: "a/app".into(),
                actions: Actions::PULL | Actions::PUSH
            }
        ));
        assert!(!Access::covers(&claims, &Scope::Catalog));
    }

    #[test]
    fn patterns_match_with_wildcards() {
        let team = ScopePattern::parse("repository:team/*:pull,push").unwrap();
        assert_eq!(team.allows("team/app"), Actions::PULL | Actions::PUSH);
        assert_eq!(team.allows("team/a/b"), Actions::PULL | Actions::PUSH);
        assert_eq!(team.allows("teamx/app"), Actions::NONE);
        assert_eq!(team.allows("other/team/app"), Actions::NONE);
        let exact = ScopePattern::parse("repository:team/app:pull").unwrap();
        assert_eq!(exact.allows("team/app"), Actions::PULL);
        assert_eq!(exact.allows("team/app2"), Actions::NONE);
        assert!(ScopePattern::parse("repository:Team/*:pull").is_err());
        assert!(ScopePattern::parse("repository:team/*:fly").is_err());
        assert_eq!(
            ScopePattern::parse("registry:catalog:*"),
            Ok(ScopePattern::Catalog)
        );
    }
}
