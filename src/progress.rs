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
}

/// For callers that want no progress at all (tests, `--no-progress`).
pub struct Silent;

impl Reporter for Silent {}
