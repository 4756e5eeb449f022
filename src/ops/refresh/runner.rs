//! Process supervision for refresh: each step runs with `sh -c` in its own
//! process group, its output streamed to its log and the reporter, stopped
//! with its whole group on SIGINT/SIGTERM or a failure without --keep-going.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::fsx::{self};
use crate::policy::pipeline::{self, Action, Fingerprint, StepRecord, StepStatus, LOGS_DIR};
use crate::progress::{Silent, StepReporter};
use crate::store::manifest;
use crate::store::metadata::FileEntry;

/// The file a step writes to have its numbers merged into the run's metrics.
use super::*;

/// Steps run with `sh -c`; the POSIX path spares a search of `$PATH` per step.
pub(super) const SHELL: &str = "/bin/sh";
/// How long children get to exit after SIGTERM before SIGKILL.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often the scheduler looks at the interrupt flag while steps run
/// (a step's end wakes it at once).
pub(super) const POLL: Duration = Duration::from_millis(50);
/// How often children are polled where the kernel has no pidfd.
pub(super) const FALLBACK_POLL: Duration = Duration::from_millis(2);

/// A step's process while it runs.
pub(super) struct Running<'s> {
    child: Child,
    /// Readable once the child exits (a Linux pidfd), so the scheduler sleeps
    /// in one `poll` until a step ends; `None` where unsupported, and the
    /// child is then polled.
    exited: Option<OwnedFd>,
    /// Threads copying its output to the log and the reporter.
    readers: Vec<ScopedJoinHandle<'s, ()>>,
    started: DateTime<Utc>,
    clock: Instant,
}

pub(super) struct Runner<'a> {
    pub(super) opts: &'a RefreshOptions,
    pub(super) prepared: &'a Prepared,
    pub(super) staging: &'a Path,
    pub(super) run_id: &'a str,
    pub(super) reporter: &'a dyn StepReporter,
    pub(super) records: Vec<Option<StepRecord>>,
    pub(super) reasons: Vec<String>,
    /// Records of the steps running now, completed when they end.
    pub(super) pending: BTreeMap<usize, StepRecord>,
    /// Kills the steps' process groups if artifactctl dies (see `reaper`);
    /// present while `run_all` runs.
    pub(super) reaper: Option<super::reaper::Reaper>,
}

impl<'a> Runner<'a> {
    fn interrupted(&self) -> bool {
        crate::interrupt::requested()
    }

    /// Run every step; returns whether the run was interrupted.
    pub(super) fn run_all(&mut self) -> Result<bool> {
        let p = self.prepared;
        let jobs = self.opts.jobs.max(1);
        let mut failed_first: Option<String> = None;
        let mut interrupted = false;
        self.reaper = Some(super::reaper::Reaper::start().context("cannot start the step reaper")?);
        let ran = std::thread::scope(|scope| -> Result<()> {
            let mut running: BTreeMap<usize, Running> = BTreeMap::new();
            let mut kill_at: Option<Instant> = None;
            loop {
                if kill_at.is_none() && self.interrupted() {
                    interrupted = true;
                    kill_at = Some(Instant::now() + KILL_GRACE);
                    signal_groups(&running, libc::SIGTERM);
                }
                if !interrupted {
                    self.start_ready(scope, &mut running, jobs, &failed_first)?;
                }
                if running.is_empty() {
                    break;
                }
                if kill_at.is_some_and(|at| Instant::now() >= at) {
                    signal_groups(&running, libc::SIGKILL);
                }
                for (i, status) in wait_any(&mut running, POLL) {
                    let step = running.remove(&i).expect("a running step");
                    self.forget_if_empty(step.child.id() as i32);
                    for reader in step.readers {
                        let _ = reader.join();
                    }
                    let stopped = interrupted || self.interrupted();
                    let ok = self.finish(i, status, step.started, step.clock, stopped)?;
                    if !ok && failed_first.is_none() {
                        failed_first = Some(p.pipeline.steps[i].name.clone());
                    }
                }
            }
            Ok(())
        });
        // Every step has ended (or the scope failed): a clean end for the
        // reaper, which then kills nothing.
        self.reaper = None;
        ran?;
        // Whatever never started is skipped, with the reason.
        for &i in &p.pipeline.order {
            if self.records[i].is_none() {
                let reason = if interrupted {
                    "not started: interrupted".to_string()
                } else {
                    self.blocked_reason(i)
                        .unwrap_or_else(|| "not started: an earlier step failed; --keep-going runs independent steps".into())
                };
                self.settle_skipped(i, reason);
            }
        }
        Ok(interrupted)
    }

    /// Tell the reaper a step's group is gone, so it never signals that id
    /// again (the kernel may reuse it once the group is empty).
    fn forget_if_empty(&self, pgid: i32) {
        // SAFETY: signal 0 only checks whether the group has members.
        let empty = unsafe { libc::kill(-pgid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if let (true, Some(reaper)) = (empty, &self.reaper) {
            reaper.forget(pgid);
        }
    }

    /// Settle or start every step whose needs are settled.
    fn start_ready<'s>(
        &mut self,
        scope: &'s Scope<'s, '_>,
        running: &mut BTreeMap<usize, Running<'s>>,
        jobs: usize,
        failed_first: &Option<String>,
    ) -> Result<()>
    where
        'a: 's,
    {
        let p = self.prepared;
        let mut progressed = true;
        while progressed {
            progressed = false;
            for planned in &p.planned {
                let i = planned.index;
                if self.records[i].is_some() || running.contains_key(&i) {
                    continue;
                }
                if let Some(reason) = self.blocked_reason(i) {
                    self.settle_skipped(i, reason);
                    progressed = true;
                    continue;
                }
                if !p.pipeline.needs[i]
                    .iter()
                    .all(|&j| self.records[j].is_some())
                {
                    continue;
                }
                if let Some(first) = failed_first {
                    if !self.opts.keep_going
                        && matches!(planned.action, Action::Run | Action::Reuse)
                    {
                        self.settle_skipped(
                            i,
                            format!(
                                "not started: {first} failed; --keep-going runs independent steps"
                            ),
                        );
                        progressed = true;
                        continue;
                    }
                }
                match planned.action {
                    Action::Skip => self.settle_skipped(i, planned.reason.clone()),
                    Action::Carry => self.carry(i, planned.reason.clone()),
                    Action::Run | Action::Reuse => {
                        let now = self.full_fingerprint(i);
                        let base = p.base.as_ref().map(|(_, b)| b);
                        let reuse = if self.opts.force {
                            Err("--force".to_string())
                        } else {
                            pipeline::reusable(base, &p.pipeline.steps[i].name, &now).cloned()
                        };
                        match reuse {
                            Ok(record) if self.share(i, &record).is_ok() => {
                                self.settle_reused(
                                    i,
                                    record,
                                    format!(
                                        "unchanged since {}",
                                        base.map(|b| b.reference.as_str()).unwrap_or_default()
                                    ),
                                );
                            }
                            outcome => {
                                if running.len() >= jobs {
                                    continue;
                                }
                                let reason = match outcome {
                                    Err(reason) => reason,
                                    Ok(_) => "its recorded outputs could not be brought in".into(),
                                };
                                self.reasons[i] = reason;
                                if let Some(child) = self.spawn(i, now, scope)? {
                                    running.insert(i, child);
                                }
                            }
                        }
                    }
                }
                progressed = true;
            }
        }
        Ok(())
    }

    /// Why step `i` cannot run because of a need, if so.
    fn blocked_reason(&self, i: usize) -> Option<String> {
        let p = self.prepared;
        p.pipeline.needs[i].iter().find_map(|&j| {
            let record = self.records[j].as_ref()?;
            let name = &p.pipeline.steps[j].name;
            match record.status {
                StepStatus::Failed => Some(format!("needs {name}, which failed")),
                _ if record.output_hash.is_none() => {
                    Some(format!("needs {name}, which has no outputs"))
                }
                _ => None,
            }
        })
    }

    fn full_fingerprint(&self, i: usize) -> Fingerprint {
        let p = self.prepared;
        let mut fp = p.partial[i].clone();
        for &j in &p.pipeline.needs[i] {
            let hash = self.records[j]
                .as_ref()
                .and_then(|r| r.output_hash.clone())
                .unwrap_or_default();
            fp.needs.insert(p.pipeline.steps[j].name.clone(), hash);
        }
        fp
    }

    fn base_dir(&self) -> Option<&Path> {
        self.prepared.base.as_ref().map(|(l, _)| l.path.as_path())
    }

    /// Bring a recorded step's outputs in from the base run.
    fn share(&self, i: usize, _record: &StepRecord) -> Result<()> {
        let name = &self.prepared.pipeline.steps[i].name;
        let from = self
            .base_dir()
            .map(|d| d.join(name))
            .ok_or_else(|| anyhow::anyhow!("no base run"))?;
        let to = self.staging.join(name);
        std::fs::create_dir(&to)?;
        if let Err(e) = fsx::share_tree(&from, &to) {
            let _ = fsx::remove_tree(&to);
            return Err(e.into());
        }
        Ok(())
    }

    fn settle_reused(&mut self, i: usize, base_record: StepRecord, reason: String) {
        let p = self.prepared;
        let step = &p.pipeline.steps[i];
        let from = p.base.as_ref().map(|(_, b)| b.reference.clone());
        self.reporter.step_finished(
            &step.name,
            &format!("reused from {}", from.as_deref().unwrap_or_default()),
        );
        self.records[i] = Some(StepRecord {
            name: step.name.clone(),
            group: step.group.clone(),
            command: step.run.clone(),
            status: StepStatus::Reused,
            exit_code: None,
            started_at: None,
            ended_at: None,
            duration_s: 0.0,
            reused_from: from,
            output_hash: base_record.output_hash,
            outputs: base_record.outputs,
            fingerprint: base_record.fingerprint,
            extra: Map::new(),
        });
        self.reasons[i] = reason;
    }

    /// A left-out step whose outputs others need: take them as recorded.
    fn carry(&mut self, i: usize, reason: String) {
        let p = self.prepared;
        let name = p.pipeline.steps[i].name.clone();
        let record = p
            .base
            .as_ref()
            .and_then(|(_, b)| b.steps.get(&name))
            .cloned()
            .unwrap_or_default();
        match self.share(i, &record) {
            Ok(()) => {
                self.settle_reused(i, record, reason);
                if let Some(r) = self.records[i].as_mut() {
                    r.status = StepStatus::Skipped;
                }
            }
            Err(e) => {
                let step = &p.pipeline.steps[i];
                self.reporter.step_finished(
                    &name,
                    &format!("failed: its outputs could not be taken from the base run ({e:#})"),
                );
                self.records[i] = Some(StepRecord {
                    name: name.clone(),
                    group: step.group.clone(),
                    command: step.run.clone(),
                    status: StepStatus::Failed,
                    ..Default::default()
                });
                self.reasons[i] =
                    format!("its outputs could not be taken from the base run: {e:#}");
            }
        }
    }

    fn settle_skipped(&mut self, i: usize, reason: String) {
        let step = &self.prepared.pipeline.steps[i];
        self.records[i] = Some(StepRecord {
            name: step.name.clone(),
            group: step.group.clone(),
            command: step.run.clone(),
            status: StepStatus::Skipped,
            ..Default::default()
        });
        self.reasons[i] = reason;
    }

    fn step_env(&self, i: usize) -> Vec<(String, String)> {
        let p = self.prepared;
        let step = &p.pipeline.steps[i];
        let mut env: Vec<(String, String)> = self
            .opts
            .config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in &p.params {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            env.push((pipeline::param_var(k), text));
        }
        env.push(("ARTIFACTCTL_RUN_DIR".into(), path_text(self.staging)));
        env.push(("ARTIFACTCTL_RUN_ID".into(), self.run_id.to_string()));
        env.push((
            "ARTIFACTCTL_STEP_DIR".into(),
            path_text(&self.staging.join(&step.name)),
        ));
        for &j in &p.pipeline.needs[i] {
            let need = &p.pipeline.steps[j].name;
            env.push((
                pipeline::need_dir_var(need),
                path_text(&self.staging.join(need)),
            ));
        }
        if let Some((path, _)) = &p.dataset {
            env.push(("ARTIFACTCTL_DATASET".into(), path_text(path)));
        }
        env
    }

    /// Start step `i`; `None` when it could not start (recorded as failed).
    fn spawn<'s>(
        &mut self,
        i: usize,
        fingerprint: Fingerprint,
        scope: &'s Scope<'s, '_>,
    ) -> Result<Option<Running<'s>>>
    where
        'a: 's,
    {
        let p = self.prepared;
        let step = &p.pipeline.steps[i];
        let step_dir = self.staging.join(&step.name);
        std::fs::create_dir(&step_dir)
            .with_context(|| format!("cannot create {}", step_dir.display()))?;
        let log_path = self
            .staging
            .join(LOGS_DIR)
            .join(format!("{}.log", step.name));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(SHELL);
        command
            .arg("-c")
            .arg(&step.run)
            .current_dir(&self.opts.project_root)
            .envs(self.step_env(i))
            .stdin(Stdio::null())
            // Its own process group, so an interrupt stops the whole tree the
            // step started, and a terminal's Ctrl-C reaches only us.
            .process_group(0);
        if let Some(reaper) = &self.reaper {
            let (fd, parent) = (reaper.fd(), std::process::id() as libc::pid_t);
            // SAFETY: `announce` is async-signal-safe, as a closure between
            // fork and exec must be.
            unsafe {
                command.pre_exec(move || super::reaper::announce(fd, parent));
            }
        }
        if self.opts.stream_logs {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            command.stdout(log.try_clone()?).stderr(log.try_clone()?);
        }
        let started = Utc::now();
        let clock = Instant::now();
        self.reporter.step_started(&step.name);
        self.pending.insert(
            i,
            StepRecord {
                name: step.name.clone(),
                group: step.group.clone(),
                command: step.run.clone(),
                status: StepStatus::Failed,
                fingerprint: Some(fingerprint),
                ..Default::default()
            },
        );
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = writeln!(&log, "artifactctl: cannot start `sh -c`: {e}");
                self.finish(i, Err(e), started, clock, false)?;
                return Ok(None);
            }
        };
        let exited = pidfd(child.id());
        let mut readers = Vec::new();
        let log = Arc::new(Mutex::new(log));
        let reporter = self.reporter;
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let log = Arc::clone(&log);
            let name = step.name.clone();
            readers.push(scope.spawn(move || pump(pipe, &log, &name, reporter)));
        }
        Ok(Some(Running {
            child,
            exited,
            readers,
            started,
            clock,
        }))
    }

    /// Record a child's end; returns whether it succeeded.
    fn finish(
        &mut self,
        i: usize,
        status: std::io::Result<ExitStatus>,
        started: DateTime<Utc>,
        clock: Instant,
        interrupted: bool,
    ) -> Result<bool> {
        let mut record = self
            .pending
            .remove(&i)
            .expect("a started step has a pending record");
        let name = record.name.clone();
        let duration = clock.elapsed().as_secs_f64();
        let (exit_code, ok) = match &status {
            Ok(status) => (
                status.code().or_else(|| status.signal().map(|s| 128 + s)),
                status.success(),
            ),
            Err(_) => (None, false),
        };
        let ok = ok && !interrupted;
        let step_dir = self.staging.join(&name);
        fsx::make_tree_readonly(&step_dir)
            .with_context(|| format!("cannot make {} read-only", step_dir.display()))?;
        let outputs: Vec<FileEntry> = manifest::build(&step_dir, &Silent)
            .with_context(|| format!("cannot hash the outputs in {}", step_dir.display()))?;
        record.started_at = Some(started);
        record.ended_at = Some(Utc::now());
        record.duration_s = (duration * 1000.0).round() / 1000.0;
        record.exit_code = exit_code;
        record.output_hash = ok.then(|| pipeline::output_hash(&outputs));
        record.outputs = outputs;
        record.status = if ok {
            StepStatus::Ran
        } else {
            StepStatus::Failed
        };
        let outcome = match (&status, ok) {
            (_, true) => format!("ran in {}", took(duration)),
            (Err(e), _) => format!("failed: cannot start sh ({e})"),
            (Ok(_), false) if interrupted => "interrupted".to_string(),
            (Ok(_), false) => format!(
                "failed (exit {}) after {}",
                exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "?".into()),
                took(duration)
            ),
        };
        if interrupted && !ok {
            self.reasons[i] = "interrupted".into();
        }
        self.reporter.step_finished(&name, &outcome);
        self.records[i] = Some(record);
        Ok(ok)
    }
}

pub(super) fn signal_groups(running: &BTreeMap<usize, Running>, signal: libc::c_int) {
    for step in running.values() {
        // SAFETY: a negative pid signals the process group the child leads;
        // the child is not reaped yet, so its pid cannot have been reused.
        unsafe {
            libc::kill(-(step.child.id() as i32), signal);
        }
    }
}

/// A descriptor that becomes readable when process `pid` exits.
pub(super) fn pidfd(pid: u32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor, or -1 (old kernels: ENOSYS).
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd >= 0 {
            // SAFETY: the descriptor was just opened and is owned by no one else.
            return Some(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
    }
    let _ = pid;
    None
}

/// Sleep until a running child exits, `timeout` passes or a signal arrives;
/// returns the steps whose child exited, with its status.
pub(super) fn wait_any(
    running: &mut BTreeMap<usize, Running>,
    timeout: Duration,
) -> Vec<(usize, std::io::Result<ExitStatus>)> {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = running
        .values()
        .filter_map(|r| r.exited.as_ref())
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = if fds.len() == running.len() {
        timeout
    } else {
        timeout.min(FALLBACK_POLL)
    };
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs. An error
    // (EINTR on a signal) only ends the wait early.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        );
    }
    let mut exited = Vec::new();
    for (&i, step) in running.iter_mut() {
        match step.child.try_wait() {
            Ok(Some(status)) => exited.push((i, Ok(status))),
            Ok(None) => {}
            Err(e) => exited.push((i, Err(e))),
        }
    }
    exited
}

/// Copy a child's output into its log, line by line, and to the reporter.
pub(super) fn pump(
    mut from: Box<dyn Read + Send>,
    log: &Mutex<File>,
    step: &str,
    reporter: &dyn StepReporter,
) {
    let mut reader = BufReader::new(&mut from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Ok(mut file) = log.lock() {
                    let _ = file.write_all(&line);
                }
                let text = String::from_utf8_lossy(&line);
                reporter.step_log(step, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// `12ms`, `3.4s`.
pub(super) fn took(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{}ms", (seconds * 1000.0).round())
    } else {
        format!("{seconds:.1}s")
    }
}

pub(super) fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
