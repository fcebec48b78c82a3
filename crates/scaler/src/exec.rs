//! The `exec` provider: a user's executable drives any cloud without changing Baton.
//!
//! The scaler runs, each with a time limit and its output bounded to 1 MiB:
//! - `COMMAND create`, with the request as JSON on stdin (`{"name", "pool", "labels",
//!   "server", "jit_config", "ephemeral", "capacity"}`) and the same values in `BATON_*`
//!   variables; it prints `{"id": "..."}`. The machine must start
//!   `baton runner --server SERVER --jit JIT_CONFIG --name NAME [--ephemeral]`. `server` may be
//!   a comma-separated list of replicas' URLs: pass it to `--server` (or `BATON_SERVER`) as is.
//! - `COMMAND terminate ID`: stops and removes the machine; an unknown id must succeed.
//! - `COMMAND list POOL`: prints a JSON array of `{"id", "name", "pool"}` for the pool's machines.
//!
//! Exit status 0 means success; anything else is an error, with stderr in the message.
//! `examples/scaler/exec-provider.sh` implements it with local processes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::provider::{BoxFuture, CreateRequest, Instance, Provider, ProviderError, ProviderResult};

const OUTPUT_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug)]
pub struct ExecProvider {
    command: PathBuf,
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Listed {
    id: String,
    name: String,
    pool: String,
}

impl ExecProvider {
    pub fn new(command: PathBuf, timeout: Duration) -> ExecProvider {
        ExecProvider { command, timeout }
    }

    async fn call(&self, args: &[&str], stdin: Option<String>, env: &[(&str, String)]) -> ProviderResult<String> {
        let shown = format!("{} {}", self.command.display(), args.join(" "));
        let mut command = tokio::process::Command::new(&self.command);
        command
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().map_err(|source| ProviderError::Io { what: format!("run {shown}"), source })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|source| ProviderError::Io { what: format!("write to {shown}"), source })?;
        }
        let mut stdout = child.stdout.take().ok_or_else(|| ProviderError::Failed("no stdout".into()))?;
        let mut stderr = child.stderr.take().ok_or_else(|| ProviderError::Failed("no stderr".into()))?;
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let limit = OUTPUT_BYTES_MAX as u64 + 1;
            let mut stdout = (&mut stdout).take(limit);
            let mut stderr = (&mut stderr).take(limit);
            let (read_out, read_err) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            read_out.and(read_err)?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result.map_err(|source| ProviderError::Io { what: format!("run {shown}"), source })?,
            Err(_) => return Err(ProviderError::Failed(format!("{shown} took longer than {:?}", self.timeout))),
        };
        if out.len() > OUTPUT_BYTES_MAX {
            return Err(ProviderError::Failed(format!("{shown} printed more than 1 MiB")));
        }
        if !status.success() {
            let message = String::from_utf8_lossy(&err);
            return Err(ProviderError::Failed(format!("{shown} failed ({status}): {}", message.trim())));
        }
        String::from_utf8(out)
            .map_err(|_| ProviderError::Failed(format!("{shown} printed something that is not UTF-8")))
    }
}

impl Provider for ExecProvider {
    fn create<'a>(&'a self, request: &'a CreateRequest) -> BoxFuture<'a, ProviderResult<Instance>> {
        Box::pin(async move {
            let input = serde_json::json!({
                "name": request.name,
                "pool": request.pool,
                "labels": request.labels,
                "server": request.server,
                "jit_config": request.jit_config,
                "ephemeral": request.ephemeral,
                "capacity": request.capacity,
            });
            let env = [
                ("BATON_INSTANCE_NAME", request.name.clone()),
                ("BATON_POOL", request.pool.clone()),
                ("BATON_SERVER", request.server.clone()),
                ("BATON_RUNNER_JIT", request.jit_config.clone()),
                ("BATON_EPHEMERAL", request.ephemeral.to_string()),
                ("BATON_CAPACITY", request.capacity.to_string()),
            ];
            let out = self.call(&["create"], Some(input.to_string()), &env).await?;
            let created: Created = serde_json::from_str(out.trim()).map_err(|error| {
                ProviderError::Failed(format!("create printed {out:?}, not {{\"id\": ...}}: {error}"))
            })?;
            Ok(Instance { id: created.id, name: request.name.clone(), pool: request.pool.clone() })
        })
    }

    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>> {
        Box::pin(async move {
            self.call(&["terminate", id], None, &[]).await?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, ProviderResult<Vec<Instance>>> {
        Box::pin(async move {
            let out = self.call(&["list", pool], None, &[]).await?;
            let listed: Vec<Listed> = serde_json::from_str(out.trim())
                .map_err(|error| ProviderError::Failed(format!("list printed {out:?}, not a JSON array: {error}")))?;
            Ok(listed
                .into_iter()
                .filter(|instance| instance.pool == pool)
                .map(|instance| Instance { id: instance.id, name: instance.name, pool: instance.pool })
                .collect())
        })
    }
}
