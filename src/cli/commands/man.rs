use std::path::PathBuf;

use anyhow::{Context as _, Result};
use artifactctl::{ArtifactError, ExitCode};
use clap::CommandFactory;

use crate::cli::printer::{plural, Printer};

/// Print the man page (roff) to stdout, or write one page per command
///
/// `artifactctl.1` lists the commands; each command has its own page with
/// all of its flags (`artifactctl-promote.1`, …), as `man artifactctl-promote`
/// shows once installed (`make install` writes them all).
///
/// Examples:
///   artifactctl man | man -l -
///   artifactctl man promote | man -l -
///   artifactctl man --dir /usr/local/share/man/man1
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Print this command's page instead of the main one
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write artifactctl.1 and every artifactctl-COMMAND.1 into DIR (which must exist)
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

/// The command tree as the pages show it: built, so that each subcommand's
/// display name is `artifactctl-<name>`.
fn built() -> clap::Command {
    let mut cmd = crate::cli::args::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn render(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut bytes)?;
    Ok(bytes)
}

pub fn run(out: &Printer, args: Args) -> Result<ExitCode> {
    let Args { command, dir } = args;
    let cmd = built();
    if let Some(dir) = dir {
        let mut pages = vec![cmd.clone()];
        pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        for page in &pages {
            let path = dir.join(clap_mangen::Man::new(page.clone()).get_filename());
            artifactctl::fsx::atomic_write(&path, &render(page.clone())?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        out.status(&format!(
            "wrote {} to {}",
            plural(pages.len() as u64, "man page", "man pages"),
            dir.display()
        ));
        return Ok(ExitCode::Success);
    }
    let page = match command {
        None => cmd,
        Some(name) => cmd.find_subcommand(&name).cloned().ok_or_else(|| {
            ArtifactError::usage(format!(
                "no command '{name}'; `artifactctl --help` lists them"
            ))
        })?,
    };
    let bytes = render(page)?;
    out.write_data(|w| w.write_all(&bytes))?;
    Ok(ExitCode::Success)
}
