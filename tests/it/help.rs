//! `--help` of the binary and of every subcommand, pinned by snapshots so a
//! change to any flag, default or wording shows up in review.

use crate::support::{bin, stdout_of};

/// The subcommands `artifactctl --help` lists, read from that output so a new
/// subcommand cannot go without a snapshot.
fn subcommands() -> Vec<String> {
    let help = stdout_of(bin().arg("--help"));
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn top_level_help() {
    assert_output_snapshot!(None, "help", stdout_of(bin().arg("--help")));
}

#[test]
fn every_subcommand_has_a_help_snapshot() {
    let names = subcommands();
    assert!(names.len() >= 17, "found only {names:?}");
    for name in names {
        let text = stdout_of(bin().args([name.as_str(), "--help"]));
        assert_output_snapshot!(None, format!("help_{name}").as_str(), text);
    }
}
