//! The pure engines: each takes plain values and returns a decision, with no
//! I/O (no `std::fs`, no `fsx`, no `ops`). They are tested with tables.

pub mod clear_rules;
pub mod entry;
pub mod gates;
pub mod pipeline;
pub mod query;
pub mod retention;
pub mod version;
