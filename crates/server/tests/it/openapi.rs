//! The OpenAPI document is generated from the code; a checked-in copy documents the API. This
//! test fails when they drift. `UPDATE_EXPECT=1 cargo test -p baton-server` rewrites the copy.

use std::path::PathBuf;

use crate::common::{TestServer, fast_timeouts};

#[test]
fn openapi_matches_checked_in_copy() {
    let generated =
        serde_json::to_string_pretty(&baton_server::http::openapi()).expect("serialize the document") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "crates/server/openapi.json is out of date; run `UPDATE_EXPECT=1 cargo test -p baton-server openapi` and commit it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_same_document() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let served = server.anonymous().openapi().await.expect("fetch the document");
    let generated = serde_json::to_value(baton_server::http::openapi()).expect("serialize");
    assert_eq!(served, generated);
    for path in [
        "/api/v1/runners/register",
        "/api/v1/sessions/{session_id}/messages",
        "/api/v1/runners/{runner_id}/retire",
        "/api/v1/events",
    ] {
        assert!(served["paths"].get(path).is_some(), "the document describes {path}");
    }
    server.stop().await;
}
