//! The one place exit codes are defined. The README's table mirrors this enum
//! and a test keeps the two in step.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The command did what was asked.
    Success = 0,
    /// The operation failed or found problems (a failed step, a failed gate,
    /// a verify problem, an entry that could not be removed).
    Failure = 1,
    /// Usage error or bad input: a bad flag, ref, id or config; no such run;
    /// an id or version that already exists.
    Usage = 2,
    /// Interrupted by SIGINT or SIGTERM.
    Interrupted = 130,
}

impl ExitCode {
    /// A `delete` or `cleanup` confirmation prompt answered "no": the
    /// operation did not happen, so a script (or `&&`) must not go on as if
    /// it had.
    pub const DECLINED: ExitCode = ExitCode::Failure;

    pub const ALL: [ExitCode; 4] = [
        ExitCode::Success,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::Interrupted,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn is_success(self) -> bool {
        self == ExitCode::Success
    }

    /// The worse of two outcomes, so a command can fold per-item results.
    pub fn max(self, other: ExitCode) -> ExitCode {
        if other.code() > self.code() {
            other
        } else {
            self
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Failure.code(), 1);
        assert_eq!(ExitCode::Usage.code(), 2);
        assert_eq!(ExitCode::Interrupted.code(), 130);
    }

    #[test]
    fn max_keeps_the_worse_outcome() {
        assert_eq!(ExitCode::Success.max(ExitCode::Failure), ExitCode::Failure);
        assert_eq!(ExitCode::Usage.max(ExitCode::Failure), ExitCode::Usage);
    }

    #[test]
    fn readme_documents_every_code() {
        let readme = include_str!("../README.md");
        for code in ExitCode::ALL {
            let row = format!("| {} |", code.code());
            assert!(
                readme.contains(&row),
                "README.md exit-code table lacks {row}"
            );
        }
        let row_of = |code: ExitCode| {
            let head = format!("| {} |", code.code());
            readme
                .lines()
                .find(|l| l.starts_with(&head))
                .unwrap_or_default()
                .to_string()
        };
        // The cases a user asked about, each in the row of its code.
        assert!(row_of(ExitCode::DECLINED).contains("declined"));
        assert!(row_of(ExitCode::Usage).contains("no retention policy"));
        assert!(row_of(ExitCode::Usage).contains("not UTF-8"));
        assert!(row_of(ExitCode::Usage).contains("store folder that does not exist"));
    }
}
