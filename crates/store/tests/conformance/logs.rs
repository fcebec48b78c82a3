//! Log uploads: sequenced from 1 without gaps, idempotent for retries, immutable once stored,
//! and accepted only from the runner that holds a running attempt's lease.

use std::collections::BTreeMap;

use baton_core::{AttemptNo, AttemptResult, JobId};
use baton_store::{Error, LogAppend};

use crate::harness::{Harness, T0, assert_conflict, assert_invalid, assert_stale, at};

pub fn log_chunks_are_sequenced_idempotent_and_gapless(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let (runner_id, job_id, attempt, epoch) = (running.runner.id, running.job.id, running.attempt, running.epoch);
    let append = |seq: u64, text: &str, millis: u64| {
        harness.store.append_log(runner_id, job_id, attempt, epoch, seq, text, at(millis))
    };

    assert_eq!(append(1, "hello\n", 200).expect("first chunk"), LogAppend::Appended);
    assert_eq!(append(2, "world\n", 210).expect("second chunk"), LogAppend::Appended);

    // A retry of a stored chunk is acknowledged again and changes nothing.
    let duplicate = harness.succeeds_without_writing("upload chunk 2 again", || append(2, "world\n", 300));
    assert_eq!(duplicate, LogAppend::Duplicate);
    let duplicate = harness.succeeds_without_writing("upload chunk 1 again", || append(1, "hello\n", 300));
    assert_eq!(duplicate, LogAppend::Duplicate);

    // A stored chunk never changes.
    let error = harness.fails_without_writing("upload chunk 2 with other content", || append(2, "tampered\n", 310));
    assert_conflict(&error, "log_conflict");
    let error = harness.fails_without_writing("upload chunk 1 with other content", || append(1, "tampered\n", 310));
    assert_conflict(&error, "log_conflict");

    // Chunks arrive in order: 3 is next, so 4 is a gap.
    let error = harness.fails_without_writing("upload chunk 4 before 3", || append(4, "later\n", 320));
    assert_conflict(&error, "log_gap");
    let error = harness.fails_without_writing("upload chunk 0", || append(0, "zero\n", 320));
    assert_invalid(&error, "seq");
    let oversized = "x".repeat(64 * 1024 + 1);
    let error = harness.fails_without_writing("upload an oversized chunk", || append(3, &oversized, 320));
    assert_invalid(&error, "data");

    assert_eq!(append(3, "done\n", 330).expect("third chunk"), LogAppend::Appended);

    let chunks = harness.store.logs(job_id, attempt, 0, 100).expect("read logs");
    let summary: Vec<_> = chunks.iter().map(|chunk| (chunk.seq, chunk.data.as_str(), chunk.at)).collect();
    assert_eq!(summary, vec![(1, "hello\n", at(200)), (2, "world\n", at(210)), (3, "done\n", at(330))]);
    let after_first: Vec<_> =
        harness.store.logs(job_id, attempt, 1, 100).expect("read").iter().map(|chunk| chunk.seq).collect();
    assert_eq!(after_first, vec![2, 3]);
    let first_only: Vec<_> =
        harness.store.logs(job_id, attempt, 0, 1).expect("read").iter().map(|chunk| chunk.seq).collect();
    assert_eq!(first_only, vec![1]);
    assert!(harness.store.logs(job_id, attempt, 3, 100).expect("read").is_empty());
    assert!(harness.events().iter().all(|event| event.at < at(200)), "log uploads are not events");
}

pub fn logs_are_refused_outside_a_running_attempt(harness: &mut Harness) {
    let running = harness.start_job("runner-1", "job-1", 3, T0);
    let (runner_id, job_id, attempt, epoch) = (running.runner.id, running.job.id, running.attempt, running.epoch);
    harness.store.append_log(runner_id, job_id, attempt, epoch, 1, "before\n", at(200)).expect("append");
    harness
        .store
        .complete(runner_id, job_id, attempt, epoch, AttemptResult::Success, &BTreeMap::new(), "", at(300))
        .expect("complete");

    let error = harness.fails_without_writing("upload after completion", || {
        harness.store.append_log(runner_id, job_id, attempt, epoch, 2, "after\n", at(400))
    });
    assert_stale(&error, job_id, attempt, epoch);
    let kept: Vec<_> =
        harness.store.logs(job_id, attempt, 0, 100).expect("read").into_iter().map(|chunk| chunk.data).collect();
    assert_eq!(kept, vec!["before\n".to_string()], "a finished attempt's log stays readable");

    let error = harness.store.logs(JobId(9_999), AttemptNo(1), 0, 100).expect_err("no such attempt");
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    let error = harness.store.logs(job_id, AttemptNo(2), 0, 100).expect_err("no second attempt");
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
}
