//! SIGINT and SIGTERM, the same for every command.
//!
//! [`install`] (called once by the binary) sets a handler that only touches
//! atomics, which is async-signal-safe. A process with no writer at work (a
//! read-only command, or a writer before it has started) has nothing to
//! leave half-done, so the handler ends it at once with exit code 130. A
//! writer declares itself with [`busy`]; the handler then only raises a flag,
//! and the writer calls [`check`] at safe points (between files while copying
//! or hashing, between runs while removing, before taking the store lock to
//! publish) and unwinds through its usual clean-up: a staging folder is
//! removed, a folder moved in is given back. A critical section under the
//! store lock never checks, so it is never left half-way.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::ArtifactError;
use crate::exit_codes::ExitCode;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static BUSY: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    if BUSY.load(Ordering::SeqCst) == 0 {
        // SAFETY: `_exit` is async-signal-safe; with no writer at work there
        // is nothing to finish or clean up.
        unsafe { libc::_exit(i32::from(ExitCode::Interrupted.code())) }
    }
}

/// Catch SIGINT and SIGTERM for the rest of the process's life.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches atomics and may call `_exit`, both
        // async-signal-safe; the struct is fully initialised before use.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Whether SIGINT or SIGTERM has arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err` once SIGINT or SIGTERM has arrived: the caller stops and unwinds.
pub fn check() -> Result<(), ArtifactError> {
    if requested() {
        Err(ArtifactError::interrupted(
            "interrupted by a signal; nothing was changed",
        ))
    } else {
        Ok(())
    }
}

/// While held, a signal only raises the flag instead of ending the process.
#[must_use = "the process is busy only while the guard lives"]
pub struct Busy(());

/// Declare a writer at work until the guard is dropped (guards nest).
pub fn busy() -> Busy {
    BUSY.fetch_add(1, Ordering::SeqCst);
    Busy(())
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The variable naming the point where [`test_pause`] waits.
pub const PAUSE_ENV: &str = "ARTIFACTCTL_TEST_PAUSE";

/// A test hook, so a test can deliver a signal at an exact place: when a
/// debug build's `ARTIFACTCTL_TEST_PAUSE` names `point`, the first arrival
/// says `artifactctl: paused at <point>` on stderr and waits until SIGINT or
/// SIGTERM arrives (or a minute passes, so a broken test cannot hang). In a
/// release build, and for any other point, it does nothing.
pub fn test_pause(point: &str) {
    #[cfg(debug_assertions)]
    {
        use std::io::Write;
        use std::time::{Duration, Instant};
        static PAUSED: AtomicBool = AtomicBool::new(false);
        if std::env::var(PAUSE_ENV).ok().as_deref() != Some(point)
            || PAUSED.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let _ = writeln!(std::io::stderr().lock(), "artifactctl: paused at {point}");
        let start = Instant::now();
        while !requested() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = point;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_follows_the_flag() {
        // Not raised by a real signal: that would end the test process.
        assert!(check().is_ok());
        let guard = busy();
        assert!(BUSY.load(Ordering::SeqCst) >= 1);
        drop(guard);
    }
}
