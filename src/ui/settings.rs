//! The `[ui]` settings. The session lifetime is the web UI's to choose, but
//! sessions themselves are `auth`'s (`Auth::sign_in`), so `config` hands
//! the checked value to `AuthConfig::session_lifetime`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::Invalid;

/// The shortest and longest session a setting may ask for.
const SHORTEST: Duration = Duration::from_secs(5 * 60);
const LONGEST: Duration = Duration::from_secs(90 * 24 * 3600);

/// `[ui]`, as a file or the environment spell it and as it runs once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiSettings {
    /// How long a sign-in lasts (e.g. `12h`), from the moment of signing in;
    /// signing out or changing the password ends it sooner.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

impl UiSettings {
    pub fn check(self) -> Result<UiSettings, Invalid> {
        if !(SHORTEST..=LONGEST).contains(&self.session_lifetime) {
            return Err(Invalid::new(
                "session_lifetime",
                format!(
                    "`{}` is not a duration between 5m and 90d, such as 12h",
                    humantime::format_duration(self.session_lifetime)
                ),
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_last_twelve_hours_unless_set_within_bounds() {
        let defaults = UiSettings::default().check().unwrap();
        assert_eq!(defaults.session_lifetime, Duration::from_secs(12 * 3600));
        for seconds in [60, 91 * 24 * 3600] {
            let e = UiSettings {
                session_lifetime: Duration::from_secs(seconds),
            }
            .check()
            .unwrap_err();
            assert_eq!(e.key, "session_lifetime");
        }
    }
}
