use anyhow::Result;
use artifactctl::ops::verify;
use artifactctl::store::refs::RunRef;
use artifactctl::ExitCode;

use crate::cli::printer::{human_size, plural, thousands, Printer};
use crate::cli::reporters;
use crate::cli::settings::{Context, VerifySettings};

/// Check runs against their manifests and the store's invariants
///
/// Re-hashes every file (BLAKE3, in parallel) against the run's manifest and
/// reports changed, missing and added files; checks that metadata.json is
/// valid schema v1 and matches its folder, that every latest resolves to a
/// complete run beside it, that promoted artifacts are read-only, and seed
/// 002's feature consistency (feature_count, selected_features,
/// input_size_actual). With --all it also lists staging folders left by a
/// writer that stopped (harmless: the next write removes them). Legacy
/// layouts have no manifest: verify says what it could not check.
/// Exit 1 if any problem is found. Never changes the store, except with
/// --repair, which completes what an interrupted or failed write left
/// undone: read-only bits of promoted artifacts, stray temporary files,
/// a dangling latest, missing journal lines and changelog entries (never an
/// artifact's content), then checks again.
///
/// Examples:
///   artifactctl verify --all
///   artifactctl verify --all --repair
///   artifactctl verify production/gru/BTCEUR/latest
///   artifactctl verify validated/v5_5_20251124_epoch_70_validated --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Runs to check: [stage/][namespace/](run-id|latest)
    #[arg(value_name = "REF")]
    pub refs: Vec<RunRef>,
    /// Check every run of every stage, and look for stray staging folders
    #[arg(long)]
    pub all: bool,
    /// Complete what interrupted writes left undone, then check again
    #[arg(long)]
    pub repair: bool,
    /// Print {"schema_version":1,"checked":N,"problems":[{"ref","kind","detail","fix"}],"notes":[...]}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let VerifySettings {
        options,
        repair,
        json,
    } = VerifySettings::resolve(args);
    let reporter = reporters::for_output(out);
    let mut report = verify::verify(&ctx.store, &options, reporter.as_ref())?;
    if repair && !report.repairs.is_empty() {
        for done in artifactctl::ops::repair::repair(&ctx.store, &report.repairs)? {
            out.status(&format!("repaired: {done}"));
        }
        report = verify::verify(&ctx.store, &options, reporter.as_ref())?;
    }
    if json {
        out.json(&report)?;
    } else {
        for p in &report.problems {
            out.line(&format!("{}\n  fix: {}", problem_line(p), p.fix))?;
        }
        print_notes(out, &report.notes);
    }
    out.status(&format!(
        "checked {}, re-hashed {}: {}",
        plural(report.checked as u64, "run", "runs"),
        human_size(report.bytes_hashed),
        match report.problems.len() {
            0 => "no problems".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    ));
    Ok(if report.problems.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// Notes with the same text are said once, with how many runs they concern
/// and the first few refs (`-v`: all of them): a store of 300 legacy runs
/// gets one "no manifest" note, not 300.
fn print_notes(out: &Printer, notes: &[verify::Note]) {
    const SHOWN: usize = 3;
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for n in notes {
        match groups.iter_mut().find(|(detail, _)| *detail == n.detail) {
            Some((_, refs)) => refs.push(&n.reference),
            None => groups.push((&n.detail, vec![&n.reference])),
        }
    }
    for (detail, refs) in groups {
        if refs.len() == 1 {
            out.status(&format!("note: {}: {detail}", refs[0]));
            continue;
        }
        let listed = if out.verbose > 0 || refs.len() <= SHOWN {
            refs.join(", ")
        } else {
            format!(
                "{}, and {} more (-v lists them)",
                refs[..SHOWN].join(", "),
                thousands((refs.len() - SHOWN) as u64)
            )
        };
        out.status(&format!(
            "note: {}: {detail}\n  {listed}",
            plural(refs.len() as u64, "run", "runs")
        ));
    }
}

/// A problem as one line. A detail that starts with what it is about
/// ("latest points to …") takes the ref in its place, so the line does not
/// read `latest: latest: latest points to …`.
fn problem_line(p: &verify::Problem) -> String {
    match p.detail.strip_prefix(p.kind) {
        Some(rest) if rest.starts_with(' ') => format!("{}{rest}", p.reference),
        _ => format!("{}: {}: {}", p.reference, p.kind, p.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latest_problem_names_latest_once() {
        let p = verify::Problem {
            reference: "latest".into(),
            kind: "latest",
            detail: "latest points to 'gone', which does not exist".into(),
            fix: String::new(),
        };
        assert_eq!(
            problem_line(&p),
            "latest points to 'gone', which does not exist"
        );
        let p = verify::Problem {
            reference: "gru/latest".into(),
            ..p
        };
        assert_eq!(
            problem_line(&p),
            "gru/latest points to 'gone', which does not exist"
        );
        let p = verify::Problem {
            reference: "r1".into(),
            kind: "hash",
            detail: "model.pt changed".into(),
            fix: String::new(),
        };
        assert_eq!(problem_line(&p), "r1: hash: model.pt changed");
    }
}
