//! Error classification. Library functions return `anyhow::Result`; where the
//! caller must react to *what kind* of failure happened (to pick an exit code),
//! the root cause is an [`ArtifactError`].

use std::fmt;

use crate::exit_codes::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed input: a bad flag value, ref, id, config file or gate.
    Usage,
    /// The named run, file or version does not exist.
    NotFound,
    /// The target already exists (an id or version), or a race was lost.
    Conflict,
    /// The operation was refused to protect data (no `--yes`, a protected run).
    Refused,
    /// The store or a file in it is not in the shape it should be.
    Corrupt,
    /// The change was published, but a step after it (moving `latest`, the
    /// journal, read-only bits, the changelog) failed.
    Incomplete,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct ArtifactError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ArtifactError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ArtifactError {
            kind,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    pub fn incomplete(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Incomplete, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Interrupted, message)
    }

    pub fn exit_code(&self) -> ExitCode {
        match self.kind {
            ErrorKind::Usage | ErrorKind::NotFound | ErrorKind::Conflict => ExitCode::Usage,
            ErrorKind::Refused | ErrorKind::Corrupt | ErrorKind::Incomplete => ExitCode::Failure,
            ErrorKind::Interrupted => ExitCode::Interrupted,
        }
    }
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ArtifactError {}

impl ErrorKind {
    /// The name `--json` error objects carry as `error.kind`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Refused => "refused",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Incomplete => "incomplete",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

/// The kind name of any error: the first [`ArtifactError`] in the chain, or
/// `failure` for anything else (I/O and the like).
pub fn kind_name_for(err: &anyhow::Error) -> &'static str {
    err.chain()
        .find_map(|e| e.downcast_ref::<ArtifactError>())
        .map_or("failure", |e| e.kind.name())
}

/// The exit code for any error: the first [`ArtifactError`] in the chain
/// decides, anything else (I/O and the like) is a plain failure.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|e| e.downcast_ref::<ArtifactError>())
        .map(ArtifactError::exit_code)
        .unwrap_or(ExitCode::Failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_code_comes_from_the_classified_cause() {
        let err = anyhow::Error::new(ArtifactError::not_found("no run")).context("show");
        assert_eq!(exit_code_for(&err), ExitCode::Usage);
        let err: anyhow::Result<()> = Err(std::io::Error::other("disk")).context("write");
        assert_eq!(exit_code_for(&err.unwrap_err()), ExitCode::Failure);
        let err = anyhow::Error::new(ArtifactError::refused("protected"));
        assert_eq!(exit_code_for(&err), ExitCode::Failure);
        let err = anyhow::Error::new(ArtifactError::interrupted("stop")).context("register");
        assert_eq!(exit_code_for(&err), ExitCode::Interrupted);
    }
}
