//! The binary's side of `artifactctl::progress::Reporter`: indicatif bars on
//! a terminal, nothing elsewhere (CI logs get only the summary).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use artifactctl::progress::{Reporter, Silent, Unit};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::printer::Output;

pub struct BarReporter {
    bar: Mutex<Option<ProgressBar>>,
}

impl Reporter for BarReporter {
    fn begin(&self, label: &str, total: Option<u64>, unit: Unit) {
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = match (total.is_some(), unit) {
            (true, Unit::Bytes) => {
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            }
            (true, Unit::Items) => "{msg:>10} [{bar:30}] {pos}/{len} eta {eta}",
            (false, Unit::Bytes) => "{msg:>10} {spinner} {bytes} {bytes_per_sec}",
            (false, Unit::Items) => "{msg:>10} {spinner} {pos} {per_sec}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.lock().expect("progress lock").as_ref() {
            bar.inc(n);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }

    fn note(&self, message: &str) {
        match self.bar.lock().expect("progress lock").as_ref() {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}

/// A reporter that draws only when stderr is a terminal and progress is on.
pub fn for_output(out: &Output) -> Box<dyn Reporter> {
    if out.progress {
        Box::new(BarReporter {
            bar: Mutex::new(None),
        })
    } else {
        Box::new(Silent)
    }
}

/// Step-level progress for `refresh`: on a terminal, a live line per running
/// step with a spinner and its elapsed time, log lines printed above them;
/// elsewhere (CI), plain timestamped lines.
pub fn for_steps(out: &Output) -> Box<dyn Reporter> {
    if out.quiet {
        Box::new(Silent)
    } else if out.progress {
        Box::new(StepBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        })
    } else {
        Box::new(PlainSteps)
    }
}

pub struct StepBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Reporter for StepBars {
    fn note(&self, message: &str) {
        let _ = self.multi.println(message);
    }

    fn step_started(&self, step: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed}").expect("valid template"),
        );
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars
            .lock()
            .expect("progress lock")
            .insert(step.to_string(), bar);
    }

    fn step_log(&self, step: &str, line: &str) {
        let _ = self.multi.println(format!("[{step}] {line}"));
    }

    fn step_finished(&self, step: &str, outcome: &str) {
        if let Some(bar) = self.bars.lock().expect("progress lock").remove(step) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(format!("{step}: {outcome}"));
    }
}

pub struct PlainSteps;

fn stamp() -> String {
    chrono::Utc::now().format("%H:%M:%S").to_string()
}

impl Reporter for PlainSteps {
    fn note(&self, message: &str) {
        eprintln!("{} {message}", stamp());
    }

    fn step_started(&self, step: &str) {
        eprintln!("{} {step}: started", stamp());
    }

    fn step_log(&self, step: &str, line: &str) {
        eprintln!("{} [{step}] {line}", stamp());
    }

    fn step_finished(&self, step: &str, outcome: &str) {
        eprintln!("{} {step}: {outcome}", stamp());
    }
}
