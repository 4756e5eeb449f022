//! The tidy test: the invariants of `docs/architecture.md` that can be read
//! off the source, checked on every `make test`.
//!
//! Each rule is a pure function from a file's path and text to violations,
//! and each has a unit test on a bad snippet, so a rule that can no longer
//! fail is noticed. Test code (a trailing `#[cfg(test)]` module) is exempt:
//! tests may write fixtures however they like.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One broken rule, said as a line a developer can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    rule: &'static str,
    text: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file,
            self.line,
            self.rule,
            self.text.trim()
        )
    }
}

/// Which part of the crate a source file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// `src/fsx/`: the one module that mutates.
    Fsx,
    /// `src/policy/`: pure engines.
    Policy,
    /// The rest of the library.
    Library,
    /// `src/cli/commands/`.
    Commands,
    /// `src/main.rs` and the rest of `src/cli/`.
    Binary,
}

fn part_of(rel: &str) -> Part {
    if rel.starts_with("src/fsx/") {
        Part::Fsx
    } else if rel.starts_with("src/policy/") {
        Part::Policy
    } else if rel.starts_with("src/cli/commands/") {
        Part::Commands
    } else if rel == "src/main.rs" || rel.starts_with("src/cli/") {
        Part::Binary
    } else {
        Part::Library
    }
}

/// The lines that count: up to a file's test module, with comments blanked
/// (line numbers are kept).
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

fn violation(rel: &str, line: usize, rule: &'static str, text: &str) -> Violation {
    Violation {
        file: rel.to_string(),
        line,
        rule,
        text: text.to_string(),
    }
}

const MUTATE_RULE: &str = "only src/fsx/ removes, renames or opens files for writing (invariant 2)";

/// No `remove_*`, `rename` or writing `OpenOptions` outside `fsx/`.
fn check_mutation(rel: &str, text: &str) -> Vec<Violation> {
    if part_of(rel) == Part::Fsx {
        return vec![];
    }
    let lines = code_lines(text);
    let mut found = Vec::new();
    for (k, &(n, line)) in lines.iter().enumerate() {
        let removes = ["fs::remove_file", "fs::remove_dir", "fs::rename"]
            .iter()
            .any(|needle| line.contains(needle));
        if removes {
            found.push(violation(rel, n, MUTATE_RULE, line));
        }
        if line.contains("OpenOptions::new()") {
            // The builder chain runs to the statement's end.
            let chain: String = lines[k..]
                .iter()
                .map(|(_, l)| *l)
                .take_while({
                    let mut done = false;
                    move |l| {
                        let keep = !done;
                        done = l.contains(';');
                        keep
                    }
                })
                .collect();
            let writes = [
                ".write(true",
                ".append(true",
                ".create(true",
                ".create_new(true",
                ".truncate(true",
            ]
            .iter()
            .any(|w| chain.contains(w));
            if writes {
                found.push(violation(rel, n, MUTATE_RULE, line));
            }
        }
    }
    found
}

const TERMINAL_RULE: &str =
    "the library knows no clap, indicatif or terminal printing (invariant 9)";
const PRINT_RULE: &str = "commands print through the Printer, never println! (one output path)";

/// No clap, indicatif or printing macros in the library; no `println!` in
/// the commands.
fn check_terminal(rel: &str, text: &str) -> Vec<Violation> {
    let part = part_of(rel);
    let mut found = Vec::new();
    for (n, line) in code_lines(text) {
        match part {
            Part::Fsx | Part::Policy | Part::Library => {
                let bad = [
                    "clap::",
                    "indicatif",
                    "println!",
                    "eprintln!",
                    "print!(",
                    "eprint!(",
                    "dbg!(",
                ]
                .iter()
                .any(|needle| line.contains(needle));
                if bad {
                    found.push(violation(rel, n, TERMINAL_RULE, line));
                }
            }
            Part::Commands => {
                if ["println!", "print!(", "eprintln!", "eprint!("]
                    .iter()
                    .any(|needle| line.contains(needle))
                {
                    found.push(violation(rel, n, PRINT_RULE, line));
                }
            }
            Part::Binary => {}
        }
    }
    found
}

const PURE_RULE: &str = "src/policy/ is pure: no std::fs, std::process, fsx or ops";

fn check_pure(rel: &str, text: &str) -> Vec<Violation> {
    if part_of(rel) != Part::Policy {
        return vec![];
    }
    code_lines(text)
        .into_iter()
        .filter(|(_, line)| {
            [
                "std::fs",
                "std::process",
                "crate::fsx",
                "crate::ops",
                "File::",
                "read_dir(",
            ]
            .iter()
            .any(|needle| line.contains(needle))
        })
        .map(|(n, line)| violation(rel, n, PURE_RULE, line))
        .collect()
}

/// The library's top-level module a file belongs to (`store`, `fsx`, ...).
fn top_module(rel: &str) -> Option<String> {
    let inner = rel.strip_prefix("src/")?;
    if part_of(rel) == Part::Binary || part_of(rel) == Part::Commands || inner == "lib.rs" {
        return None;
    }
    let first = inner.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// `crate::X` paths a file names, as top-level modules.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in code_lines(text) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        // `use super::...` stays inside a module: not an edge.
    }
    out
}

const CIRCLE_RULE: &str = "no import circles between the library's top-level modules";

/// Edges between top-level library modules, and a circle if there is one.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn module_edges(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let Some(from) = top_module(rel) else {
            continue;
        };
        let entry = edges.entry(from.clone()).or_default();
        for to in crate_uses(text) {
            // The error type and exit codes are leaves everyone may name.
            if to != from
                && to != "error"
                && to != "exit_codes"
                && to != "ArtifactError"
                && to != "ErrorKind"
            {
                entry.insert(to);
            }
        }
    }
    edges
}

const DEPENDENCY_RULE: &str = "every dependency in Cargo.toml is used";

/// Dependencies of a `[dependencies]`-style table that no source names.
fn unused_dependencies(manifest: &str, table: &str, sources: &str) -> Vec<String> {
    let parsed: toml::Table = manifest.parse().expect("Cargo.toml parses");
    let Some(deps) = parsed.get(table).and_then(|t| t.as_table()) else {
        return vec![];
    };
    deps.keys()
        .filter(|name| !names_crate(sources, &name.replace('-', "_")))
        .cloned()
        .collect()
}

/// Whether `sources` name the crate `ident` as a whole word: `ident::`,
/// `ident!` or `use ident` (so `glob` is not found in `globset::`).
fn names_crate(sources: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    sources.match_indices(ident).any(|(at, _)| {
        let before = sources[..at].chars().next_back();
        let after = &sources[at + ident.len()..];
        before.is_none_or(|c| !is_ident(c))
            && !after.starts_with(is_ident)
            && (after.starts_with("::")
                || after.starts_with('!')
                || sources[..at].ends_with("use "))
    })
}

// ---------------------------------------------------------------------------
// The checks over this crate.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(repo())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn assert_none(violations: Vec<Violation>) {
    let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(text.is_empty(), "tidy found:\n{}", text.join("\n"));
}

#[test]
fn only_fsx_mutates() {
    let files = rust_files(&repo().join("src"));
    assert!(files.len() > 20, "the source tree was not found");
    assert_none(
        files
            .iter()
            .flat_map(|(r, t)| check_mutation(r, t))
            .collect(),
    );
}

#[test]
fn the_library_knows_no_terminal_and_commands_print_through_the_printer() {
    let files = rust_files(&repo().join("src"));
    assert_none(
        files
            .iter()
            .flat_map(|(r, t)| check_terminal(r, t))
            .collect(),
    );
}

#[test]
fn policy_modules_are_pure() {
    let files = rust_files(&repo().join("src"));
    assert!(files.iter().any(|(r, _)| r.starts_with("src/policy/")));
    assert_none(files.iter().flat_map(|(r, t)| check_pure(r, t)).collect());
}

#[test]
fn library_modules_form_no_circle() {
    let files = rust_files(&repo().join("src"));
    let edges = module_edges(&files);
    assert!(edges.contains_key("store") && edges.contains_key("fsx"));
    if let Some(circle) = find_circle(&edges) {
        panic!("{CIRCLE_RULE}: {}", circle.join(" -> "));
    }
}

#[test]
fn every_dependency_is_used() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let src: String = rust_files(&repo().join("src"))
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let tests: String = rust_files(&repo().join("tests"))
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let unused = unused_dependencies(&manifest, "dependencies", &src);
    assert!(unused.is_empty(), "{DEPENDENCY_RULE}: unused {unused:?}");
    let unused = unused_dependencies(&manifest, "dev-dependencies", &format!("{src}{tests}"));
    assert!(
        unused.is_empty(),
        "{DEPENDENCY_RULE}: unused dev-dependencies {unused:?}"
    );
}

// ---------------------------------------------------------------------------
// Each rule can fail.

#[test]
fn the_mutation_rule_catches_removes_renames_and_writing_opens() {
    let bad = "use std::fs;\nfn f() {\n    std::fs::remove_dir_all(p).unwrap();\n    fs::rename(a, b)?;\n    let f = OpenOptions::new()\n        .append(true)\n        .open(p)?;\n    let r = OpenOptions::new().read(true).open(p)?;\n}\n";
    let found = check_mutation("src/store/journal.rs", bad);
    assert_eq!(
        found.iter().map(|v| v.line).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(check_mutation("src/fsx/atomic.rs", bad).is_empty());
    let in_tests = "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn t() { std::fs::remove_file(p).unwrap(); }\n}\n";
    assert!(check_mutation("src/ops/x.rs", in_tests).is_empty());
}

#[test]
fn the_terminal_rule_catches_clap_indicatif_and_printing() {
    let bad = "use clap::Parser;\nfn f() { println!(\"x\"); }\nfn g() { indicatif::ProgressBar::new(1); }\n";
    assert_eq!(check_terminal("src/ops/list.rs", bad).len(), 3);
    assert_eq!(check_terminal("src/cli/commands/list.rs", bad).len(), 1);
    assert!(check_terminal("src/cli/printer.rs", bad).is_empty());
}

#[test]
fn the_purity_rule_catches_io_in_policy() {
    let bad = "use std::fs;\nuse crate::fsx;\nfn f() { crate::ops::lock(); }\n";
    assert_eq!(check_pure("src/policy/gates.rs", bad).len(), 3);
    assert!(check_pure("src/store/read.rs", bad).is_empty());
}

#[test]
fn the_circle_rule_finds_a_circle() {
    let files = vec![
        (
            "src/fsx/mod.rs".to_string(),
            "use crate::store::journal;\n".to_string(),
        ),
        (
            "src/store/journal.rs".to_string(),
            "use crate::fsx::INTERNAL_DIR;\n".to_string(),
        ),
        (
            "src/policy/gates.rs".to_string(),
            "use crate::error::ArtifactError;\n".to_string(),
        ),
    ];
    let circle = find_circle(&module_edges(&files)).expect("a circle");
    assert!(circle.contains(&"fsx".to_string()) && circle.contains(&"store".to_string()));
    let acyclic = vec![(
        "src/fsx/mod.rs".to_string(),
        "use crate::store::layout;\n".to_string(),
    )];
    assert!(find_circle(&module_edges(&acyclic)).is_none());
}

#[test]
fn the_dependency_rule_finds_an_unused_crate() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nglob = \"0.3\"\nglobset = \"0.4\"\nserde-json = \"1\"\n";
    let sources = "use globset::Glob;\nfn f() { serde_json::to_string(&1); }\n";
    assert_eq!(
        unused_dependencies(manifest, "dependencies", sources),
        vec!["glob".to_string()]
    );
}
