//! The command registry: one module per command, each a thin wrapper that
//! declares its flags, has `settings` turn them into the library's options,
//! calls the library and prints the result through the `Printer`.

pub mod cleanup;
pub mod clear;
pub mod completions;
pub mod delete;
pub mod history;
pub mod init;
pub mod list;
pub mod man;
pub mod path;
pub mod pin;
pub mod promote;
pub mod refresh;
pub mod register;
pub mod report;
pub mod rollback;
pub mod show;
pub mod unpin;
pub mod verify;

use anyhow::Result;
use artifactctl::ExitCode;
use clap::Subcommand;

use crate::cli::args::GlobalArgs;
use crate::cli::printer::Printer;
use crate::cli::settings::Context;

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::Args),
    Register(register::Args),
    List(list::Args),
    Show(show::Args),
    Path(path::Args),
    Delete(delete::Args),
    Promote(promote::Args),
    Verify(verify::Args),
    Rollback(rollback::Args),
    History(history::Args),
    Cleanup(cleanup::Args),
    Pin(pin::Args),
    Unpin(unpin::Args),
    Clear(clear::Args),
    Completions(completions::Args),
    Man(man::Args),
    Refresh(refresh::Args),
    Report(report::Args),
}

impl Command {
    pub fn run(self, global: &GlobalArgs, out: &Printer) -> Result<ExitCode> {
        match self {
            Command::Init(args) => init::run(global, out, args),
            Command::Completions(args) => completions::run(out, args),
            Command::Man(args) => man::run(out, args),
            other => {
                let ctx = Context::resolve(global, out)?;
                match other {
                    Command::Register(args) => register::run(&ctx, out, args),
                    Command::List(args) => list::run(&ctx, out, args),
                    Command::Show(args) => show::run(&ctx, out, args),
                    Command::Path(args) => path::run(&ctx, out, args),
                    Command::Delete(args) => delete::run(&ctx, out, args),
                    Command::Promote(args) => promote::run(&ctx, out, args),
                    Command::Verify(args) => verify::run(&ctx, out, args),
                    Command::Rollback(args) => rollback::run(&ctx, out, args),
                    Command::History(args) => history::run(&ctx, out, args),
                    Command::Refresh(args) => refresh::run(&ctx, out, args),
                    Command::Cleanup(args) => cleanup::run(&ctx, out, args),
                    Command::Pin(args) => pin::run(&ctx, out, args),
                    Command::Unpin(args) => unpin::run(&ctx, out, args),
                    Command::Clear(args) => clear::run(&ctx, out, args),
                    Command::Report(args) => report::run(&ctx, out, args),
                    Command::Init(_) | Command::Completions(_) | Command::Man(_) => unreachable!(),
                }
            }
        }
    }
}

/// The `REF` argument of the commands that act on one run.
#[derive(Debug, clap::Args)]
pub struct RefArg {
    /// [stage/][namespace/](run-id|latest)
    #[arg(value_name = "REF")]
    pub reference: artifactctl::store::refs::RunRef,
}

/// Parse `KEY=VALUE`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}
