use anyhow::Result;
use artifactctl::ExitCode;
use clap::CommandFactory;

/// Print the man page (roff) to stdout
///
/// Examples:
///   artifactctl man > /usr/local/share/man/man1/artifactctl.1
///   artifactctl man | man -l -
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {}

pub fn run(_args: Args) -> Result<ExitCode> {
    let man = clap_mangen::Man::new(crate::cli::args::Cli::command());
    man.render(&mut std::io::stdout())?;
    Ok(ExitCode::Success)
}
