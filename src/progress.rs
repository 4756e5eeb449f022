//! Progress reporting. The library calls these traits; only the binary knows
//! how to draw them (indicatif on a TTY, nothing or plain lines elsewhere).
//!
//! One small trait per kind of report, with no default bodies: an
//! implementation either handles every call of a trait or does not implement
//! it, so no report is dropped by accident.
//!
//! - [`Progress`]: bounded or unbounded work (hashing, copying, verifying,
//!   removing, clearing) and status notes;
//! - [`StepReporter`]: the steps of a refresh pipeline;
//! - [`TransferReporter`]: files and bytes moving to or from a remote.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Things that are not files (runs, entries).
    Items,
    /// Files, counted one by one (clear).
    Files,
    Bytes,
}

/// Work that advances: hashing, copying, verifying, removal, clear.
pub trait Progress: Send + Sync {
    /// A new phase starts; `total` is known for bounded work.
    fn begin(&self, label: &str, total: Option<u64>, unit: Unit);
    fn advance(&self, n: u64);
    fn end(&self);
    /// A line of status for the user (never data).
    fn note(&self, message: &str);
}

/// The steps of a refresh pipeline.
pub trait StepReporter: Send + Sync {
    /// A pipeline step started running.
    fn step_started(&self, step: &str);
    /// One line a running step wrote to stdout or stderr.
    fn step_log(&self, step: &str, line: &str);
    /// A step ended; `outcome` reads like "ran in 1.2s" or "failed (exit 3)".
    fn step_finished(&self, step: &str, outcome: &str);
}

/// Files and bytes moving to or from a remote (`push`, `pull`), one run at
/// a time. Calls come from the transfers in flight, in any order.
pub trait TransferReporter: Send + Sync {
    /// A run's transfer starts: `files` files of `bytes` bytes in all are to
    /// be moved or found already there (`label` reads like "pushing
    /// raw/20261101_000000").
    fn transfer_started(&self, label: &str, files: u64, bytes: u64);
    /// `n` more bytes moved, or found already there.
    fn transfer_bytes(&self, n: u64);
    /// One more file is done (moved or found already there).
    fn transfer_file(&self);
    /// The run's transfer is over; `ok` is false when it failed.
    fn transfer_finished(&self, ok: bool);
}

/// For callers that want no progress at all (tests, `--no-progress`).
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _label: &str, _total: Option<u64>, _unit: Unit) {}
    fn advance(&self, _n: u64) {}
    fn end(&self) {}
    fn note(&self, _message: &str) {}
}

impl StepReporter for Silent {
    fn step_started(&self, _step: &str) {}
    fn step_log(&self, _step: &str, _line: &str) {}
    fn step_finished(&self, _step: &str, _outcome: &str) {}
}

impl TransferReporter for Silent {
    fn transfer_started(&self, _label: &str, _files: u64, _bytes: u64) {}
    fn transfer_bytes(&self, _n: u64) {}
    fn transfer_file(&self) {}
    fn transfer_finished(&self, _ok: bool) {}
}
