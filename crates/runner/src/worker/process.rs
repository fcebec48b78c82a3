//! Processes of a job: process groups, the cancel escalation, and the final sweep.
//!
//! Each step runs in its own process group, so a signal reaches everything the step started
//! that stayed in its group. The worker is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a
//! daemon that double-forks and calls `setsid` is re-parented to the worker instead of init, so
//! the final sweep finds and kills it. No process of a job survives the job.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Makes this process the reaper of its orphaned descendants.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// Sends `signal` to a process group; a group that is already empty is not an error.
pub fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pgid, %signal, %error, "signal process group"),
    }
}

/// True while any process is in the group.
pub fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// The stage of a cancel or timeout escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Interrupted,
    Terminated,
    Killed,
}

/// SIGINT, then SIGTERM after `sigint_grace`, then SIGKILL after `sigterm_grace`, to a whole
/// process group. Call [`Escalation::tick`] until the group is gone.
#[derive(Debug)]
pub struct Escalation {
    pgid: i32,
    stage: Stage,
    next_at: Instant,
    sigterm_grace: Duration,
}

impl Escalation {
    pub fn start(pgid: i32, sigint_grace: Duration, sigterm_grace: Duration) -> Escalation {
        signal_group(pgid, Signal::SIGINT);
        Escalation { pgid, stage: Stage::Interrupted, next_at: Instant::now() + sigint_grace, sigterm_grace }
    }

    /// Moves to the next signal when its grace has run out; returns when to call again.
    pub fn tick(&mut self, now: Instant) -> Instant {
        if now >= self.next_at {
            match self.stage {
                Stage::Interrupted => {
                    signal_group(self.pgid, Signal::SIGTERM);
                    self.stage = Stage::Terminated;
                    self.next_at = now + self.sigterm_grace;
                }
                Stage::Terminated | Stage::Killed => {
                    signal_group(self.pgid, Signal::SIGKILL);
                    self.stage = Stage::Killed;
                    self.next_at = now + Duration::from_millis(100);
                }
            }
        }
        self.next_at
    }
}

/// The pids whose parent is `parent`, read from /proc.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut children = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name is in parentheses and may contain spaces; fields follow the last ')'.
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else { continue };
        let mut fields = rest.split_whitespace();
        let _state = fields.next();
        if fields.next().and_then(|ppid| ppid.parse::<i32>().ok()) == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// Kills every process group in `groups` and every descendant re-parented to this process,
/// reaping them, until none is left or `limit` passes. Returns how many processes it killed.
pub fn sweep(groups: &[i32], limit: Duration) -> usize {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + limit;
    let mut killed = 0;
    for &pgid in groups {
        signal_group(pgid, Signal::SIGKILL);
    }
    loop {
        let children = children_of(me);
        if children.is_empty() && groups.iter().all(|&pgid| !group_alive(pgid)) {
            break;
        }
        for &child in &children {
            // Kill its group too: a daemon that called setsid leads a group of its own.
            let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
            if kill(Pid::from_raw(child), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        reap_all();
        if Instant::now() >= deadline {
            tracing::warn!("processes of the job survived the sweep deadline");
            break;
        }
        std::thread::yield_now();
    }
    reap_all();
    killed
}

/// Reaps every exited child without blocking.
fn reap_all() {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => continue,
        }
    }
}
