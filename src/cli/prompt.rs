//! Confirmation before destructive work: `--yes` skips it; on a terminal the
//! user is asked; anywhere else the command refuses rather than guess.

use std::io::{BufRead, IsTerminal};

use anyhow::Result;
use artifactctl::ArtifactError;

use crate::cli::printer::Printer;

/// `question` is asked on the printer's stderr; `yes_flag` names the flag
/// that skips it.
pub fn confirm(out: &Printer, question: &str, assume_yes: bool, yes_flag: &str) -> Result<bool> {
    if assume_yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(ArtifactError::refused(format!(
            "{question} needs confirmation, and standard input is not a terminal; pass {yes_flag} to go ahead"
        ))
        .into());
    }
    out.ask(&format!("{question} [y/N] "))?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
