//! Integration tests: the registry over HTTP, each test against SQLite and
//! against PostgreSQL, plus the real Docker engine, skopeo and podman (over
//! verified TLS in `tls.rs`), and the OCI conformance suite.

mod harness;
mod support;
mod ui_support;

mod auth;
mod base;
mod blob_stores;
mod blobs;
mod browse;
mod browser;
mod bulk_load;
mod cache;
mod cli;
mod conformance;
mod gc;
mod hostile_input;
pub mod instances;
mod manifests;
mod metadata_stores;
mod mounts;
mod namespaces;
mod quotas;
mod real_clients;
mod retention;
mod s3_storage;
mod soak;
mod tag_rules;
mod tls;
mod ui_account;
mod ui_admin;
mod ui_browse;
mod ui_manage;
mod ui_sessions;
mod uploads;
mod webhooks;
