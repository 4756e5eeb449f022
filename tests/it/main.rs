//! The end-to-end test suite: one binary (like cargo's `tests/testsuite`), so
//! the shared `support` module is compiled once. Every test runs the real
//! `artifactctl` binary; none imports the library.

#[macro_use]
mod support;

mod cleanup;
mod clear;
mod completions;
mod delete;
mod fault_matrix;
mod flags;
mod help;
mod history;
mod hostile_store;
mod ids_and_latest;
mod index;
mod init;
mod list;
mod metrics;
mod output;
mod path;
mod pin;
mod promote;
mod promote_layouts;
mod promote_shapes;
mod refresh;
mod register;
mod register_all;
mod remote;
mod remote_catalog;
mod remote_faults;
mod remote_layouts;
mod remote_packs;
mod remote_safety;
mod report;
mod rollback;
mod schema;
mod show;
mod signals;
mod tidy;
mod verify;
mod walk;
mod workflow;
