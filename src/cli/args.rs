//! The command line: global flags and the command registry
//! (`commands::Command`).

use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};

use crate::cli::commands::Command;

const ABOUT: &str = "Manage machine-learning artifacts on disk: register, list, show, promote, clear and clean up runs";

const EXAMPLES: &str = "\
Examples:
  artifactctl init                          write a commented artifactctl.toml
  artifactctl register out/ --metric sharpe_ratio=1.4
  artifactctl list --where metrics.sharpe_ratio>1.0
  artifactctl show latest
  cd \"$(artifactctl path gru/BTCEUR/latest)\"
  artifactctl delete 20250724_150634

Exit codes: 0 success, 1 failed or problems found, 2 usage error or bad input, 130 interrupted.
Documentation: docs/ in the source tree (config.md, metadata.md, json.md, architecture.md).";

#[derive(Debug, Parser)]
#[command(name = "artifactctl", version, about = ABOUT, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Project root [default: nearest ancestor holding artifactctl.toml, else the current directory]
    #[arg(long, global = true, env = "ARTIFACTCTL_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Store folder [default: [store] dir, which defaults to <root>/artifacts]
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print only data and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more (repeat for more detail)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to use colour (NO_COLOR is respected under auto)
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,
    /// Never draw progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every command's `--help` ends with examples; walks the registry, so a
    /// new command without them fails here.
    #[test]
    fn every_subcommand_help_has_examples() {
        let cli = Cli::command();
        let mut names = Vec::new();
        for sub in cli.get_subcommands() {
            let help = sub.clone().render_long_help().to_string();
            assert!(
                help.contains("Examples:\n  artifactctl "),
                "`artifactctl {} --help` has no examples:\n{help}",
                sub.get_name()
            );
            names.push(sub.get_name().to_string());
        }
        assert!(names.len() >= 17, "only {names:?}");
        let top = Cli::command().render_long_help().to_string();
        assert!(top.contains("Examples:"));
    }
}
