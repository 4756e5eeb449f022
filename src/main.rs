//! The `artifactctl` binary: argument parsing, settings, output, prompts and
//! progress. Everything else lives in the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    artifactctl::interrupt::install();
    let cli = match cli::args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return parse_error(err),
    };
    let out = cli::printer::Printer::new(&cli.global);
    let json = cli.command.wants_json();
    let result = cli.command.run(&cli.global, &out);
    for notice in artifactctl::ops::take_notices() {
        out.warn(&notice);
    }
    let result = result.and_then(|code| Ok(out.flush().map(|()| code)?));
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            // Data written before the failure comes out before the error.
            let _ = out.flush();
            let code = artifactctl::error::exit_code_for(&err);
            if json {
                out.error_json(artifactctl::error::kind_name_for(&err), &err, code.code());
            } else {
                out.error(&err);
            }
            code.into()
        }
    }
}

/// A command line clap rejects: clap's own message and exit code, plus the
/// `--json` error object when the line asked for JSON (the subcommand was
/// not parsed, so its `--json` is looked for in the words themselves).
fn parse_error(err: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let asked_json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if informational || !asked_json {
        err.exit();
    }
    let _ = err.print();
    let message = err.render().to_string();
    let message = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    let code = artifactctl::ExitCode::Usage;
    let out = cli::printer::Printer::with_writers(
        Box::new(std::io::stdout()),
        Box::new(std::io::stderr()),
        cli::printer::Mode::default(),
    );
    let _ = out.json(&serde_json::json!({
        "error": {"kind": "usage", "message": message},
        "exit_code": code.code(),
    }));
    code.into()
}

/// `artifactctl list | head` should end quietly, as other Unix tools do,
/// instead of reporting a write error on a closed pipe.
fn restore_sigpipe() {
    // SAFETY: resetting a signal to its default disposition at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
