//! Progress reporting. The library calls a [`Reporter`]; only the binary knows
//! how to draw it (indicatif on a TTY, nothing or plain lines elsewhere).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Items,
    Bytes,
}

pub trait Reporter: Send + Sync {
    /// A new phase starts; `total` is known for bounded work.
    fn begin(&self, _label: &str, _total: Option<u64>, _unit: Unit) {}
    fn advance(&self, _n: u64) {}
    fn end(&self) {}
    /// A line of status for the user (never data).
    fn note(&self, _message: &str) {}
    /// A pipeline step started running (refresh).
    fn step_started(&self, _step: &str) {}
    /// One line a running step wrote to stdout or stderr.
    fn step_log(&self, _step: &str, _line: &str) {}
    /// A step ended; `outcome` reads like "ran in 1.2s" or "failed (exit 3)".
    fn step_finished(&self, _step: &str, _outcome: &str) {}
}

/// For callers that want no progress at all (tests, `--no-progress`).
pub struct Silent;

impl Reporter for Silent {}
