//! The runner's identity on disk.
//!
//! After registering, a runner keeps its credential in `<state dir>/credentials.json` with mode
//! 0600, so a restarted persistent runner comes back as the same runner instead of registering
//! a new one. The file names the servers it was registered with (one URL, or a comma-separated
//! list of replicas), and is used only with a server list that shares a URL with it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The servers registered with, as `--server` takes them: one base URL or several separated
    /// by commas.
    pub server: String,
    pub runner_id: i64,
    pub name: String,
    pub credential: String,
}

impl Credentials {
    /// Whether the credentials belong to the deployment at `servers`: their stored list shares
    /// a URL with it. Replicas serve one database, so a runner keeps its identity when replicas
    /// are added, removed or reordered; a list with no URL in common is another deployment.
    pub fn is_for_servers(&self, servers: &[String]) -> bool {
        match baton_client::parse_server_urls(&self.server) {
            Ok(stored) => stored.iter().any(|url| servers.contains(url)),
            Err(_) => false,
        }
    }
}

/// Largest credentials file read.
const FILE_BYTES_MAX: u64 = 64 * 1024;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("credentials.json")
}

/// The stored credentials, if a previous run left them.
pub fn load(state_dir: &Path) -> anyhow::Result<Option<Credentials>> {
    let path = path(state_dir);
    let metadata = match std::fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("read {}", path.display())),
    };
    anyhow::ensure!(metadata.len() <= FILE_BYTES_MAX, "{} is too large to be a credentials file", path.display());
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let credentials = serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    Ok(Some(credentials))
}

/// Writes the credentials atomically (temp file, then rename), readable by the owner only.
pub fn store(state_dir: &Path, credentials: &Credentials) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("create {}", state_dir.display()))?;
    let path = path(state_dir);
    let temp = state_dir.join("credentials.json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("create {}", temp.display()))?;
    file.write_all(serde_json::to_string_pretty(credentials)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, &path).with_context(|| format!("move credentials into {}", path.display()))?;
    Ok(())
}

/// Forgets the credentials, after the server said the runner is gone.
pub fn remove(state_dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path(state_dir)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).context("remove the credentials file"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn stored_with_owner_only_permissions_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load(dir.path()).expect("load").is_none());
        let credentials = Credentials {
            server: "http://127.0.0.1:1".into(),
            runner_id: 7,
            name: "r".into(),
            credential: "bat_run_x".into(),
        };
        store(dir.path(), &credentials).expect("store");
        let mode = std::fs::metadata(path(dir.path())).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load(dir.path()).expect("load").expect("present");
        assert_eq!(loaded.runner_id, 7);
        assert_eq!(loaded.credential, "bat_run_x");
    }

    #[test]
    fn a_server_list_round_trips_and_matches_any_list_sharing_a_url() {
        let dir = tempfile::tempdir().expect("temp dir");
        let credentials = Credentials {
            server: "http://ci-a:8420,http://ci-b:8420".into(),
            runner_id: 7,
            name: "r".into(),
            credential: "bat_run_x".into(),
        };
        store(dir.path(), &credentials).expect("store");
        let loaded = load(dir.path()).expect("load").expect("present");
        assert_eq!(loaded.server, "http://ci-a:8420,http://ci-b:8420");
        let is_for = |servers: &str| {
            loaded.is_for_servers(&baton_client::parse_server_urls(servers).expect("a valid server list"))
        };
        assert!(is_for("http://ci-a:8420,http://ci-b:8420"));
        assert!(is_for("http://ci-b:8420/, http://ci-a:8420"), "reordered");
        assert!(is_for("http://ci-b:8420,http://ci-c:8420"), "a replica replaced");
        assert!(is_for("http://ci-a:8420"), "a replica removed");
        assert!(!is_for("http://staging:8420"), "another deployment");

        // A file written before lists, with the URL as it was typed.
        let single = Credentials { server: "http://ci-a:8420/".into(), ..loaded.clone() };
        assert!(single.is_for_servers(&["http://ci-a:8420".to_string(), "http://ci-b:8420".to_string()]));
        let unreadable = Credentials { server: "ci-a:8420".into(), ..loaded };
        assert!(!unreadable.is_for_servers(&["http://ci-a:8420".to_string()]));
    }
}
