//! Steps die with artifactctl, even with `kill -9`.
//!
//! Before the first step starts, [`Reaper::start`] forks a tiny child that
//! holds the read end of a pipe. Each step writes its own process-group id
//! into the pipe before it executes anything (so no step can start work
//! unrecorded), and the runner writes the id negated once the group is empty.
//! A clean end writes `0` and closes the pipe: the reaper just exits. If the
//! pipe hits end-of-file without that `0`, artifactctl died: the reaper
//! SIGKILLs every group still recorded and waits until each is gone, so no
//! step keeps writing into a staging folder the next writer sweeps.
//!
//! The reaper is a fork of a multi-threaded process without exec, so it uses
//! only async-signal-safe calls (`close`, `sigaction`, `setpgid`, `read`,
//! `kill`, `nanosleep`, `_exit`) and allocates nothing.
//!
//! A group recorded as busy that empties and whose id the kernel hands to a
//! new, unrelated group before artifactctl dies could be hit; the runner
//! forgets a group as soon as it sees it empty to keep that window small.

use std::io;
use std::os::fd::RawFd;

/// How many process groups the reaper can track at once (steps at once,
/// plus the ones whose background children outlived them).
const SLOTS: usize = 1024;
/// How many owner locks (one per store the process writes to) the reaper keeps.
const KEEP_SLOTS: usize = 8;
/// How long the reaper waits for killed groups to be gone.
const WAIT_LIMIT_MS: u32 = 30_000;

pub(super) struct Reaper {
    write: RawFd,
    pid: libc::pid_t,
}

impl Reaper {
    pub(super) fn start() -> io::Result<Reaper> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let [read, write] = fds;
        // Computed before fork: the child may not call anything unsafe.
        let max_fd = open_max();
        // The owner locks stay held by the reaper until every step is dead,
        // so no sweep takes the run's staging folder while a step may still
        // write into it.
        let mut keep = [-1 as RawFd; KEEP_SLOTS];
        for (slot, fd) in keep.iter_mut().zip(crate::fsx::owner::held_descriptors()) {
            *slot = fd;
        }
        // SAFETY: the child runs only `reap`, which is async-signal-safe and
        // never returns.
        match unsafe { libc::fork() } {
            -1 => {
                let err = io::Error::last_os_error();
                // SAFETY: closing the descriptors just made.
                unsafe {
                    libc::close(read);
                    libc::close(write);
                }
                Err(err)
            }
            0 => reap(read, write, max_fd, &keep),
            pid => {
                // SAFETY: the read end belongs to the reaper now.
                unsafe { libc::close(read) };
                Ok(Reaper { write, pid })
            }
        }
    }

    /// The descriptor a step writes its process-group id to (see [`announce`]).
    pub(super) fn fd(&self) -> RawFd {
        self.write
    }

    /// The group `pgid` is empty: the reaper must not kill it later.
    pub(super) fn forget(&self, pgid: i32) {
        send(self.write, -pgid);
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // A clean end: the steps are settled and the reaper must kill nothing.
        send(self.write, 0);
        // SAFETY: closing our own descriptor, then reaping our own child.
        unsafe {
            libc::close(self.write);
            while libc::waitpid(self.pid, std::ptr::null_mut(), 0) == -1
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
    }
}

/// Called in a step's child between fork and exec: record the step's group
/// (its own pid, as it leads the group) with the reaper, and have the kernel
/// kill the step if artifactctl dies first. Async-signal-safe.
pub(super) fn announce(fd: RawFd, parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: getpid, write, prctl and getppid are async-signal-safe.
    unsafe {
        send(fd, libc::getpid());
        #[cfg(target_os = "linux")]
        {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        // The parent may have died before the death signal was armed.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

fn send(fd: RawFd, value: i32) {
    let bytes = value.to_ne_bytes();
    // SAFETY: writing 4 bytes from a live buffer; a pipe write this small is
    // atomic, so records from several steps never interleave.
    unsafe {
        while libc::write(fd, bytes.as_ptr().cast(), bytes.len()) == -1
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

fn open_max() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-parameter.
    let cur = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    cur.clamp(64, 65_536) as RawFd
}

fn errno() -> i32 {
    // Reading errno allocates nothing.
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The reaper's whole life. Never returns.
fn reap(read: RawFd, write: RawFd, max_fd: RawFd, keep: &[RawFd; KEEP_SLOTS]) -> ! {
    // SAFETY: only async-signal-safe calls on plain stack data below.
    unsafe {
        libc::close(write);
        // Ctrl-C and SIGTERM are for artifactctl, which stops its steps
        // itself; the reaper must outlive it to catch a SIGKILL. Its own
        // group keeps a terminal's signals away too.
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::sigaction(signal, &ignore, std::ptr::null_mut());
        }
        libc::setpgid(0, 0);
        // Hold nothing of artifactctl's but the owner locks: not its output
        // pipes (a reader of them would wait for the reaper), not the store
        // lock.
        for fd in 0..max_fd {
            if fd != read && !keep.contains(&fd) {
                libc::close(fd);
            }
        }

        let mut groups = [0i32; SLOTS];
        let mut clean = false;
        let mut buf = [0u8; 4];
        let mut filled = 0usize;
        loop {
            let n = libc::read(read, buf.as_mut_ptr().add(filled).cast(), 4 - filled);
            if n == -1 && errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
            filled += n as usize;
            if filled < 4 {
                continue;
            }
            filled = 0;
            let value = i32::from_ne_bytes(buf);
            if value == 0 {
                clean = true;
            } else if value > 0 {
                if let Some(slot) = groups.iter_mut().find(|g| **g == 0) {
                    *slot = value;
                }
            } else if let Some(slot) = groups.iter_mut().find(|g| **g == -value) {
                *slot = 0;
            }
        }
        if clean {
            libc::_exit(0);
        }
        for &g in groups.iter().filter(|g| **g > 0) {
            libc::kill(-g, libc::SIGKILL);
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        let mut waited = 0;
        while waited < WAIT_LIMIT_MS {
            for g in groups.iter_mut().filter(|g| **g > 0) {
                if libc::kill(-*g, 0) == -1 && errno() == libc::ESRCH {
                    *g = 0;
                }
            }
            if groups.iter().all(|g| *g == 0) {
                break;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
            waited += 10;
        }
        libc::_exit(0)
    }
}
