//! The caller's part of a request's [`Origin`]: who a registry token or a
//! login says they are.

use crate::auth::Principal;
use crate::auth::token::Claims;
use crate::origin::{AuthMethod, Origin};

/// `origin` as the holder of a registry token.
pub fn with_claims(mut origin: Origin, claims: Option<&Claims>) -> Origin {
    if let Some(claims) = claims
        && !claims.sub.is_empty()
    {
        origin.actor = Some(claims.sub.clone());
        origin.access_token = claims.berth_access_token.clone();
        origin.auth = if origin.access_token.is_some() {
            AuthMethod::AccessToken
        } else {
            AuthMethod::Password
        };
    }
    origin
}

/// `origin` as a user who logged in with a password or an access token.
pub fn with_principal(mut origin: Origin, principal: &Principal) -> Origin {
    origin.actor = principal.name.clone();
    origin.access_token = principal.access_token.clone();
    origin.auth = match (&principal.name, &principal.access_token) {
        (None, _) => AuthMethod::Anonymous,
        (Some(_), Some(_)) => AuthMethod::AccessToken,
        (Some(_), None) => AuthMethod::Password,
    };
    origin
}
