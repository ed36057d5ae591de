//! Passwords (Argon2id, deliberately slow) and generated secrets (random,
//! high-entropy, so a fast SHA-256 is enough to store them).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Prefix of every access-token secret, so a token given as a password is
/// recognised without a password-hash comparison (and without touching the
/// user's failed-login counter).
pub const ACCESS_TOKEN_PREFIX: &str = "berth_pat_";
pub const REFRESH_TOKEN_PREFIX: &str = "berth_rt_";

/// Memory per hash, in KiB, and passes: 7 MiB and 5 passes, one of the
/// configurations OWASP's password storage guide lists as equal in strength
/// to the crate's default of 19 MiB and 2 (its first choice). Each login
/// holds this memory while it hashes, and a server's peak memory is set by
/// its logins: 19 MiB was more than half of an idle server's.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;

fn argon2id() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An Argon2id hash of `password` with a fresh salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 hashes any password")
        .to_string()
}

/// Checks `password` against `phc` with the parameters `phc` names, so
/// hashes made with other parameters (the crate's defaults, before) keep
/// verifying.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            argon2id()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Argon2 takes 7 MiB (or what an older hash names) and most of a core for
/// each call. Calls wait here
/// for one of (number of cores) slots, so a burst of logins queues instead
/// of multiplying memory and starving every other request of CPU.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn in_turn<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let _slot = hashing_slots().acquire().await.expect("never closed");
    tokio::task::spawn_blocking(work).await
}

/// [`hash_password`] on the blocking pool, in its turn.
pub async fn hash_password_queued(password: String) -> String {
    in_turn(move || hash_password(&password))
        .await
        .expect("hashing a password does not panic")
}

/// [`verify_password`] on the blocking pool, in its turn.
pub async fn verify_password_queued(password: String, phc: String) -> bool {
    in_turn(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so an unknown
/// name takes as long to refuse as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password never matches"))
}

/// `bytes` random bytes, base64url without padding.
pub fn random_string(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

/// How generated secrets are stored and looked up.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse ", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("x", decoy_hash()));
    }

    #[test]
    fn hashes_made_with_the_crates_defaults_still_verify() {
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(old.contains("m=19456,t=2"), "{old}");
        assert!(verify_password("correct horse", &old));
        assert!(!verify_password("wrong horse", &old));
        assert!(hash_password("correct horse").contains("m=7168,t=5,p=1"));
    }

    #[test]
    fn random_strings_are_distinct() {
        assert_ne!(random_string(32), random_string(32));
        assert_eq!(random_string(32).len(), 43);
    }
}
