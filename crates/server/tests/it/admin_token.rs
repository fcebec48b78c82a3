//! The admin token: generated at the first start when none is configured, shown once, kept
//! only as a hash, and still valid after a restart on the same data.

use std::time::Duration;

use baton_client::Client;
use baton_server::{Config, Database, Server};
use baton_store::sqlite::Durability;

fn config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database: Database::Sqlite { path: dir.join("baton.db"), durability: Durability::Normal },
        timeouts: crate::common::fast_timeouts(),
        sweep_interval: Duration::from_millis(25),
        admin_token: None,
        webhooks: Default::default(),
        execution: Default::default(),
        clock_origin: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_once_stored_hashed_and_kept_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Server::start(config(dir.path())).await.expect("first start");
    let token = first.generated_admin_token().expect("a token is generated at the first start").to_string();
    assert!(token.starts_with("bat_admin_") && token.len() > 40, "{token}");
    let admin = Client::new(&first.url(), Some(token.clone())).expect("client");
    admin.list_jobs(0, 1).await.expect("the generated token works");
    first.shutdown().await.expect("shutdown");

    let needle = token.as_bytes();
    for file in ["baton.db", "baton.db-wal"] {
        let Ok(bytes) = std::fs::read(dir.path().join(file)) else { continue };
        assert!(!bytes.windows(needle.len()).any(|window| window == needle), "the token itself is in {file}");
    }

    let second = Server::start(config(dir.path())).await.expect("second start");
    assert!(second.generated_admin_token().is_none(), "shown once: not generated again");
    let admin = Client::new(&second.url(), Some(token)).expect("client");
    admin.list_jobs(0, 1).await.expect("the same token still works after a restart");
    second.shutdown().await.expect("shutdown");
}
