//! Berth, an OCI container image registry.
//!
//! The direction of calls: `http → {registry, auth} → {metadata, storage} → oci`.
//! `config` and `server` wire the pieces together at start-up; `sync` holds
//! small concurrency utilities any layer may use, and uses none.

pub mod auth;
pub mod config;
pub mod gc;
pub mod http;
pub mod metadata;
pub mod metrics;
pub mod oci;
pub mod registry;
pub mod retention;
pub mod server;
pub mod storage;
pub mod sync;
