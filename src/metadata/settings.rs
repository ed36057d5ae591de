//! The `[database]` settings: which database, and how many connections.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::setting::{Invalid, non_empty, redact_url};

/// `[database]` as a file or the environment spell it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite:<path>` or `postgres://...`; default `sqlite:<data_dir>/berth.db`.
    pub url: Option<String>,
    /// Size of the connection pool.
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 16,
        }
    }
}

/// `[database]` after checking.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// The URL (defaulted under `data_dir`) and the pool size.
    pub fn check(self, data_dir: &Path) -> Result<DatabaseConfig, Invalid> {
        let url = non_empty(self.url)
            .unwrap_or_else(|| format!("sqlite:{}", data_dir.join("berth.db").display()));
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(Invalid::new(
                "url",
                format!(
                    "`{}` must start with sqlite: or postgres://",
                    redact_url(&url)
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(Invalid::new("max_connections", "must be at least 1"));
        }
        Ok(DatabaseConfig {
            url,
            max_connections: self.max_connections,
        })
    }
}

/// Never prints the password in the URL.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Never prints the password in the URL.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_sqlite_in_the_data_dir() {
        let config = DatabaseSettings::default()
            .check(Path::new("/srv"))
            .unwrap();
        assert_eq!(config.url, "sqlite:/srv/berth.db");
        assert_eq!(config.max_connections, 16);
        let empty = DatabaseSettings {
            url: Some(String::new()),
            ..DatabaseSettings::default()
        };
        assert_eq!(
            empty.check(Path::new("/srv")).unwrap().url,
            "sqlite:/srv/berth.db"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let check = |settings: DatabaseSettings| settings.check(Path::new(".")).unwrap_err().key;
        let mysql = DatabaseSettings {
            url: Some("mysql://db".into()),
            ..DatabaseSettings::default()
        };
        assert_eq!(check(mysql), "url");
        let none = DatabaseSettings {
            max_connections: 0,
            ..DatabaseSettings::default()
        };
        assert_eq!(check(none), "max_connections");
    }

    #[test]
    fn no_password_in_debug_or_errors() {
        let settings = DatabaseSettings {
            url: Some("postgres://u:secret@h/db".into()),
            ..DatabaseSettings::default()
        };
        assert!(!format!("{settings:?}").contains("secret"));
        let config = settings.check(Path::new(".")).unwrap();
        assert!(!format!("{config:?}").contains("secret"));
        let bad = DatabaseSettings {
            url: Some("mysql://u:secret@h/db".into()),
            ..DatabaseSettings::default()
        };
        assert!(
            !bad.check(Path::new("."))
                .unwrap_err()
                .reason
                .contains("secret")
        );
    }
}
