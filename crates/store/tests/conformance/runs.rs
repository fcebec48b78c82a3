//! Workflow runs: a leg's completion, the jobs it unblocks, fail-fast cancels and the run's
//! conclusion commit in one transaction; secrets reach only offers and only while the run lives.

use std::collections::BTreeMap;
use std::sync::Arc;

use baton_core::{EventKind, JobConclusion, JobId, JobState, MessageId, RunId};
use baton_engine::{Outcome, Phase};
use baton_store::{NewRun, RunView};

use crate::harness::{Harness, T0, at, data, offers};

fn new_run(yaml: &str, secrets: &[(&str, &str)]) -> NewRun {
    let workflow = baton_workflow::parse_workflow("ci.yml", yaml).expect("the test workflow parses");
    NewRun {
        file_name: "ci.yml".into(),
        text: yaml.into(),
        workflow: Arc::new(workflow),
        inputs: baton_expr::Object::new(),
        secrets: secrets.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        only: None,
        any_runner: false,
    }
}

const CHAIN: &str = "name: chain\non: push\njobs:\n  a:\n    runs-on: linux\n    outputs:\n      x: ${{ steps.s.outputs.x }}\n    \
                     steps:\n      - id: s\n        run: echo x=1 >> $GITHUB_OUTPUT\n  \
                     b:\n    needs: a\n    runs-on: linux\n    steps:\n      - run: echo ${{ needs.a.outputs.x }}\n";

/// The Baton job of the only leg of workflow job `key`.
fn leg_job(view: &RunView, key: &str) -> Option<JobId> {
    let job = view.state.jobs.iter().find(|job| job.key == key)?;
    job.legs.first()?.job_id.map(JobId)
}

pub fn a_finished_leg_starts_its_dependents_in_the_same_commit(harness: &mut Harness) {
    let (runner, session) = harness.connect("r1", &["linux"], 2, T0);
    let view = harness.store.submit_run(&new_run(CHAIN, &[("TOKEN", "s3cret")]), T0).expect("submit");
    assert_eq!(view.run.name, "chain");
    let a = leg_job(&view, "a").expect("a is enqueued at once");
    assert_eq!(leg_job(&view, "b"), None, "b waits for a");
    assert_eq!(harness.job(a).run_id, Some(view.run.id));

    let polled = harness.poll(&runner, &session, 2, MessageId(0), at(10));
    let [(_, job_id, attempt, epoch)] = offers(&polled)[..] else { panic!("one offer: {polled:?}") };
    assert_eq!(job_id, a);
    assert_eq!(polled.secrets[&a], BTreeMap::from([("TOKEN".to_string(), "s3cret".to_string())]));
    harness.store.accept(runner.id, a, attempt, epoch, at(20)).expect("accept");
    let before = harness.last_seq();
    let outputs = BTreeMap::from([("x".to_string(), "hello".to_string())]);
    harness
        .store
        .complete(runner.id, a, attempt, epoch, baton_core::AttemptResult::Success, &outputs, "", at(30))
        .expect("complete");

    let view = harness.store.run_view(view.run.id).expect("run");
    let b = leg_job(&view, "b").expect("b was enqueued by a's completion");
    let kinds = harness.kinds_after(before);
    assert_eq!(kinds, [EventKind::JobCompleted, EventKind::JobQueued, EventKind::JobOffered], "one commit");
    let spec: baton_api::JobSpec = serde_json::from_str(&harness.job(b).spec).expect("spec");
    assert_eq!(spec.contexts.expect("contexts")["needs"]["a"]["outputs"]["x"], "hello");
    assert_eq!(view.state.jobs[0].outputs["x"], "hello");
    assert_eq!(view.run.completed_at, None);

    let polled = harness.poll(&runner, &session, 2, MessageId(0), at(40));
    let offer = offers(&polled).into_iter().find(|offer| offer.1 == b).expect("b is offered");
    harness.store.accept(runner.id, b, offer.2, offer.3, at(50)).expect("accept b");
    harness
        .store
        .complete(runner.id, b, offer.2, offer.3, baton_core::AttemptResult::Success, &BTreeMap::new(), "", at(60))
        .expect("complete b");
    let view = harness.store.run_view(view.run.id).expect("run");
    assert_eq!(view.run.conclusion.as_deref(), Some("success"));
    assert_eq!(view.run.completed_at, Some(at(60)));
    assert_eq!(view.run.secrets, None, "secrets are dropped when the run completes");
    let last = harness.events().into_iter().last().expect("events");
    assert_eq!(last.kind, EventKind::RunCompleted);
    assert_eq!(data(&last)["conclusion"], "success");
    harness.check_invariants();
}

pub fn a_cancelled_leg_skips_dependents_and_cancels_the_run(harness: &mut Harness) {
    let running = harness.start_job("r1", "warm-up", 1, T0);
    // The runner is busy; the run's first job waits queued. Cancelling it (a leg that ends at
    // once) must skip b and conclude the run.
    let view = harness.store.submit_run(&new_run(CHAIN, &[]), at(10)).expect("submit");
    let a = leg_job(&view, "a").expect("a");
    assert_eq!(harness.job(a).state, JobState::Queued);
    harness.store.cancel_job(a, at(20)).expect("cancel a");
    let view = harness.store.run_view(view.run.id).expect("run");
    assert_eq!(view.state.jobs[1].result, Some(Outcome::Skipped));
    assert_eq!(view.run.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(running.job.state, JobState::Running);
    harness.check_invariants();
}

const MATRIX: &str = "on: push\njobs:\n  t:\n    runs-on: linux\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    \
                      steps: [{run: 'true'}]\n";

pub fn fail_fast_cancels_queued_legs_in_the_failing_commit(harness: &mut Harness) {
    let (runner, session) = harness.connect("r1", &["linux"], 1, T0);
    let view = harness.store.submit_run(&new_run(MATRIX, &[]), T0).expect("submit");
    let legs: Vec<JobId> = view.state.jobs[0].legs.iter().map(|leg| JobId(leg.job_id.expect("enqueued"))).collect();
    assert_eq!(legs.len(), 3);
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let [(_, first, attempt, epoch)] = offers(&polled)[..] else { panic!("one offer: {polled:?}") };
    harness.store.accept(runner.id, first, attempt, epoch, at(20)).expect("accept");
    harness
        .store
        .complete(runner.id, first, attempt, epoch, baton_core::AttemptResult::Failure, &BTreeMap::new(), "", at(30))
        .expect("complete");
    for leg in &legs {
        let job = harness.job(*leg);
        assert_eq!(job.state, JobState::Completed, "leg {leg}");
        let expected = if *leg == first { JobConclusion::Failure } else { JobConclusion::Cancelled };
        assert_eq!(job.conclusion, Some(expected), "leg {leg}");
    }
    let view = harness.store.run_view(view.run.id).expect("run");
    assert_eq!(view.state.jobs[0].phase, Phase::Completed);
    assert_eq!(view.run.conclusion.as_deref(), Some("failure"));
    harness.check_invariants();
}

pub fn cancelling_a_run_tells_running_legs_and_concludes_when_they_stop(harness: &mut Harness) {
    let running = harness.start_job("r1", "other", 1, T0);
    let (runner, session) = harness.connect("r2", &["linux"], 1, T0);
    let view = harness.store.submit_run(&new_run(CHAIN, &[]), at(10)).expect("submit");
    let a = leg_job(&view, "a").expect("a");
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(20));
    let [(_, job_id, attempt, epoch)] = offers(&polled)[..] else { panic!("one offer: {polled:?}") };
    assert_eq!(job_id, a);
    harness.store.accept(runner.id, a, attempt, epoch, at(30)).expect("accept");

    let view = harness.store.cancel_run(view.run.id, at(40)).expect("cancel run");
    assert!(view.run.cancel_requested);
    assert_eq!(view.run.completed_at, None, "a is still running");
    assert!(harness.job(a).cancel_requested);
    let again = harness.store.cancel_run(view.run.id, at(45)).expect("cancel again");
    assert_eq!(again.run.state, view.run.state, "a second cancel changes nothing");

    harness
        .store
        .complete(runner.id, a, attempt, epoch, baton_core::AttemptResult::Cancelled, &BTreeMap::new(), "", at(50))
        .expect("complete cancelled");
    let view = harness.store.run_view(view.run.id).expect("run");
    assert_eq!(view.state.jobs[1].result, Some(Outcome::Skipped));
    assert_eq!(view.run.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(running.runner.name, "r1");
    let missing = harness.store.cancel_run(RunId(999), at(60)).expect_err("unknown run");
    assert!(missing.to_string().contains("not found"), "{missing}");
    harness.check_invariants();
}

pub fn bad_secrets_are_invalid_and_write_nothing(harness: &mut Harness) {
    for (name, value) in [("1ABC", "x"), ("GITHUB_TOKEN", "x"), ("A-B", "x"), ("BIG", &"x".repeat(48 * 1024 + 1))] {
        let error =
            harness.fails_without_writing("submit", || harness.store.submit_run(&new_run(CHAIN, &[(name, value)]), T0));
        assert!(error.to_string().starts_with("secrets:"), "{error}");
    }
}

pub fn the_server_masks_secrets_again_in_logs_outputs_and_summaries(harness: &mut Harness) {
    let (runner, session) = harness.connect("r1", &["linux"], 1, T0);
    let view = harness
        .store
        .submit_run(&new_run(CHAIN, &[("TOKEN", "s3cret-value"), ("CERT", "line-one\nline-two")]), T0)
        .expect("submit");
    let a = leg_job(&view, "a").expect("a");
    let polled = harness.poll(&runner, &session, 1, MessageId(0), at(10));
    let [(_, _, attempt, epoch)] = offers(&polled)[..] else { panic!("one offer: {polled:?}") };
    harness.store.accept(runner.id, a, attempt, epoch, at(20)).expect("accept");
    let raw = "token=s3cret-value cert=line-two\n";
    harness.store.append_log(runner.id, a, attempt, epoch, 1, raw, at(30)).expect("log");
    let stored = harness.store.logs(a, attempt, 0, 10).expect("logs");
    assert_eq!(stored[0].data, "token=*** cert=***\n");
    // A retry of the same chunk is recognised as a duplicate, not a conflict.
    let again = harness.store.append_log(runner.id, a, attempt, epoch, 1, raw, at(31)).expect("retry");
    assert_eq!(again, baton_store::LogAppend::Duplicate);
    let outputs = BTreeMap::from([("x".to_string(), "is s3cret-value".to_string())]);
    let done = harness
        .store
        .complete(
            runner.id,
            a,
            attempt,
            epoch,
            baton_core::AttemptResult::Success,
            &outputs,
            "sum s3cret-value",
            at(40),
        )
        .expect("complete");
    let last = done.attempts.last().expect("attempt");
    assert_eq!(last.outputs["x"], "is ***");
    assert_eq!(last.summary.as_deref(), Some("sum ***"));
    let view = harness.store.run_view(view.run.id).expect("run");
    assert_eq!(view.state.jobs[0].outputs["x"], "is ***", "needs outputs carry the masked value");
}
