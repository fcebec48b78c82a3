//! The `process` provider: each runner is a local child process of `baton runner`, with its own
//! work and state directories. The default, and what `baton run` uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::provider::{BoxFuture, CreateRequest, Instance, Provider, ProviderError, ProviderResult};

/// How long a terminated runner may take to leave after SIGTERM before it is killed.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Child {
    process: tokio::process::Child,
    pool: String,
    dir: PathBuf,
}

#[derive(Debug)]
pub struct ProcessProvider {
    program: PathBuf,
    work_dir: PathBuf,
    children: Mutex<HashMap<String, Child>>,
}

impl ProcessProvider {
    /// Runners started as `program runner ...`, each in `work_dir/<name>`.
    pub fn new(program: PathBuf, work_dir: PathBuf) -> ProcessProvider {
        ProcessProvider { program, work_dir, children: Mutex::new(HashMap::new()) }
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<String, Child>> {
        self.children.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The process id of a runner, for tests and diagnostics.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children().get(name).and_then(|child| child.process.id())
    }
}

impl Provider for ProcessProvider {
    fn create<'a>(&'a self, request: &'a CreateRequest) -> BoxFuture<'a, ProviderResult<Instance>> {
        Box::pin(async move {
            let instance =
                Instance { id: request.name.clone(), name: request.name.clone(), pool: request.pool.clone() };
            if self.children().contains_key(&request.name) {
                return Ok(instance);
            }
            let dir = self.work_dir.join(&request.name);
            std::fs::create_dir_all(&dir)
                .map_err(|source| ProviderError::Io { what: format!("create {}", dir.display()), source })?;
            let log = std::fs::File::create(dir.join("runner.log"))
                .map_err(|source| ProviderError::Io { what: "create the runner's log".into(), source })?;
            let log_err =
                log.try_clone().map_err(|source| ProviderError::Io { what: "open the runner's log".into(), source })?;
            let mut command = tokio::process::Command::new(&self.program);
            command
                .arg("runner")
                .args(["--server", &request.server, "--name", &request.name])
                .args(["--capacity", &request.capacity.to_string()])
                .arg("--work-dir")
                .arg(dir.join("work"))
                .arg("--state-dir")
                .arg(dir.join("state"))
                // In the environment, not the arguments, so other users' `ps` cannot read it.
                .env("BATON_RUNNER_JIT", &request.jit_config)
                .env_remove("BATON_RUNNER_TOKEN")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .kill_on_drop(true);
            if request.ephemeral {
                command.arg("--ephemeral");
            }
            let process = command.spawn().map_err(|source| ProviderError::Io {
                what: format!("start {} runner", self.program.display()),
                source,
            })?;
            self.children().insert(request.name.clone(), Child { process, pool: request.pool.clone(), dir });
            Ok(instance)
        })
    }

    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            let Some(mut child) = self.children().remove(id) else { return Ok(()) };
            if let Some(pid) = child.process.id().and_then(|pid| i32::try_from(pid).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            if tokio::time::timeout(TERMINATE_GRACE, child.process.wait()).await.is_err() {
                let _ = child.process.start_kill();
                let _ = child.process.wait().await;
            }
            let _ = std::fs::remove_dir_all(&child.dir);
            Ok(())
        })
    }

    fn list<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, ProviderResult<Vec<Instance>>> {
        Box::pin(async move {
            let mut children = self.children();
            let exited: Vec<String> = children
                .iter_mut()
                .filter_map(|(name, child)| (!matches!(child.process.try_wait(), Ok(None))).then(|| name.clone()))
                .collect();
            for name in exited {
                if let Some(child) = children.remove(&name) {
                    let _ = std::fs::remove_dir_all(&child.dir);
                }
            }
            Ok(children
                .iter()
                .filter(|(_, child)| child.pool == pool)
                .map(|(name, child)| Instance { id: name.clone(), name: name.clone(), pool: child.pool.clone() })
                .collect())
        })
    }
}
