//! The binary's side of `artifactctl::progress`: indicatif bars on a
//! terminal, nothing or plain lines elsewhere (CI logs get only the summary).
//! The only module that knows indicatif.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use artifactctl::progress::{Progress, Silent, StepReporter, TransferReporter, Unit};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::printer::{human_size, plural, thousands, Printer};

/// A rate as people read it: `950 files/s`, `53.8k files/s`, `1.2M files/s`.
fn rate(per_sec: f64, noun: &str) -> String {
    let per_sec = if per_sec.is_finite() {
        per_sec.max(0.0)
    } else {
        0.0
    };
    if per_sec >= 999_950.0 {
        format!("{:.1}M {noun}/s", per_sec / 1e6)
    } else if per_sec >= 999.95 {
        format!("{:.1}k {noun}/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} {noun}/s")
    }
}

/// A bar (or a spinner when `total` is unknown) for one phase of work, not
/// yet drawn anywhere.
fn work_bar(label: &str, total: Option<u64>, unit: Unit) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
    let template = match (total.is_some(), unit) {
        (true, Unit::Bytes) => {
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        }
        (true, Unit::Items | Unit::Files) => "{msg:>10} [{bar:30}] {count}/{len} eta {eta}",
        (false, Unit::Bytes) => "{msg:>10} {spinner} {bytes} {bytes_per_sec}",
        (false, Unit::Items | Unit::Files) => "{msg:>10} {spinner} {count}, {rate}",
    };
    let noun = match unit {
        Unit::Files => "files",
        Unit::Items | Unit::Bytes => "items",
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .with_key(
                "count",
                move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = match state.len() {
                        Some(_) => write!(w, "{}", thousands(state.pos())),
                        None => write!(w, "{}", plural(state.pos(), &noun[..noun.len() - 1], noun)),
                    };
                },
            )
            .with_key(
                "rate",
                move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", rate(state.per_sec(), noun));
                },
            )
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

/// What `push` and `pull` report to: nothing with `--quiet`, a bar of bytes
/// and files on a terminal, plain timestamped lines elsewhere (CI).
pub fn for_transfers(out: &Printer) -> Box<dyn TransferReporter + '_> {
    if out.quiet {
        Box::new(Silent)
    } else if out.progress {
        Box::new(TransferBar {
            bar: Mutex::new(None),
            files: Arc::new(AtomicU64::new(0)),
            total_files: Arc::new(AtomicU64::new(0)),
        })
    } else {
        Box::new(PlainTransfers {
            out,
            current: Mutex::new(None),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }
}

/// The bar of one run's transfer: bytes as the bar, files beside it.
fn transfer_bar(
    label: &str,
    bytes: u64,
    files: &Arc<AtomicU64>,
    total: &Arc<AtomicU64>,
) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::hidden());
    let (files, total) = (Arc::clone(files), Arc::clone(total));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:25}] {bytes}/{total_bytes}, {files}, {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .with_key(
            "files",
            move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let total = total.load(Ordering::Relaxed);
                let _ = write!(
                    w,
                    "{}/{}",
                    thousands(files.load(Ordering::Relaxed)),
                    plural(total, "file", "files")
                );
            },
        )
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

pub struct TransferBar {
    bar: Mutex<Option<ProgressBar>>,
    files: Arc<AtomicU64>,
    total_files: Arc<AtomicU64>,
}

impl TransferReporter for TransferBar {
    fn transfer_started(&self, label: &str, files: u64, bytes: u64) {
        self.files.store(0, Ordering::Relaxed);
        self.total_files.store(files, Ordering::Relaxed);
        let bar = transfer_bar(label, bytes, &self.files, &self.total_files);
        bar.set_draw_target(ProgressDrawTarget::stderr());
        // Drawn at once: a transfer shorter than a tick (a pack of small
        // files) still shows what it moved.
        bar.tick();
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = lock(&self.bar).replace(bar) {
            old.finish_and_clear();
        }
    }

    fn transfer_bytes(&self, n: u64) {
        if let Some(bar) = lock(&self.bar).as_ref() {
            bar.inc(n);
        }
    }

    fn transfer_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    fn transfer_finished(&self, _ok: bool) {
        if let Some(bar) = lock(&self.bar).take() {
            bar.finish_and_clear();
        }
    }
}

/// Plain lines for logs: one when a run's transfer starts, one every
/// [`PLAIN_EVERY`] while it lasts, one when it ends.
pub struct PlainTransfers<'a> {
    out: &'a Printer,
    current: Mutex<Option<PlainTransfer>>,
    files: AtomicU64,
    bytes: AtomicU64,
}

struct PlainTransfer {
    label: String,
    files: u64,
    bytes: u64,
    started: Instant,
    last_line: Instant,
}

/// How often a long transfer writes a line to a log.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl PlainTransfers<'_> {
    fn counts(&self, t: &PlainTransfer) -> String {
        format!(
            "{}/{}, {}/{}",
            thousands(self.files.load(Ordering::Relaxed)),
            plural(t.files, "file", "files"),
            human_size(self.bytes.load(Ordering::Relaxed)),
            human_size(t.bytes)
        )
    }
}

impl TransferReporter for PlainTransfers<'_> {
    fn transfer_started(&self, label: &str, files: u64, bytes: u64) {
        self.files.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        let now = Instant::now();
        self.out.err_line(&format!(
            "{} {label}: {} ({})",
            stamp(),
            plural(files, "file", "files"),
            human_size(bytes)
        ));
        *lock(&self.current) = Some(PlainTransfer {
            label: label.to_string(),
            files,
            bytes,
            started: now,
            last_line: now,
        });
    }

    fn transfer_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn transfer_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
        let mut current = lock(&self.current);
        if let Some(t) = current.as_mut() {
            if t.last_line.elapsed() >= PLAIN_EVERY {
                t.last_line = Instant::now();
                self.out
                    .err_line(&format!("{} {}: {}", stamp(), t.label, self.counts(t)));
            }
        }
    }

    fn transfer_finished(&self, ok: bool) {
        if let Some(t) = lock(&self.current).take() {
            let how = if ok { "done" } else { "failed at" };
            self.out.err_line(&format!(
                "{} {}: {how} {} in {:.1}s",
                stamp(),
                t.label,
                self.counts(&t),
                t.started.elapsed().as_secs_f64()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_units_and_a_sensible_precision() {
        assert_eq!(rate(53_834.421_2, "files"), "53.8k files/s");
        assert_eq!(rate(950.4, "files"), "950 files/s");
        assert_eq!(rate(1_234_567.0, "items"), "1.2M items/s");
        assert_eq!(rate(f64::NAN, "files"), "0 files/s");
    }

    /// Captures what a bar draws, as a terminal would show its last line.
    #[derive(Debug, Default, Clone)]
    struct Screen(std::sync::Arc<Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            lock(&self.0).push_str(s);
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            lock(&self.0).push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            lock(&self.0).clear();
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_transfer_bar_shows_bytes_and_files() {
        let screen = Screen::default();
        let files = Arc::new(AtomicU64::new(3));
        let total = Arc::new(AtomicU64::new(10_000));
        let bar = transfer_bar("pushing raw/20261101_000000", 4096, &files, &total);
        bar.set_draw_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.set_position(2048);
        bar.tick();
        let line = lock(&screen.0).trim().to_string();
        assert!(line.starts_with("pushing raw/20261101_000000 ["), "{line}");
        assert!(
            line.contains("2.00 KiB/4.00 KiB, 3/10,000 files, "),
            "{line}"
        );
    }

    #[test]
    fn the_clear_spinner_reads_files_and_files_per_second() {
        let screen = Screen::default();
        let bar = work_bar("clearing", None, Unit::Files);
        bar.set_draw_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.set_position(7492);
        bar.tick();
        let line = lock(&screen.0).trim().to_string();
        assert!(line.contains("clearing"), "{line}");
        assert!(line.contains("7,492 files, "), "{line}");
        assert!(line.ends_with(" files/s"), "{line}");
        let bar = work_bar("removing", Some(1200), Unit::Items);
        bar.set_draw_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.set_position(1100);
        bar.tick();
        let line = lock(&screen.0).trim().to_string();
        assert!(line.contains("1,100/1200"), "{line}");
    }
}
