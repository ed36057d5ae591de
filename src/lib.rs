//! Berth, an OCI container image registry.
//!
//! The direction of calls: `{http, cli} → {registry, auth, policy, admin, gc}
//! → {metadata, storage} → oci`; in the middle row `admin` calls `auth` and
//! `policy`, and `auth` and `gc` call `policy`. `config` and `server` wire
//! the pieces together at start-up (each module owning a settings section
//! checks it, with the leaf `setting`); `server` serves through `listener`
//! (connections, their limits, TLS handshakes), which uses `tls` (the
//! certificate, reloaded as its files change). The other leaves, which any layer
//! may use and which use nothing: `sync` (small concurrency utilities) and
//! `metrics` (used by `http` and `gc`). ARCHITECTURE.md draws the map.

pub mod admin;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod events;
pub mod gc;
pub mod http;
pub mod listener;
pub mod metadata;
pub mod metrics;
pub mod oci;
pub mod origin;
pub mod policy;
pub mod registry;
pub mod server;
pub mod setting;
pub mod storage;
pub mod sync;
pub mod tls;
pub mod ui;
