//! The OCI vocabulary: digests, repository names, tags, references, byte
//! ranges, media types, manifest parsing and the spec's error catalogue.
//!
//! Depends on nothing else in the crate; everything here is pure and unit
//! tested, so the layers above can trust a value once it has been parsed.

pub mod digest;
pub mod error_code;
pub mod image;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod pattern;
pub mod range;
pub mod text;

pub use digest::{Algorithm, BlobHasher, Digest};
pub use error_code::ErrorCode;
pub use media_type::MediaType;
pub use name::{Reference, RepositoryName, Tag};
