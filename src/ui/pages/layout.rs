//! What the frame around every page needs: who is signed in (for the
//! navigation and the sign-out form, which carries the CSRF token) and
//! where the stylesheet and script are.

use super::super::Viewer;
use super::super::assets::{SCRIPT, STYLESHEET};

pub struct Layout {
    pub user: Option<String>,
    pub is_admin: bool,
    /// Whether a sign-in link makes sense (authentication is on).
    pub can_sign_in: bool,
    pub csrf: String,
    pub stylesheet: &'static str,
    pub script: &'static str,
}

impl Layout {
    pub fn for_viewer(viewer: &Viewer) -> Layout {
        Layout {
            user: viewer.name().map(str::to_string),
            is_admin: viewer.is_admin(),
            can_sign_in: !viewer.open,
            csrf: viewer.csrf.clone(),
            stylesheet: STYLESHEET.as_str(),
            script: SCRIPT.as_str(),
        }
    }

    /// The frame of an error page, which names nobody.
    pub fn bare() -> Layout {
        Layout {
            user: None,
            is_admin: false,
            can_sign_in: false,
            csrf: String::new(),
            stylesheet: STYLESHEET.as_str(),
            script: SCRIPT.as_str(),
        }
    }
}
