//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and a hasher whose state
//! can be saved between the chunks of an upload.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest. Only lowercase hex of the algorithm's exact length is
/// accepted, so its text is safe to use in a path or a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest must have the form algorithm:hex")]
    Malformed,
    #[error("unsupported digest algorithm `{0}` (sha256 and sha512 are supported)")]
    UnsupportedAlgorithm(String),
    #[error("digest hex must be {0} lowercase hexadecimal characters")]
    BadHex(usize),
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Digest of a byte slice held in memory (manifests; never layers).
    pub fn of_bytes(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = BlobHasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = s.split_once(':').ok_or(DigestError::Malformed)?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other if is_algorithm_grammar(other) => {
                return Err(DigestError::UnsupportedAlgorithm(other.to_string()));
            }
            _ => return Err(DigestError::Malformed),
        };
        let lower_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hex.len() != algorithm.hex_len() || !lower_hex {
            return Err(DigestError::BadHex(algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            text: s.to_string(),
        })
    }
}

/// `algorithm-component (algorithm-separator algorithm-component)*` from the spec.
fn is_algorithm_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An incremental hasher for either supported algorithm. Its state can be
/// saved with [`BlobHasher::save`] and restored with [`BlobHasher::restore`],
/// which lets an upload continue after a restart without re-reading the bytes
/// already received.
#[derive(Clone)]
pub enum BlobHasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

#[derive(Debug, thiserror::Error)]
#[error("saved hash state is corrupt")]
pub struct CorruptHashState;

impl BlobHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => BlobHasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => BlobHasher::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            BlobHasher::Sha256(_) => Algorithm::Sha256,
            BlobHasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            BlobHasher::Sha256(h) => h.update(bytes),
            BlobHasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything hashed so far; the hasher itself is kept.
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            BlobHasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            BlobHasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest {
            algorithm,
            text: format!("{}:{hex}", algorithm.name()),
        }
    }

    /// Serialized state: one byte naming the algorithm, then the hasher's own state.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        match self {
            BlobHasher::Sha256(h) => {
                out.push(1);
                out.extend_from_slice(h.serialize().as_slice());
            }
            BlobHasher::Sha512(h) => {
                out.push(2);
                out.extend_from_slice(h.serialize().as_slice());
            }
        }
        out
    }

    pub fn restore(saved: &[u8]) -> Result<Self, CorruptHashState> {
        let (tag, state) = saved.split_first().ok_or(CorruptHashState)?;
        match tag {
            1 => {
                let state =
                    SerializedState::<Sha256>::try_from(state).map_err(|_| CorruptHashState)?;
                Sha256::deserialize(&state)
                    .map(BlobHasher::Sha256)
                    .map_err(|_| CorruptHashState)
            }
            2 => {
                let state =
                    SerializedState::<Sha512>::try_from(state).map_err(|_| CorruptHashState)?;
                Sha512::deserialize(&state)
                    .map(BlobHasher::Sha512)
                    .map_err(|_| CorruptHashState)
            }
            _ => Err(CorruptHashState),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_valid_digests() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(
            long.parse::<Digest>().unwrap().algorithm(),
            Algorithm::Sha512
        );
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha256:{}/../x", "a".repeat(60)),
            &format!("SHA256:{}", "a".repeat(64)),
            &format!("sha256:{}", "a".repeat(65)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
        assert!(matches!(
            format!("md5:{}", "a".repeat(32)).parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn hashes_known_values() {
        assert_eq!(
            Digest::of_bytes(Algorithm::Sha256, b"").as_str(),
            EMPTY_SHA256
        );
        assert_eq!(
            Digest::of_bytes(Algorithm::Sha512, b"abc").as_str(),
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn saved_state_resumes_to_the_same_digest() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
            let mut first = BlobHasher::new(algorithm);
            first.update(&data[..3333]);
            let mut resumed = BlobHasher::restore(&first.save()).unwrap();
            resumed.update(&data[3333..]);
            assert_eq!(resumed.finish(), Digest::of_bytes(algorithm, &data));
        }
        assert!(BlobHasher::restore(&[1, 2, 3]).is_err());
        assert!(BlobHasher::restore(&[]).is_err());
    }
}
