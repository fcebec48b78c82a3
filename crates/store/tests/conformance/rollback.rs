//! Atomicity: a script that returns an error has written nothing, whether the error is a domain
//! answer raised after some rows were already written or a failure of the backend itself; and
//! the commit observer hears about commits with effects, never about rollbacks.

use std::sync::{Arc, Mutex};

use baton_core::{AttemptNo, EventKind, LeaseEpoch, MessageId, RunnerId};
use baton_store::{CommitObserver, Effects, Error, NewJitRunner};

use crate::harness::{FAR_FUTURE, Harness, T0, assert_conflict, at, new_runner, strings};

pub fn a_script_that_fails_after_writing_leaves_no_trace(harness: &mut Harness) {
    harness.register("runner-1", &["linux"], 1, T0);
    harness.create_token("token-once", &["extra"], "default", FAR_FUTURE, Some(1), T0);
    let seq_before = harness.last_seq();
    let snapshot_before = harness.snapshot();

    // register_runner counts the token's use, then finds the name taken.
    let error = harness
        .store
        .register_runner("token-once", &new_runner("runner-1", &["linux"], 1, false), "credential-again", at(10))
        .expect_err("the name is taken");
    assert_conflict(&error, "name_taken");

    assert_eq!(harness.last_seq(), seq_before, "no event survived the rollback");
    assert_eq!(harness.snapshot(), snapshot_before, "no row survived the rollback");
    assert_eq!(harness.token("token-once").uses, 0);

    // The store is fully usable afterwards, and the next event follows the earlier ones.
    let runner = harness
        .store
        .register_runner("token-once", &new_runner("runner-2", &["linux"], 1, false), "credential-2", at(20))
        .expect("a free name registers");
    let events = harness.events_after(seq_before);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].runner_id, Some(runner.id));
    assert!(events[0].seq > seq_before);
    harness.check_invariants();
}

fn jit_runner(name: &str, jit_hash: &str) -> NewJitRunner {
    NewJitRunner {
        name: name.to_string(),
        labels: strings(&["linux"]),
        pool: "default".to_string(),
        capacity: 1,
        ephemeral: true,
        jit_hash: jit_hash.to_string(),
        expires_at: FAR_FUTURE,
    }
}

pub fn a_backend_error_rolls_back_the_whole_script(harness: &mut Harness) {
    harness.store.create_jit_runner(&jit_runner("jit-1", "jit-secret-shared"), T0).expect("first config");

    // The runner row and its event are written before the config row, whose key is taken: the
    // backend refuses that insert, and the whole script must go with it.
    let error = harness.fails_without_writing("a second config with the same secret", || {
        harness.store.create_jit_runner(&jit_runner("jit-2", "jit-secret-shared"), at(10))
    });
    assert!(matches!(error, Error::Store(_)), "a backend failure, got {error:?}");
    let names: Vec<_> =
        harness.store.runners(RunnerId(0), 100).expect("list").into_iter().map(|view| view.runner.name).collect();
    assert_eq!(names, vec!["jit-1".to_string()]);

    // The rolled-back runner's name is free.
    let created = harness.store.create_jit_runner(&jit_runner("jit-2", "jit-secret-2"), at(20)).expect("fresh config");
    assert_eq!(created.name, "jit-2");
    assert_eq!(harness.events().iter().filter(|event| event.kind == EventKind::RunnerRegistered).count(), 2);
}

/// Records every commit the store reports.
#[derive(Debug, Default)]
struct RecordingObserver {
    commits: Mutex<Vec<Effects>>,
}

impl RecordingObserver {
    fn take(&self) -> Vec<Effects> {
        std::mem::take(&mut *self.commits.lock().expect("the observer's lock is not poisoned"))
    }
}

impl CommitObserver for RecordingObserver {
    fn committed(&self, effects: &Effects) {
        self.commits.lock().expect("the observer's lock is not poisoned").push(effects.clone());
    }
}

pub fn the_commit_observer_hears_only_commits_with_effects(harness: &mut Harness) {
    let observer = Arc::new(RecordingObserver::default());
    harness.store.set_observer(observer.clone());
    let events_only = |kind: EventKind| Effects { events: vec![kind], ..Effects::default() };

    let (runner, session) = harness.connect("runner-1", &["linux"], 1, T0);
    assert_eq!(
        observer.take(),
        vec![events_only(EventKind::RunnerRegistered), events_only(EventKind::RunnerOnline)],
        "register and open_session"
    );

    let error = harness
        .store
        .register_runner("token-unknown", &new_runner("runner-2", &["linux"], 1, false), "credential-2", at(10))
        .expect_err("unknown token");
    assert!(matches!(error, Error::Unauthorized(_)));
    assert_eq!(observer.take(), Vec::new(), "a rollback is not reported");

    harness.poll(&runner, &session, 1, MessageId(0), at(20));
    assert_eq!(observer.take(), Vec::new(), "a poll that changes nothing anyone waits for is not reported");

    let job = harness.enqueue("job-1", &["linux"], at(30));
    assert_eq!(
        observer.take(),
        vec![Effects {
            messaged: vec![runner.id],
            events: vec![EventKind::JobQueued, EventKind::JobOffered],
            // Queued at 30 ms and offered in the same commit: it waited no time.
            dispatch_waits: vec![std::time::Duration::ZERO],
            ..Effects::default()
        }],
        "the offer wakes the runner"
    );

    let error = harness.store.accept(runner.id, job.id, AttemptNo(1), LeaseEpoch(7), at(40)).expect_err("stale epoch");
    assert!(matches!(error, Error::StaleLease { .. }));
    harness.store.meta_set("test.key", "value").expect("meta");
    assert_eq!(observer.take(), Vec::new(), "neither a rollback nor a meta write is reported");
}
