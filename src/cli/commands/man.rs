use anyhow::Result;
use artifactctl::ExitCode;
use clap::CommandFactory;

use crate::cli::printer::Printer;

/// Print the man page (roff) to stdout
///
/// Examples:
///   artifactctl man > /usr/local/share/man/man1/artifactctl.1
///   artifactctl man | man -l -
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {}

pub fn run(out: &Printer, args: Args) -> Result<ExitCode> {
    let Args {} = args;
    let man = clap_mangen::Man::new(crate::cli::args::Cli::command());
    out.write_data(|w| man.render(w))?;
    Ok(ExitCode::Success)
}
