//! The `artifactctl` binary: argument parsing, settings, output, prompts and
//! progress. Everything else lives in the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    artifactctl::interrupt::install();
    let cli = cli::args::Cli::parse();
    let out = cli::printer::Printer::new(&cli.global);
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
            out.error(&err);
            artifactctl::error::exit_code_for(&err).into()
        }
    }
}

/// `artifactctl list | head` should end quietly, as other Unix tools do,
/// instead of reporting a write error on a closed pipe.
fn restore_sigpipe() {
    // SAFETY: resetting a signal to its default disposition at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
