//! Passwords (Argon2id, deliberately slow) and generated secrets (random,
//! high-entropy, so a fast SHA-256 is enough to store them).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Prefix of every access-token secret, so a token given as a password is
/// recognised without a password-hash comparison (and without touching the
/// user's failed-login counter).
pub const ACCESS_TOKEN_PREFIX: &str = "berth_pat_";
pub const REFRESH_TOKEN_PREFIX: &str = "berth_rt_";

/// Argon2id with the crate's defaults (19 MiB, 2 passes), as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any password")
        .to_string()
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Argon2 takes 19 MiB and most of a core for each call. Calls wait here
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
    fn random_strings_are_distinct() {
        assert_ne!(random_string(32), random_string(32));
        assert_eq!(random_string(32).len(), 43);
    }
}
