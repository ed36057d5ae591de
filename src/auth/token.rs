//! Registry tokens: ES256 JWTs in the shape Docker's token protocol uses.
//! Verification pins the algorithm, finds the key by `kid`, and checks
//! signature, expiry and not-before (with a small leeway), audience and issuer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{KeyError, KeyRing};
use super::scope::Access;

/// Clock skew tolerated between instances and clients.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user name; empty for an anonymous token.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
    /// The access token this token was obtained with, if any: its limits
    /// also apply to what the catalog shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub berth_access_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: SystemTime,
}

pub struct TokenIssuer {
    keys: Arc<KeyRing>,
    issuer: String,
    service: String,
    lifetime: Duration,
    /// Tokens whose signature and claims were verified, by SHA-256 of the
    /// token text: a client sends the same token with every request, and an
    /// ES256 verification costs far more than the request it guards.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

/// Verified tokens remembered at most; the cache is simply emptied when full.
const VERIFIED_CACHE: usize = 10_000;

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenIssuer {
    pub fn new(keys: Arc<KeyRing>, issuer: String, service: String, lifetime: Duration) -> Self {
        Self {
            keys,
            issuer,
            service,
            lifetime,
            verified: Default::default(),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub async fn issue(
        &self,
        subject: &str,
        access: Vec<Access>,
        access_token: Option<String>,
    ) -> Result<Issued, TokenError> {
        let key = self.keys.signing_key().await?;
        let now = SystemTime::now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: self.service.clone(),
            exp: unix(now) + self.lifetime.as_secs(),
            nbf: unix(now),
            iat: unix(now),
            jti: super::secret::random_string(16),
            access,
            berth_access_token: access_token,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Invalid(format!("signing failed: {e}")))?;
        Ok(Issued {
            token,
            expires_in: self.lifetime.as_secs(),
            issued_at: now,
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use sha2::Digest as _;
        let fingerprint: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = unix(SystemTime::now());
        if let Some(claims) = self
            .verified
            .lock()
            .expect("token cache lock")
            .get(&fingerprint)
        {
            // The same text was verified before; only time can have changed.
            if claims.exp + LEEWAY_SECONDS > now {
                return Ok(claims.clone());
            }
            return Err(TokenError::Invalid("ExpiredSignature".into()));
        }
        let claims = self.verify_uncached(token).await?;
        let mut verified = self.verified.lock().expect("token cache lock");
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(fingerprint, claims.clone());
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        let invalid = |e: jsonwebtoken::errors::Error| TokenError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("the token names no key (kid)".into()))?;
        let key =
            self.keys.verifying_key(&kid).await?.ok_or_else(|| {
                TokenError::Invalid("the token is signed by an unknown key".into())
            })?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.service]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(invalid)?;
        Ok(data.claims)
    }
}
