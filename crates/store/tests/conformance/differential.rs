//! A differential property test: random sequences of runner, operator and sweep operations run
//! on the in-memory and the SQLite backend side by side.
//!
//! After every step both backends must have given the same answer and hold the same truth
//! (every runner, session, job, attempt, message, log chunk and event), and the invariants of
//! DESIGN.md section 9 must hold on each; a completed attempt must never change afterwards (F1).
//! The example-based tests pin down each script; this test looks for the interleavings nobody
//! thought to write down.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_core::{
    AttemptNo, AttemptResult, AttemptState, JobId, LeaseEpoch, MessageId, RunnerId, SessionId, Timestamp,
};
use baton_store::NewJob;
use proptest::prelude::*;

use crate::harness::{Harness, T0, new_runner, strings};

/// One operation, with its targets given as indexes that the driver resolves against the
/// store's current state (so the same step means the same thing on both backends).
#[derive(Debug, Clone)]
enum Step {
    Enqueue { needs_gpu: bool, max_attempts: u32 },
    Poll { runner: usize, free_slots: u32, acknowledge: bool },
    Accept { runner: usize, pick: usize, stale: bool },
    Renew { runner: usize, pick: usize },
    AppendLog { runner: usize, pick: usize, seq: u64, altered: bool },
    Complete { runner: usize, pick: usize, result: AttemptResult, retry: bool },
    Cancel { job: usize },
    OpenSession { runner: usize },
    Goodbye { runner: usize },
    Retire { runner: usize },
    Advance { millis: u64 },
    ExpireOffers,
    ExpireLeases,
    ExpireSessions,
    MarkAlive,
}

/// Runners in every sequence: a persistent Linux runner with one slot, a persistent Linux+GPU
/// runner with two, and an ephemeral Linux runner.
const RUNNERS: usize = 3;

fn step_strategy() -> impl Strategy<Value = Step> {
    let runner = 0..RUNNERS;
    let result =
        prop_oneof![Just(AttemptResult::Success), Just(AttemptResult::Failure), Just(AttemptResult::Cancelled)];
    prop_oneof![
        5 => (any::<bool>(), 1u32..=3).prop_map(|(needs_gpu, max_attempts)| Step::Enqueue { needs_gpu, max_attempts }),
        8 => (runner.clone(), 0u32..=3, any::<bool>())
            .prop_map(|(runner, free_slots, acknowledge)| Step::Poll { runner, free_slots, acknowledge }),
        8 => (runner.clone(), 0usize..4, proptest::bool::weighted(0.2))
            .prop_map(|(runner, pick, stale)| Step::Accept { runner, pick, stale }),
        4 => (runner.clone(), 0usize..4).prop_map(|(runner, pick)| Step::Renew { runner, pick }),
        3 => (runner.clone(), 0usize..4, 1u64..=4, proptest::bool::weighted(0.2))
            .prop_map(|(runner, pick, seq, altered)| Step::AppendLog { runner, pick, seq, altered }),
        5 => (runner.clone(), 0usize..4, result, proptest::bool::weighted(0.2))
            .prop_map(|(runner, pick, result, retry)| Step::Complete { runner, pick, result, retry }),
        1 => (0usize..8).prop_map(|job| Step::Cancel { job }),
        1 => runner.clone().prop_map(|runner| Step::OpenSession { runner }),
        1 => runner.clone().prop_map(|runner| Step::Goodbye { runner }),
        1 => runner.prop_map(|runner| Step::Retire { runner }),
        5 => (0u64..1_500).prop_map(|millis| Step::Advance { millis }),
        1 => Just(Step::ExpireOffers),
        1 => Just(Step::ExpireLeases),
        1 => Just(Step::ExpireSessions),
        1 => Just(Step::MarkAlive),
    ]
}

/// What the driver remembers about one backend between steps.
#[derive(Debug)]
struct World {
    now: Timestamp,
    runners: Vec<RunnerId>,
    sessions: Vec<SessionId>,
    /// The newest message id delivered to each runner, acknowledged by its next acking poll.
    delivered: Vec<MessageId>,
    jobs: Vec<JobId>,
    /// Every attempt seen completed, with its result: it must never change again (F1).
    completed: BTreeMap<(JobId, AttemptNo), AttemptResult>,
}

fn set_up(harness: &Harness) -> World {
    let specs = [
        ("runner-a", &["linux"][..], 1, false),
        ("runner-b", &["linux", "gpu"][..], 2, false),
        ("runner-c", &["linux"][..], 1, true),
    ];
    let mut runners = Vec::new();
    let mut sessions = Vec::new();
    for (name, labels, capacity, ephemeral) in specs {
        let runner = harness
            .store
            .register_runner(
                crate::harness::OPEN_TOKEN,
                &new_runner(name, labels, capacity, ephemeral),
                &format!("credential-{name}"),
                T0,
            )
            .expect("the runner registers");
        sessions.push(harness.store.open_session(runner.id, T0).expect("the session opens").id);
        runners.push(runner.id);
    }
    World {
        now: T0,
        runners,
        sessions,
        delivered: vec![MessageId(0); RUNNERS],
        jobs: Vec::new(),
        completed: BTreeMap::new(),
    }
}

/// The attempts `runner` holds in `state`, in a stable order.
fn held_in_state(harness: &Harness, runner_id: RunnerId, state: AttemptState) -> Vec<(JobId, AttemptNo, LeaseEpoch)> {
    harness
        .runner_view(runner_id)
        .held
        .into_iter()
        .filter(|attempt| attempt.state == state)
        .map(|attempt| (attempt.job_id, attempt.number, attempt.epoch.expect("a held attempt has an epoch")))
        .collect()
}

fn completed_by(harness: &Harness, runner_id: RunnerId) -> Vec<(JobId, AttemptNo, LeaseEpoch)> {
    harness
        .store
        .jobs(JobId(0), 1000)
        .expect("jobs can be listed")
        .into_iter()
        .flat_map(|view| view.attempts)
        .filter(|attempt| attempt.state == AttemptState::Completed && attempt.runner_id == Some(runner_id))
        .filter_map(|attempt| attempt.epoch.map(|epoch| (attempt.job_id, attempt.number, epoch)))
        .collect()
}

fn pick<T: Copy>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()])
}

/// Runs one step and renders its answer, so the two backends' answers can be compared.
fn apply(harness: &Harness, world: &mut World, step: &Step) -> String {
    let store = &harness.store;
    let now = world.now;
    match *step {
        Step::Enqueue { needs_gpu, max_attempts } => {
            let labels = if needs_gpu { strings(&["linux", "gpu"]) } else { strings(&["linux"]) };
            let name = format!("job-{}", world.jobs.len() + 1);
            let outcome = store.enqueue(&NewJob { name, labels, spec: "{}".into(), max_attempts }, now);
            if let Ok(job) = &outcome {
                world.jobs.push(job.job.id);
            }
            format!("{outcome:?}")
        }
        Step::Poll { runner, free_slots, acknowledge } => {
            let ack = if acknowledge { world.delivered[runner] } else { MessageId(0) };
            let outcome = store.poll(world.runners[runner], world.sessions[runner], free_slots, ack, now);
            if let Ok(polled) = &outcome
                && let Some((newest, _)) = polled.messages.last()
            {
                world.delivered[runner] = world.delivered[runner].max(*newest);
            }
            format!("{outcome:?}")
        }
        Step::Accept { runner, pick: index, stale } => {
            let runner_id = world.runners[runner];
            match pick(&held_in_state(harness, runner_id, AttemptState::Offered), index) {
                None => "skip".into(),
                Some((job_id, number, epoch)) => {
                    let epoch = if stale { LeaseEpoch(epoch.0.saturating_sub(1)) } else { epoch };
                    format!("{:?}", store.accept(runner_id, job_id, number, epoch, now))
                }
            }
        }
        Step::Renew { runner, pick: index } => {
            let runner_id = world.runners[runner];
            match pick(&held_in_state(harness, runner_id, AttemptState::Running), index) {
                None => "skip".into(),
                Some((job_id, number, epoch)) => format!("{:?}", store.renew(runner_id, job_id, number, epoch, now)),
            }
        }
        Step::AppendLog { runner, pick: index, seq, altered } => {
            let runner_id = world.runners[runner];
            match pick(&held_in_state(harness, runner_id, AttemptState::Running), index) {
                None => "skip".into(),
                Some((job_id, number, epoch)) => {
                    let data = if altered { format!("altered line {seq}\n") } else { format!("line {seq}\n") };
                    format!("{:?}", store.append_log(runner_id, job_id, number, epoch, seq, &data, now))
                }
            }
        }
        Step::Complete { runner, pick: index, result, retry } => {
            let runner_id = world.runners[runner];
            let candidates = if retry {
                completed_by(harness, runner_id)
            } else {
                held_in_state(harness, runner_id, AttemptState::Running)
            };
            match pick(&candidates, index) {
                None => "skip".into(),
                Some((job_id, number, epoch)) => {
                    let outputs = BTreeMap::from([("result".to_string(), result.to_string())]);
                    format!("{:?}", store.complete(runner_id, job_id, number, epoch, result, &outputs, "", now))
                }
            }
        }
        Step::Cancel { job } => match pick(&world.jobs, job) {
            None => "skip".into(),
            Some(job_id) => format!("{:?}", store.cancel_job(job_id, now)),
        },
        Step::OpenSession { runner } => {
            let outcome = store.open_session(world.runners[runner], now);
            if let Ok(session) = &outcome {
                world.sessions[runner] = session.id;
            }
            format!("{outcome:?}")
        }
        Step::Goodbye { runner } => format!("{:?}", store.goodbye(world.runners[runner], world.sessions[runner], now)),
        Step::Retire { runner } => format!("{:?}", store.retire_if_idle(world.runners[runner], now)),
        Step::Advance { millis } => {
            world.now = now.plus(Duration::from_millis(millis));
            "advanced".into()
        }
        Step::ExpireOffers => format!("{:?}", store.expire_offers(now)),
        Step::ExpireLeases => format!("{:?}", store.expire_leases(now)),
        Step::ExpireSessions => format!("{:?}", store.expire_sessions(now)),
        Step::MarkAlive => format!("{:?}", store.mark_alive(now, Duration::from_millis(200))),
    }
}

/// F1 across steps: an attempt once completed keeps its result for ever.
fn check_completed_never_change(harness: &Harness, world: &mut World) -> Result<(), TestCaseError> {
    for view in harness.store.jobs(JobId(0), 1000).expect("jobs can be listed") {
        for attempt in view.attempts {
            let key = (attempt.job_id, attempt.number);
            if let Some(result) = world.completed.get(&key) {
                prop_assert_eq!(
                    attempt.state,
                    AttemptState::Completed,
                    "[{}] completed attempt {:?} changed",
                    harness.backend_name,
                    key
                );
                prop_assert_eq!(attempt.result, Some(*result));
            } else if attempt.state == AttemptState::Completed {
                world.completed.insert(key, attempt.result.expect("a completed attempt has a result"));
            }
        }
    }
    Ok(())
}

fn run_sequence(steps: &[Step]) -> Result<(), TestCaseError> {
    let memory = Harness::memory();
    let sqlite = Harness::sqlite();
    let mut memory_world = set_up(&memory);
    let mut sqlite_world = set_up(&sqlite);
    for (index, step) in steps.iter().enumerate() {
        let memory_answer = apply(&memory, &mut memory_world, step);
        let sqlite_answer = apply(&sqlite, &mut sqlite_world, step);
        prop_assert_eq!(&memory_answer, &sqlite_answer, "step {} {:?}: the backends answered differently", index, step);
        prop_assert!(
            !memory_answer.contains("Store("),
            "step {} {:?}: a backend failed: {}",
            index,
            step,
            memory_answer
        );
        prop_assert_eq!(
            memory.snapshot(),
            sqlite.snapshot(),
            "step {} {:?}: the backends hold different truth",
            index,
            step
        );
        memory.check_invariants();
        check_completed_never_change(&memory, &mut memory_world)?;
        check_completed_never_change(&sqlite, &mut sqlite_world)?;
    }
    sqlite.check_invariants();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_agree_across_backends_and_keep_the_invariants(
        steps in proptest::collection::vec(step_strategy(), 1..80)
    ) {
        run_sequence(&steps)?;
    }
}
