use anyhow::Result;
use artifactctl::ExitCode;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::printer::Printer;

/// Print a shell completion script
///
/// Examples:
///   artifactctl completions bash > ~/.local/share/bash-completion/completions/artifactctl
///   artifactctl completions zsh > ~/.zfunc/_artifactctl
///   artifactctl completions fish > ~/.config/fish/completions/artifactctl.fish
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The shell to generate for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(out: &Printer, args: Args) -> Result<ExitCode> {
    let Args { shell } = args;
    let mut command = crate::cli::args::Cli::command();
    out.write_data(|w| {
        clap_complete::generate(shell, &mut command, "artifactctl", w);
        Ok(())
    })?;
    Ok(ExitCode::Success)
}
