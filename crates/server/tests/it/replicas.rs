//! Several server replicas on one PostgreSQL database: any replica serves any call, a long-poll
//! on one wakes when another assigns to it, and the F2 and F4 races hold across replicas.
//!
//! Each test makes a scratch schema in the database at `BATON_TEST_POSTGRES_URL` (which
//! `scripts/test.sh` starts) and runs three in-process servers on it; they share nothing but
//! the database. Without the variable the tests are skipped, except under `CI=true`, where
//! they fail.

use std::time::{Duration, Instant};

use baton_api as api;
use baton_core::Timeouts;
use baton_server::Database;

use crate::common::{TestServer, all_events, eventually, fast_timeouts};
use crate::f2_busy_is_linearizable::{check_reads, race_reads};
use crate::f4_assign_races_retire::{LANES, RACES, Sides, check_no_offer_after_retiring, check_tally, run_lane, tally};

/// The URL of a fresh schema in the test database, or `None` (skip) when there is none.
async fn scratch_schema() -> Option<String> {
    let Some(url) = std::env::var("BATON_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but BATON_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL"
        );
        eprintln!("skipped: set BATON_TEST_POSTGRES_URL (scripts/test.sh does) to run the replica tests");
        return None;
    };
    let schema = format!("replicas_{}_{:016x}", std::process::id(), nonce());
    let create = format!("CREATE SCHEMA {schema}");
    let admin_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut admin =
            postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect to BATON_TEST_POSTGRES_URL");
        admin.batch_execute(&create).expect("create a scratch schema");
    })
    .await
    .expect("join the schema creation");
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}options=-c%20search_path%3D{schema}"))
}

/// A number no other test process of this run picks.
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Three servers on one fresh schema.
async fn replicas(timeouts: Timeouts) -> Option<Vec<TestServer>> {
    let url = scratch_schema().await?;
    let mut servers = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("create a temp dir");
        // Every sweep is a write, and writes take turns across replicas: sweeping as often as
        // the single-server tests do would leave little room for the calls under test.
        let sweep_interval = Duration::from_millis(250);
        servers
            .push(TestServer::start_on(Database::Postgres { url: url.clone() }, timeouts, sweep_interval, dir).await);
    }
    Some(servers)
}

async fn stop_all(servers: &mut [TestServer]) {
    for server in servers {
        server.stop().await;
    }
}

/// How many long-polls `server` holds open right now, from its metrics.
async fn polls_waiting(server: &TestServer) -> i64 {
    let text = server.admin.metrics_text().await.expect("read metrics");
    text.lines()
        .filter(|line| !line.starts_with('#') && line.contains("long_polls_waiting"))
        .filter_map(|line| line.split_whitespace().last()?.parse::<i64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_on_one_replica_wakes_when_another_assigns() {
    // Long-polls last 30 s here: a poll that only ended at its timeout would fail the bound.
    let timeouts =
        Timeouts { long_poll_max: Duration::from_secs(30), session_ttl: Duration::from_secs(60), ..fast_timeouts() };
    let Some(mut servers) = replicas(timeouts).await else { return };
    let mut runner = servers[0].runner("waiter", &["wake"], 1, false).await;
    for round in 0..5 {
        let before = polls_waiting(&servers[0]).await;
        let mut poll_runner = runner;
        let poll = tokio::spawn(async move {
            let started = Instant::now();
            let messages = poll_runner.poll(Duration::from_secs(30), 1).await;
            (poll_runner, messages, started.elapsed())
        });
        // The poll waits on replica 0 before replica 1 takes the job.
        crate::common::eventually("the poll waits on replica 0", || async {
            (polls_waiting(&servers[0]).await > before).then_some(())
        })
        .await;
        let job = servers[1].enqueue(&format!("wake-{round}"), &["wake"]).await;
        let (returned, messages, waited) = poll.await.expect("poll task");
        runner = returned;
        let offer = messages
            .iter()
            .find_map(|message| match &message.body {
                api::MessageBody::JobOffer(offer) => Some(offer.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("round {round}: the poll returned without the offer: {messages:?}"));
        assert_eq!(offer.job_id, job.id);
        eprintln!("round {round}: the poll woke after {waited:?}");
        assert!(waited < Duration::from_secs(10), "round {round}: the poll woke only after {waited:?}");
        // Finished through the third replica.
        let via_third = runner.through(&servers[2].anonymous());
        via_third.accept(&offer).await.expect("accept through replica 2");
        let finished =
            via_third.complete(&offer, api::AttemptResult::Success).await.expect("complete through replica 2");
        assert_eq!(finished.state, "completed");
    }
    stop_all(&mut servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assign_on_one_replica_racing_retire_on_another_never_both_win() {
    // Offers wait for acceptance longer than the fast timeouts allow: three replicas and their
    // database share two cores here.
    let timeouts = Timeouts {
        accept_timeout: Duration::from_secs(5),
        lease_ttl: Duration::from_secs(10),
        session_ttl: Duration::from_secs(20),
        ..fast_timeouts()
    };
    let Some(mut servers) = replicas(timeouts).await else { return };
    // Writes take turns across the replicas: 10,000 races take about four minutes here.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let sides = Sides {
            enqueue: servers[lane % 3].admin.clone(),
            retire: servers[(lane + 1) % 3].admin.clone(),
            runner_url: servers[(lane + 2) % 3].url.clone(),
        };
        lanes.push(tokio::spawn(async move { run_lane(lane, sides, RACES / LANES, deadline).await }));
    }
    let total = tally(lanes).await;
    check_tally(&total, RACES);
    let events = all_events(&servers[1].admin).await;
    check_no_offer_after_retiring(&events);
    // Read later through another replica, the log starts with the same events (sweeps may
    // have appended more since).
    let last = events.last().map_or(0, |event| event.seq);
    let log = |events: &[api::Event]| {
        events.iter().filter(|event| event.seq <= last).map(|event| (event.seq, event.kind.clone())).collect::<Vec<_>>()
    };
    assert_eq!(log(&events), log(&all_events(&servers[2].admin).await), "two replicas serve one log");
    stop_all(&mut servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_read_through_any_replica_equals_the_truth() {
    let Some(mut servers) = replicas(fast_timeouts()).await else { return };
    let runner = servers[0].runner("f2-runner", &["f2"], 1, false).await;
    let runner_id = runner.id;
    let readers =
        vec![servers[1].admin.clone(), servers[2].admin.clone(), servers[1].admin.clone(), servers[2].admin.clone()];
    let (reads, cycles) = race_reads(servers[0].admin.clone(), runner, readers, 20_000).await;
    check_reads(&all_events(&servers[2].admin).await, runner_id, &reads, cycles);
    stop_all(&mut servers).await;
}

/// Every replica runs the webhook dispatcher. Each delivery is claimed by one of them before it
/// is sent, so the receiver gets every message once, and an ordered endpoint gets them one at a
/// time in event order, whichever replica sends each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_from_three_replicas_arrive_once_each_and_in_order() {
    use crate::webhooks::{SECRET, cancelled_jobs, start_receiver};
    let Some(mut servers) = replicas(fast_timeouts()).await else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let port = listener.local_addr().expect("address").port();
    let received = start_receiver(listener, SECRET).await;
    let created = servers[0]
        .admin
        .create_webhook(&api::CreateWebhookRequest {
            url: format!("http://127.0.0.1:{port}/hook"),
            events: vec!["workflow_job".into()],
            secret: Some(SECRET.into()),
            ordered: true,
        })
        .await
        .expect("create the webhook");

    // Jobs queued and cancelled through each replica in turn: two events each.
    const JOBS_PER_REPLICA: usize = 10;
    for server in &servers {
        cancelled_jobs(server, JOBS_PER_REPLICA).await;
    }
    let expected = 2 * JOBS_PER_REPLICA * servers.len();
    let log = eventually("every delivery delivered", || async {
        let log = servers[1].admin.webhook_deliveries(created.webhook.id, 0, 200).await.expect("deliveries");
        (log.deliveries.len() == expected && log.deliveries.iter().all(|delivery| delivery.status == "delivered"))
            .then_some(log)
    })
    .await;
    assert!(log.deliveries.iter().all(|delivery| delivery.attempts == 1), "each sent once: {log:?}");

    let (bad_signatures, duplicates, arrival) = {
        let received = received.lock().expect("lock");
        (received.bad_signatures, received.duplicates, received.arrival.clone())
    };
    assert_eq!(bad_signatures, 0);
    assert_eq!(duplicates, 0, "no message sent by two replicas");
    assert_eq!(arrival.len(), expected);
    // Message ids are msg_<webhook>_<event seq>: arrival follows the event order.
    let sequence: Vec<u64> = arrival
        .iter()
        .map(|id| id.rsplit('_').next().and_then(|seq| seq.parse().ok()).expect("msg_<webhook>_<seq>"))
        .collect();
    assert!(sequence.windows(2).all(|pair| pair[0] < pair[1]), "out of order: {sequence:?}");
    stop_all(&mut servers).await;
}
