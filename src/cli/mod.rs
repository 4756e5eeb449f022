//! The binary's half of artifactctl: the only code that knows clap,
//! indicatif or the terminal.
//!
//! - [`args`]: the top-level `Cli` and the global flags (clap);
//! - [`commands`]: one thin file per command over `artifactctl::ops`;
//! - [`settings`]: the `Invocation`, and flags, environment and config
//!   resolved into each operation's options before any I/O;
//! - [`printer`]: the `Printer`, every byte of output, stdout for data and
//!   stderr for status;
//! - [`prompt`]: confirmations (`--yes`, a TTY question, or a refusal);
//! - [`reporters`]: progress bars behind the library's reporter traits.

pub mod args;
pub mod commands;
pub mod printer;
pub mod prompt;
pub mod reporters;
pub mod settings;
