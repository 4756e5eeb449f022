//! The command registry: one module per command, each a thin wrapper that
//! declares its flags, has `settings` turn them into the library's options,
//! calls the library and prints the result through the `Printer`.

pub mod checkout;
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
pub mod pull;
pub mod push;
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
    #[command(visible_alias = "load")]
    Path(path::Args),
    Checkout(checkout::Args),
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
    Push(push::Args),
    Pull(pull::Args),
}

impl Command {
    /// Whether the command was given `--json`, so that a failure is reported
    /// as a JSON object on stdout too.
    pub fn wants_json(&self) -> bool {
        match self {
            Command::List(a) => a.json,
            Command::Show(a) => a.json,
            Command::Register(a) => a.json,
            Command::Promote(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Rollback(a) => a.json,
            Command::History(a) => a.json,
            Command::Cleanup(a) => a.json,
            Command::Clear(a) => a.json,
            Command::Refresh(a) => a.json,
            Command::Checkout(a) => a.json,
            Command::Push(a) => a.json,
            Command::Pull(a) => a.json,
            Command::Init(_)
            | Command::Path(_)
            | Command::Delete(_)
            | Command::Pin(_)
            | Command::Unpin(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Report(_) => false,
        }
    }

    pub fn run(self, global: &GlobalArgs, out: &Printer) -> Result<ExitCode> {
        match self {
            Command::Init(args) => init::run(global, out, args),
            Command::Completions(args) => completions::run(out, args),
            Command::Man(args) => man::run(out, args),
            other => {
                let ctx = Context::resolve(global, out)?;
                match &other {
                    Command::Register(_) | Command::Refresh(_) | Command::Pull(_) => {
                        ctx.check_store(true)?
                    }
                    // clear works on the project; the store is only kept out.
                    Command::Clear(_) => {}
                    _ => ctx.check_store(false)?,
                }
                match other {
                    Command::Register(args) => register::run(&ctx, out, args),
                    Command::List(args) => list::run(&ctx, out, args),
                    Command::Show(args) => show::run(&ctx, out, args),
                    Command::Path(args) => path::run(&ctx, out, args),
                    Command::Checkout(args) => checkout::run(&ctx, out, args),
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
                    Command::Push(args) => push::run(&ctx, out, args),
                    Command::Pull(args) => pull::run(&ctx, out, args),
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

/// A count flag (`--keep 5`, `--limit 10`): 0 or more. With
/// `allow_negative_numbers` on the command, `--keep -5` reaches here and is
/// told what is wrong, instead of clap's "unexpected argument '-5'".
pub fn count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("must be a positive number, not {n}")),
        _ => text
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("must be a positive number, not '{text}'")),
    }
}

/// `--jobs N`: 1 or more.
pub fn jobs(text: &str) -> Result<u16, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n < 1 => Err(format!("must be a positive number (1 or more), not {n}")),
        _ => text
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("must be a positive number (1 to 65535), not '{text}'")),
    }
}

/// Parse `KEY=VALUE`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// The remote `name` names (or `[remote] default`), opened.
pub fn open_remote(
    ctx: &crate::cli::settings::Context,
    name: Option<&str>,
) -> anyhow::Result<artifactctl::remote::Remote> {
    let (name, config) = ctx.config.remote(name)?;
    artifactctl::remote::Remote::open(&name, &config)
}
