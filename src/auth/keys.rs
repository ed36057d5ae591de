//! Token signing keys: ES256 (P-256) keys whose `kid` is their RFC 7638
//! thumbprint. Every instance on one database shares them: the first to
//! start generates generation 1 and stores it; `berth key rotate` adds the
//! next generation. The newest signs, every stored key verifies, and the
//! public halves are published as a JWKS document.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};

use crate::metadata::{AccountStore, MetadataError, SigningKeyRecord};

/// How often an instance looks for keys another instance added.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// An unknown `kid` triggers a reload at most this often.
const RELOAD_ON_MISS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key is not a PKCS#8 PEM P-256 key: {0}")]
    Invalid(String),
    #[error("cannot read signing key file {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Jwk,
}

impl SigningKey {
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let invalid = |e: jsonwebtoken::errors::Error| KeyError::Invalid(e.to_string());
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(invalid)?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(invalid)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(invalid)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(invalid)?;
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// A fresh P-256 key as PKCS#8 PEM.
    pub fn generate_pem() -> String {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        secret
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a P-256 key encodes as PKCS#8")
            .to_string()
    }
}

struct Loaded {
    signing: Arc<SigningKey>,
    by_kid: HashMap<String, Arc<SigningKey>>,
    at: Instant,
}

pub struct KeyRing {
    accounts: AccountStore,
    /// A key from `signing_key_file`: signs instead of the stored keys.
    file_key: Option<Arc<SigningKey>>,
    loaded: RwLock<Loaded>,
}

impl KeyRing {
    /// Loads the stored keys, generating the first one if there is none.
    pub async fn open(
        accounts: AccountStore,
        key_file: Option<&Path>,
    ) -> Result<KeyRing, KeyError> {
        let file_key = match key_file {
            Some(path) => {
                let pem =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|error| KeyError::File {
                            path: path.display().to_string(),
                            error,
                        })?;
                Some(Arc::new(SigningKey::from_pem(&pem)?))
            }
            None => None,
        };
        if file_key.is_none() && accounts.signing_keys().await?.is_empty() {
            // Two instances starting together race here; the generation's
            // primary key lets exactly one insert win and both load it.
            let pem = SigningKey::generate_pem();
            let key = SigningKey::from_pem(&pem)?;
            accounts
                .insert_signing_key(&SigningKeyRecord {
                    generation: 1,
                    kid: key.kid,
                    private_key_pem: pem,
                })
                .await?;
        }
        let loaded = Self::load(&accounts, file_key.clone()).await?;
        Ok(KeyRing {
            accounts,
            file_key,
            loaded: RwLock::new(loaded),
        })
    }

    async fn load(
        accounts: &AccountStore,
        file_key: Option<Arc<SigningKey>>,
    ) -> Result<Loaded, KeyError> {
        let mut by_kid = HashMap::new();
        let mut newest = None;
        for record in accounts.signing_keys().await? {
            let key = Arc::new(SigningKey::from_pem(&record.private_key_pem)?);
            by_kid.insert(key.kid.clone(), key.clone());
            newest = Some(key);
        }
        if let Some(key) = &file_key {
            by_kid.insert(key.kid.clone(), key.clone());
        }
        let signing = file_key
            .or(newest)
            .ok_or_else(|| KeyError::Invalid("no signing key is stored".into()))?;
        Ok(Loaded {
            signing,
            by_kid,
            at: Instant::now(),
        })
    }

    async fn reload(&self) -> Result<(), KeyError> {
        let loaded = Self::load(&self.accounts, self.file_key.clone()).await?;
        *self.loaded.write().expect("key ring lock") = loaded;
        Ok(())
    }

    fn age(&self) -> Duration {
        self.loaded.read().expect("key ring lock").at.elapsed()
    }

    /// The key new tokens are signed with.
    pub async fn signing_key(&self) -> Result<Arc<SigningKey>, KeyError> {
        if self.age() > RELOAD_EVERY {
            self.reload().await?;
        }
        Ok(self.loaded.read().expect("key ring lock").signing.clone())
    }

    /// The key with this `kid`, if this registry ever issued one.
    pub async fn verifying_key(&self, kid: &str) -> Result<Option<Arc<SigningKey>>, KeyError> {
        if let Some(key) = self.loaded.read().expect("key ring lock").by_kid.get(kid) {
            return Ok(Some(key.clone()));
        }
        if self.age() > RELOAD_ON_MISS_EVERY {
            self.reload().await?;
        }
        Ok(self
            .loaded
            .read()
            .expect("key ring lock")
            .by_kid
            .get(kid)
            .cloned())
    }

    pub async fn jwks(&self) -> Result<JwkSet, KeyError> {
        if self.age() > RELOAD_EVERY {
            self.reload().await?;
        }
        let loaded = self.loaded.read().expect("key ring lock");
        let mut keys: Vec<Jwk> = loaded.by_kid.values().map(|k| k.jwk.clone()).collect();
        keys.sort_by(|a, b| a.common.key_id.cmp(&b.common.key_id));
        Ok(JwkSet { keys })
    }

    /// Adds a new generation that signs from now on (on other instances
    /// within [`RELOAD_EVERY`]). Returns its `kid`.
    pub async fn rotate(accounts: &AccountStore) -> Result<String, KeyError> {
        loop {
            let next = accounts
                .signing_keys()
                .await?
                .last()
                .map_or(1, |k| k.generation + 1);
            let pem = SigningKey::generate_pem();
            let kid = SigningKey::from_pem(&pem)?.kid;
            let record = SigningKeyRecord {
                generation: next,
                kid: kid.clone(),
                private_key_pem: pem,
            };
            if accounts.insert_signing_key(&record).await? {
                return Ok(kid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_with_a_thumbprint_kid() {
        let pem = SigningKey::generate_pem();
        let key = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(key.kid.len(), 43, "base64url SHA-256 without padding");
        assert_eq!(SigningKey::from_pem(&pem).unwrap().kid, key.kid);
        assert_ne!(
            SigningKey::from_pem(&SigningKey::generate_pem())
                .unwrap()
                .kid,
            key.kid
        );
        assert!(SigningKey::from_pem("not a key").is_err());
    }
}
