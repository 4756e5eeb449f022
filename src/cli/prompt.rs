//! Confirmation before destructive work: `--yes` skips it; on a terminal the
//! user is asked; anywhere else the command refuses rather than guess.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use artifactctl::ArtifactError;

/// `question` is asked on stderr; `yes_flag` names the flag that skips it.
pub fn confirm(question: &str, assume_yes: bool, yes_flag: &str) -> Result<bool> {
    if assume_yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(ArtifactError::refused(format!(
            "{question} needs confirmation, and standard input is not a terminal; pass {yes_flag} to go ahead"
        ))
        .into());
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
