//! artifactctl: the store model and the operations behind the `artifactctl` binary.
//!
//! The library never touches the terminal: it reports progress through
//! [`progress::Reporter`] and returns data that the binary formats. Every
//! change to the filesystem goes through [`fsx`].
//!
//! Read `docs/architecture.md` for the bird's-eye view and the invariants.

pub mod clear_rules;
pub mod config;
pub mod error;
pub mod exit_codes;
pub mod fsx;
pub mod gates;
pub mod journal;
pub mod manifest;
pub mod metadata;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod query;
pub mod refs;
pub mod retention;
pub mod store;

pub use error::{ArtifactError, ErrorKind};
pub use exit_codes::ExitCode;
