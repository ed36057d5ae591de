//! Standard Webhooks signatures: `webhook-signature: v1,<base64 of
//! HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`. A secret written
//! `whsec_<base64>` (as the Standard Webhooks libraries make them) is the
//! key its base64 decodes to; any other secret is used as its bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The key bytes a secret stands for.
pub fn key_of(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_").map(|b| STANDARD.decode(b)) {
        Some(Ok(key)) => key,
        _ => secret.as_bytes().to_vec(),
    }
}

/// The value of `webhook-signature` for one delivery.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key_of(secret)).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A new secret, `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("whsec_{}", STANDARD.encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification's test suite.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_plain_secret_is_its_bytes() {
        assert_eq!(key_of("not-base64"), b"not-base64");
        assert_eq!(key_of("whsec_AAEC"), vec![0, 1, 2]);
        assert!(new_secret().starts_with("whsec_"));
        assert_ne!(new_secret(), new_secret());
    }
}
