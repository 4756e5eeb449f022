//! The binary's side of `artifactctl::progress`: indicatif bars on a
//! terminal, nothing or plain lines elsewhere (CI logs get only the summary).
//! The only module that knows indicatif.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use artifactctl::progress::{Progress, Silent, StepReporter, Unit};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::printer::Printer;

/// A bar (or a spinner when `total` is unknown) for one phase of work, not
/// yet drawn anywhere.
fn work_bar(label: &str, total: Option<u64>, unit: Unit) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
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
    bar
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One bar at a time on stderr; notes go above it.
pub struct BarReporter<'a> {
    out: &'a Printer,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for BarReporter<'_> {
    fn begin(&self, label: &str, total: Option<u64>, unit: Unit) {
        let bar = work_bar(label, total, unit);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
        *lock(&self.bar) = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = lock(&self.bar).as_ref() {
            bar.inc(n);
        }
    }

    fn end(&self) {
        if let Some(bar) = lock(&self.bar).take() {
            bar.finish_and_clear();
        }
    }

    fn note(&self, message: &str) {
        match lock(&self.bar).as_ref() {
            Some(bar) => bar.println(message),
            None => self.out.err_line(message),
        }
    }
}

/// A reporter that draws only when stderr is a terminal and progress is on.
pub fn for_output(out: &Printer) -> Box<dyn Progress + '_> {
    if out.progress {
        Box::new(BarReporter {
            out,
            bar: Mutex::new(None),
        })
    } else {
        Box::new(Silent)
    }
}

/// What `refresh` reports to: its steps, and the work (hashing) and notes
/// between them.
pub enum Steps<'a> {
    /// `--quiet`.
    Silent,
    /// A terminal.
    Bars(StepBars),
    /// Anywhere else (CI).
    Plain(PlainSteps<'a>),
}

/// Step-level progress for `refresh`: on a terminal, a live line per running
/// step with a spinner and its elapsed time, log lines printed above them,
/// and a bar while the run's files are hashed; elsewhere (CI), plain
/// timestamped lines.
pub fn for_steps(out: &Printer) -> Steps<'_> {
    if out.quiet {
        Steps::Silent
    } else if out.progress {
        Steps::Bars(StepBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
            work: Mutex::new(None),
        })
    } else {
        Steps::Plain(PlainSteps { out })
    }
}

impl Progress for Steps<'_> {
    fn begin(&self, label: &str, total: Option<u64>, unit: Unit) {
        match self {
            Steps::Silent => Progress::begin(&Silent, label, total, unit),
            Steps::Bars(bars) => bars.begin(label, total, unit),
            Steps::Plain(plain) => plain.begin(label, total, unit),
        }
    }

    fn advance(&self, n: u64) {
        match self {
            Steps::Silent => Progress::advance(&Silent, n),
            Steps::Bars(bars) => bars.advance(n),
            Steps::Plain(plain) => plain.advance(n),
        }
    }

    fn end(&self) {
        match self {
            Steps::Silent => Progress::end(&Silent),
            Steps::Bars(bars) => bars.end(),
            Steps::Plain(plain) => plain.end(),
        }
    }

    fn note(&self, message: &str) {
        match self {
            Steps::Silent => Progress::note(&Silent, message),
            Steps::Bars(bars) => bars.note(message),
            Steps::Plain(plain) => plain.note(message),
        }
    }
}

impl StepReporter for Steps<'_> {
    fn step_started(&self, step: &str) {
        match self {
            Steps::Silent => Silent.step_started(step),
            Steps::Bars(bars) => bars.step_started(step),
            Steps::Plain(plain) => plain.step_started(step),
        }
    }

    fn step_log(&self, step: &str, line: &str) {
        match self {
            Steps::Silent => Silent.step_log(step, line),
            Steps::Bars(bars) => bars.step_log(step, line),
            Steps::Plain(plain) => plain.step_log(step, line),
        }
    }

    fn step_finished(&self, step: &str, outcome: &str) {
        match self {
            Steps::Silent => Silent.step_finished(step, outcome),
            Steps::Bars(bars) => bars.step_finished(step, outcome),
            Steps::Plain(plain) => plain.step_finished(step, outcome),
        }
    }
}

pub struct StepBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// The bar of the work between steps (hashing the run's files).
    work: Mutex<Option<ProgressBar>>,
}

impl Progress for StepBars {
    fn begin(&self, label: &str, total: Option<u64>, unit: Unit) {
        let bar = self.multi.add(work_bar(label, total, unit));
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = lock(&self.work).replace(bar) {
            old.finish_and_clear();
            self.multi.remove(&old);
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = lock(&self.work).as_ref() {
            bar.inc(n);
        }
    }

    fn end(&self) {
        if let Some(bar) = lock(&self.work).take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    fn note(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}

impl StepReporter for StepBars {
    fn step_started(&self, step: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed}").expect("valid template"),
        );
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        lock(&self.bars).insert(step.to_string(), bar);
    }

    fn step_log(&self, step: &str, line: &str) {
        let _ = self.multi.println(format!("[{step}] {line}"));
    }

    fn step_finished(&self, step: &str, outcome: &str) {
        if let Some(bar) = lock(&self.bars).remove(step) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(format!("{step}: {outcome}"));
    }
}

/// Timestamped lines on stderr, for logs.
pub struct PlainSteps<'a> {
    out: &'a Printer,
}

fn stamp() -> String {
    chrono::Utc::now().format("%H:%M:%S").to_string()
}

impl Progress for PlainSteps<'_> {
    // A log gets no bars: the summary says what was hashed.
    fn begin(&self, _label: &str, _total: Option<u64>, _unit: Unit) {}

    fn advance(&self, _n: u64) {}

    fn end(&self) {}

    fn note(&self, message: &str) {
        self.out.err_line(&format!("{} {message}", stamp()));
    }
}

impl StepReporter for PlainSteps<'_> {
    fn step_started(&self, step: &str) {
        self.out.err_line(&format!("{} {step}: started", stamp()));
    }

    fn step_log(&self, step: &str, line: &str) {
        self.out.err_line(&format!("{} [{step}] {line}", stamp()));
    }

    fn step_finished(&self, step: &str, outcome: &str) {
        self.out.err_line(&format!("{} {step}: {outcome}", stamp()));
    }
}
