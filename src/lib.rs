//! artifactctl: the store model and the operations behind the `artifactctl` binary.
//!
//! The library never touches the terminal: it reports progress through the
//! small traits of [`progress`] and returns data that the binary formats.
//! Every change to the filesystem goes through [`fsx`].
//!
//! - [`store`]: what a store is on disk: layout names, refs and ids,
//!   `metadata.json`, manifests, the journal, discovery and reading runs;
//! - [`fsx`]: the one module that mutates: atomic writes, the lock, staging,
//!   trash and sweep, transfer, the descriptor walker, fault points;
//! - [`ops`]: one file or folder per operation;
//! - [`interrupt`]: SIGINT and SIGTERM, checked by writers at safe points;
//! - [`policy`]: the pure engines (gates, retention, pipeline, clear rules,
//!   queries, versions), with no I/O.
//!
//! Read `docs/architecture.md` for the bird's-eye view and the invariants.

pub mod config;
pub mod error;
pub mod exit_codes;
pub mod fsx;
pub mod host;
pub mod interrupt;
pub mod ops;
pub mod policy;
pub mod progress;
pub mod remote;
pub mod store;

pub use error::{ArtifactError, ErrorKind};
pub use exit_codes::ExitCode;
