//! F2 (seeds/001): a REST "busy" flag that lagged the broker's truth let an autoscaler kill a
//! running job. Baton computes `busy` from the attempts in the same snapshot it reports, so
//! every read equals the truth at that read's point in the event sequence.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_api as api;

use baton_client::Client;

use crate::common::{TestRunner, TestServer, fast_timeouts};

const READS: usize = 100_000;
const READERS: usize = 4;
const TIME_LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_read_equals_truth_at_its_commit_point() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let runner = server.runner("f2-runner", &["f2"], 1, false).await;
    let runner_id = runner.id;
    let readers = vec![server.admin.clone(); READERS];
    let (reads, cycles) = race_reads(server.admin.clone(), runner, readers, READS).await;
    check_reads(&server.all_events().await, runner_id, &reads, cycles);
    server.stop().await;
}

/// A worker cycles jobs through `runner` (enqueued through `worker_admin`) while each reader
/// reads the runner's `busy` as fast as it can; returns every (as_of_event, busy) read and the
/// number of job cycles.
pub async fn race_reads(
    worker_admin: Client,
    mut runner: TestRunner,
    readers: Vec<Client>,
    total: usize,
) -> (Vec<(i64, bool)>, u64) {
    let runner_id = runner.id;
    let stop = Arc::new(AtomicBool::new(false));

    // The worker: enqueue, offer, accept, complete, as fast as it can.
    let worker_stop = stop.clone();
    let worker = tokio::spawn(async move {
        let mut cycles = 0u64;
        while !worker_stop.load(Ordering::Relaxed) {
            worker_admin.enqueue_job(&crate::common::job_spec("f2-job", &["f2"])).await.expect("enqueue");
            let offer = runner.next_offer().await;
            runner.accept(&offer).await.expect("accept");
            runner.complete(&offer, api::AttemptResult::Success).await.expect("complete");
            cycles += 1;
        }
        cycles
    });

    // The readers: record (as_of_event, busy) for every read.
    let deadline = Instant::now() + TIME_LIMIT;
    let (share, count) = (total / readers.len(), readers.len());
    let mut tasks = Vec::new();
    for admin in readers {
        tasks.push(tokio::spawn(async move {
            let mut reads = Vec::with_capacity(share);
            while reads.len() < share && Instant::now() < deadline {
                let info = admin.get_runner(runner_id).await.expect("get runner");
                assert_eq!(info.busy, !info.jobs.is_empty(), "busy agrees with the held attempts it is computed from");
                reads.push((info.as_of_event, info.busy));
            }
            reads
        }));
    }
    let mut reads = Vec::new();
    for task in tasks {
        reads.extend(task.await.expect("reader task"));
    }
    stop.store(true, Ordering::Relaxed);
    let cycles = worker.await.expect("worker task");
    assert_eq!(reads.len(), share * count, "all reads finished within {TIME_LIMIT:?}");
    (reads, cycles)
}

/// Every read's `busy` equals the truth replayed from the event log at the read's sequence.
pub fn check_reads(events: &[api::Event], runner_id: i64, reads: &[(i64, bool)], cycles: u64) {
    // Replay the events: how many attempts did the runner hold after each sequence number?
    let mut held = 0i64;
    let mut held_after: HashMap<i64, i64> = HashMap::new();
    let mut last_seq = 0;
    for event in events {
        if event.runner_id == Some(runner_id) {
            match event.kind.as_str() {
                "job.offered" => held += 1,
                "job.offer_expired" | "job.completed" | "job.attempt_lost" => held -= 1,
                _ => {}
            }
        }
        assert!(held >= 0, "the replay never goes negative");
        held_after.insert(event.seq, held);
        last_seq = event.seq;
    }
    let truth = |seq: i64| -> bool {
        // Reads see a snapshot as of some committed event; every seq up to the last is present.
        *held_after
            .get(&seq)
            .unwrap_or_else(|| panic!("read as of event {seq}, which is not in the log (last {last_seq})"))
            > 0
    };
    let disagreements = reads.iter().filter(|(seq, busy)| truth(*seq) != *busy).count();
    let busy_reads = reads.iter().filter(|(_, busy)| *busy).count();
    eprintln!(
        "f2: {} reads, {busy_reads} busy, {} idle, {cycles} job cycles, {disagreements} disagreements",
        reads.len(),
        reads.len() - busy_reads
    );
    assert_eq!(disagreements, 0);
    assert!(cycles > 10, "the worker ran cycles during the reads");
    assert!(busy_reads > 0 && busy_reads < reads.len(), "reads saw both states, so the check was exercised");
}
