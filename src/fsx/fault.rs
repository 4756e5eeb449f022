//! Deterministic fault points for crash and I/O-error tests.
//!
//! A test sets `ARTIFACTCTL_FAULT=<point>[@<nth>][:<action>]` and the binary
//! stops at exactly that place: `kill` (the default) SIGKILLs the process, as
//! a power cut or `kill -9` would; `eio` and `enospc` make the operation at
//! that point fail with that error instead. Before acting, one line
//! `artifactctl: fault injected at <point>` goes to stderr, so a test can
//! assert that the fault fired rather than that the process merely ended.
//!
//! Named points mark the steps of publishing, removing, pushing and pulling
//! (see [`Point`]), and every write to a remote (`remote-write`,
//! `remote-written`);
//! the syscall-class points (`write`, `fsync`, `rename`, `symlink`, `chmod`,
//! `mkdir`) are hit by every such call inside `fsx`, counted per process, so
//! `rename@2` is the second rename.
//!
//! Only debug builds read the variable: in a release build [`hit`] is a
//! constant `Ok(())` and the variable is ignored.

use std::io;

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A run is fully assembled in staging; nothing is locked or published.
    Staged,
    /// Under the lock, right before the rename that publishes a run.
    BeforePublishRename,
    /// The run is renamed into place; `latest` and the journal are not updated.
    AfterPublishRename,
    /// A run is unlisted into the trash and partly removed.
    MidRemoval,
    Write,
    Fsync,
    Rename,
    Symlink,
    Chmod,
    Mkdir,
    /// Under the lock, right before a run index file is rewritten.
    IndexWrite,
    /// A remote compare-and-swap object (`latest`, the catalog index) was
    /// read and decided on; the swap is not written yet.
    RemoteSwap,
    /// Before each write to a remote (a PUT of any kind, a DELETE), counted
    /// across the process: `remote-write@3` stops the third.
    RemoteWrite,
    /// After each write to a remote succeeded, counted like `remote-write`:
    /// the object is written, the caller has not gone on.
    RemoteWritten,
    /// Push: before each blob upload, counted (`upload@3` is the third).
    Upload,
    /// Push: every blob of a run is on the remote; its record is not.
    AfterBlobs,
    /// Push: the run's record is on the remote; `latest` has not moved.
    AfterRecord,
    /// Push: records and `latest` are written; the catalog segment and the
    /// journal object are not.
    BeforeCatalog,
    /// Pull: before each blob download, counted.
    Download,
}

impl Point {
    pub const ALL: [Point; 19] = [
        Point::Staged,
        Point::BeforePublishRename,
        Point::AfterPublishRename,
        Point::MidRemoval,
        Point::Write,
        Point::Fsync,
        Point::Rename,
        Point::Symlink,
        Point::Chmod,
        Point::Mkdir,
        Point::IndexWrite,
        Point::RemoteSwap,
        Point::RemoteWrite,
        Point::RemoteWritten,
        Point::Upload,
        Point::AfterBlobs,
        Point::AfterRecord,
        Point::BeforeCatalog,
        Point::Download,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Point::Staged => "staged",
            Point::BeforePublishRename => "before-publish-rename",
            Point::AfterPublishRename => "after-publish-rename",
            Point::MidRemoval => "mid-removal",
            Point::Write => "write",
            Point::Fsync => "fsync",
            Point::Rename => "rename",
            Point::Symlink => "symlink",
            Point::Chmod => "chmod",
            Point::Mkdir => "mkdir",
            Point::IndexWrite => "index-write",
            Point::RemoteSwap => "remote-swap",
            Point::RemoteWrite => "remote-write",
            Point::RemoteWritten => "remote-written",
            Point::Upload => "upload",
            Point::AfterBlobs => "after-blobs",
            Point::AfterRecord => "after-record",
            Point::BeforeCatalog => "before-catalog",
            Point::Download => "download",
        }
    }
}

/// What to do when the chosen point is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Error(i32),
    /// Wait at the point until the file [`GATE_ENV`] names exists, having
    /// created `<that file>.reached`: a test runs another command in
    /// between, forcing an interleaving (two swaps of one object).
    Pause,
}

/// The gate file a `pause` waits for.
pub const GATE_ENV: &str = "ARTIFACTCTL_FAULT_GATE";

/// A parsed `ARTIFACTCTL_FAULT` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub point: Point,
    pub nth: u64,
    pub action: Action,
}

/// The environment variable tests set.
pub const FAULT_ENV: &str = "ARTIFACTCTL_FAULT";

/// Parse `<point>[@<nth>][:<action>]`.
pub fn parse(text: &str) -> Result<Spec, String> {
    let (head, action) = match text.split_once(':') {
        Some((h, a)) => (h, a),
        None => (text, "kill"),
    };
    let (name, nth) = match head.split_once('@') {
        Some((n, k)) => (
            n,
            k.parse::<u64>().ok().filter(|k| *k > 0).ok_or_else(|| {
                format!("bad occurrence '{k}' in {FAULT_ENV}: expected 1, 2, ...")
            })?,
        ),
        None => (head, 1),
    };
    let point = Point::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| format!("unknown fault point '{name}' in {FAULT_ENV}"))?;
    let action = match action {
        "kill" => Action::Kill,
        "eio" => Action::Error(libc::EIO),
        "enospc" => Action::Error(libc::ENOSPC),
        "pause" => Action::Pause,
        other => {
            return Err(format!(
                "unknown fault action '{other}' in {FAULT_ENV}: kill, eio, enospc or pause"
            ))
        }
    };
    Ok(Spec { point, nth, action })
}

/// Reach `point`: a no-op unless a debug build's `ARTIFACTCTL_FAULT` names it.
#[inline]
pub fn hit(point: Point) -> io::Result<()> {
    #[cfg(debug_assertions)]
    {
        armed::hit(point)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = point;
        Ok(())
    }
}

/// Whether `ARTIFACTCTL_FAULT` names `point` (always false in release
/// builds), for the rare fault that needs a set-up step to land mid-way.
pub fn armed(point: Point) -> bool {
    #[cfg(debug_assertions)]
    {
        armed::spec().is_some_and(|spec| spec.point == point)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = point;
        false
    }
}

#[cfg(debug_assertions)]
mod armed {
    use std::io::{self, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use super::{parse, Action, Point, Spec, FAULT_ENV};

    static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);

    pub fn spec() -> Option<Spec> {
        *SPEC.get_or_init(|| {
            std::env::var(FAULT_ENV)
                .ok()
                .map(|text| match parse(&text) {
                    Ok(spec) => spec,
                    // A typo must not make a crash test pass without crashing.
                    Err(message) => panic!("{message}"),
                })
        })
    }

    pub fn hit(point: Point) -> io::Result<()> {
        let spec = spec();
        let Some(spec) = spec else {
            return Ok(());
        };
        if spec.point != point || SEEN.fetch_add(1, Ordering::SeqCst) + 1 != spec.nth {
            return Ok(());
        }
        let _ = writeln!(
            io::stderr().lock(),
            "artifactctl: fault injected at {}",
            point.name()
        );
        match spec.action {
            Action::Kill => {
                // SAFETY: sending a signal to ourselves.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                unreachable!("SIGKILL is not caught")
            }
            Action::Error(code) => Err(io::Error::from_raw_os_error(code)),
            Action::Pause => {
                let gate = std::env::var_os(super::GATE_ENV)
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| panic!("a pause fault needs {}", super::GATE_ENV));
                let mut reached = gate.clone().into_os_string();
                reached.push(".reached");
                std::fs::write(&reached, b"")?;
                // A forgotten gate must not hang a test run forever.
                for _ in 0..6000 {
                    if gate.exists() {
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                panic!("the fault gate {} never opened", gate.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_typos_are_refused() {
        assert_eq!(
            parse("rename@2:eio"),
            Ok(Spec {
                point: Point::Rename,
                nth: 2,
                action: Action::Error(libc::EIO)
            })
        );
        assert_eq!(
            parse("after-publish-rename"),
            Ok(Spec {
                point: Point::AfterPublishRename,
                nth: 1,
                action: Action::Kill
            })
        );
        assert!(parse("renam").is_err());
        assert!(parse("rename@0").is_err());
        assert!(parse("rename:explode").is_err());
    }

    #[test]
    fn unarmed_points_do_nothing() {
        for point in Point::ALL {
            assert!(hit(point).is_ok());
        }
    }
}
