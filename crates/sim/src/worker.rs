//! Simulated workers: the real supervisor drives them, the ledger records what they really did.
//!
//! A job's spec says how its worker behaves (`SIM_DURATION_MS`, `SIM_OUTCOME` in its env), so
//! every attempt of a job behaves alike wherever it runs. A worker leaves a marker file in its
//! directory when it starts and looks for it when it ends: a marker gone means another job's
//! clean-up touched this job's files (invariant 5).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use baton_api as api;
use baton_runner::listener::workers::{BoxFuture, Control, Worker, WorkerStart, Workers};
use baton_runner::protocol::WorkerEvent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::ledger::{Ending, SharedLedger};

/// How a job's worker behaves, read from its spec's env.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Succeed,
    Fail,
    /// The worker process dies without a result.
    Crash,
}

pub const DURATION_VAR: &str = "SIM_DURATION_MS";
pub const OUTCOME_VAR: &str = "SIM_OUTCOME";

impl Behaviour {
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Succeed => "success",
            Behaviour::Fail => "failure",
            Behaviour::Crash => "crash",
        }
    }

    fn parse(text: Option<&String>) -> Behaviour {
        match text.map(String::as_str) {
            Some("failure") => Behaviour::Fail,
            Some("crash") => Behaviour::Crash,
            _ => Behaviour::Succeed,
        }
    }
}

/// The launcher of one simulated machine.
#[derive(Debug, Clone)]
pub struct SimWorkers {
    pub machine: String,
    pub ledger: SharedLedger,
    /// The F3 negative control: every job of the machine runs in this one directory, and the
    /// runner is told a worker exited `exit_lag` before it really has (and cleaned up).
    pub shared_dir: Option<PathBuf>,
    pub exit_lag: Duration,
}

impl Workers for SimWorkers {
    fn start(&self, start: WorkerStart<'_>) -> anyhow::Result<Box<dyn Worker>> {
        let env = &start.spec.spec.env;
        let duration = Duration::from_millis(env.get(DURATION_VAR).and_then(|text| text.parse().ok()).unwrap_or(100));
        let behaviour = Behaviour::parse(env.get(OUTCOME_VAR));
        let dir = self.shared_dir.clone().unwrap_or_else(|| start.dirs.root.clone());
        std::fs::create_dir_all(&dir)?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (kill_tx, kill_rx) = watch::channel(false);
        let run = Run {
            ledger: self.ledger.clone(),
            machine: self.machine.clone(),
            job_id: start.job_id,
            attempt: start.attempt,
            dir,
            duration,
            behaviour,
            exit_lag: if self.shared_dir.is_some() { self.exit_lag } else { Duration::ZERO },
            clean_shared: self.shared_dir.is_some(),
        };
        let task = tokio::spawn(run.execute(events_tx, control_rx, kill_rx));
        Ok(Box::new(SimWorker {
            events,
            control: Some(control_tx),
            kill: kill_tx,
            task: Some(task),
            reports_exit_early: self.shared_dir.is_some(),
        }))
    }
}

struct Run {
    ledger: SharedLedger,
    machine: String,
    job_id: i64,
    attempt: u32,
    dir: PathBuf,
    duration: Duration,
    behaviour: Behaviour,
    exit_lag: Duration,
    clean_shared: bool,
}

impl Run {
    async fn execute(
        self,
        events: mpsc::UnboundedSender<WorkerEvent>,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut kill: watch::Receiver<bool>,
    ) {
        let index = self.ledger.started(&self.machine, self.job_id, self.attempt, self.dir.clone());
        let marker = self.dir.join(format!("marker-{}-{}", self.job_id, self.attempt));
        if let Err(error) = std::fs::write(&marker, b"mine") {
            self.ledger.observe(format!(
                "job {}/{} could not write in {}: {error}",
                self.job_id,
                self.attempt,
                self.dir.display()
            ));
        }
        let _ =
            events.send(WorkerEvent::Log { text: format!("job {} attempt {} starts\n", self.job_id, self.attempt) });
        let deadline = tokio::time::sleep(self.duration);
        tokio::pin!(deadline);
        let ending = loop {
            tokio::select! {
                biased;
                _ = kill.wait_for(|killed| *killed) => break Ending::Killed,
                word = control.recv() => match word {
                    Some(Control::Cancel) => break Ending::Cancelled,
                    Some(Control::LeaseLeft { .. }) => {}
                    // The control channel closed: the listener is gone or fenced the job.
                    None => break Ending::Killed,
                },
                _ = &mut deadline => break match self.behaviour {
                    Behaviour::Succeed => Ending::Finished(api::AttemptResult::Success),
                    Behaviour::Fail => Ending::Finished(api::AttemptResult::Failure),
                    Behaviour::Crash => Ending::WorkerCrashed,
                },
            }
        };
        if !marker.exists() {
            self.ledger.observe(format!(
                "job {}/{} on {}: its file {} was removed while it ran",
                self.job_id,
                self.attempt,
                self.machine,
                marker.display()
            ));
        }
        let result = match ending {
            Ending::Finished(result) => Some(result),
            Ending::Cancelled => Some(api::AttemptResult::Cancelled),
            _ => None,
        };
        if let Some(result) = result {
            let _ = events.send(WorkerEvent::Log { text: format!("job {} ends: {result:?}\n", self.job_id) });
            let _ = events.send(WorkerEvent::Result { result, outputs: Default::default(), summary: String::new() });
        }
        drop(events);
        if self.clean_shared {
            // The broken runner already reported this worker gone; it still tears down, and its
            // clean-up empties the directory every job shares.
            tokio::time::sleep(self.exit_lag).await;
            if let Ok(entries) = std::fs::read_dir(&self.dir) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        self.ledger.ended(index, ending);
    }
}

#[derive(Debug)]
struct SimWorker {
    events: mpsc::UnboundedReceiver<WorkerEvent>,
    control: Option<mpsc::UnboundedSender<Control>>,
    kill: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    reports_exit_early: bool,
}

impl Worker for SimWorker {
    fn next_event(&mut self) -> BoxFuture<'_, Option<WorkerEvent>> {
        Box::pin(self.events.recv())
    }

    fn send_control(&mut self, control: Control) -> BoxFuture<'_, ()> {
        if let Some(sender) = &self.control {
            let _ = sender.send(control);
        }
        Box::pin(async {})
    }

    fn close_control(&mut self) {
        self.control = None;
    }

    fn kill_steps(&mut self) {
        let _ = self.kill.send(true);
    }

    fn reap(&mut self, grace: Duration) -> BoxFuture<'_, anyhow::Result<ExitStatus>> {
        self.control = None;
        Box::pin(async move {
            if self.reports_exit_early {
                return Ok(ExitStatus::from_raw(0));
            }
            if let Some(mut task) = self.task.take()
                && tokio::time::timeout(grace, &mut task).await.is_err()
            {
                let _ = self.kill.send(true);
                let _ = task.await;
            }
            Ok(ExitStatus::from_raw(0))
        })
    }

    fn wait_job_gone(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
