//! Registration: with a multi-use registration token and with a single-use JIT config.
//!
//! A valid credential registers exactly one runner and appends `runner.registered`; any bad
//! credential is answered 401 and writes nothing at all, not even a use of the token (DESIGN.md
//! section 4 and invariant 7).

use baton_core::{EventKind, RunnerId, RunnerState, Timestamp};
use baton_store::{NewJitRunner, NewRunner};

use crate::harness::{
    FAR_FUTURE, Harness, OPEN_TOKEN, T0, assert_conflict, assert_invalid, assert_unauthorized, at, data, new_runner,
    strings,
};

pub fn a_valid_token_registers_a_runner_with_normalised_merged_labels(harness: &mut Harness) {
    harness.create_token("token-linux", &["Self-Hosted", "linux"], "pool-a", Timestamp(10_000), Some(5), T0);
    let new = NewRunner {
        name: "runner-1".into(),
        labels: strings(&[" X64 ", "Linux", "linux"]),
        capacity: 2,
        ephemeral: false,
    };

    let runner =
        harness.store.register_runner("token-linux", &new, "credential-1", at(10)).expect("the token is valid");

    assert_eq!(runner.name, "runner-1");
    assert_eq!(runner.state, RunnerState::Registered);
    // The runner's own labels and the token's, trimmed, lower-cased, sorted and deduplicated.
    assert_eq!(runner.labels, strings(&["linux", "self-hosted", "x64"]));
    assert_eq!(runner.pool, "pool-a", "the runner joins the token's pool");
    assert_eq!(runner.capacity, 2);
    assert!(!runner.ephemeral);
    assert_eq!(runner.reported_free_slots, 0, "nothing is offered before the runner's first poll");
    assert_eq!(runner.session_id, None);
    assert_eq!(runner.credential_hash.as_deref(), Some("credential-1"));
    assert_eq!(runner.created_at, at(10));

    let view = harness.runner_view(runner.id);
    assert_eq!(view.runner, runner, "the stored runner is the one returned");
    assert_eq!(view.session, None);
    assert!(!view.busy());
    assert_eq!(harness.store.runner_by_credential("credential-1").expect("read"), Some(runner.clone()));
    assert_eq!(harness.store.runner_by_credential("credential-unknown").expect("read"), None);
    assert_eq!(harness.token("token-linux").uses, 1);

    let events = harness.events();
    assert_eq!(events.len(), 1, "exactly one event: {events:?}");
    assert_eq!(events[0].kind, EventKind::RunnerRegistered);
    assert_eq!(events[0].runner_id, Some(runner.id));
    assert_eq!(events[0].job_id, None);
    assert_eq!(events[0].at, at(10));
    let details = data(&events[0]);
    assert_eq!(details["name"], "runner-1");
    assert_eq!(details["pool"], "pool-a");
    assert_eq!(details["labels"], serde_json::json!(["linux", "self-hosted", "x64"]));
    assert_eq!(harness.last_seq(), events[0].seq);
}

pub fn an_unknown_token_is_unauthorized_and_writes_nothing(harness: &mut Harness) {
    let new = new_runner("runner-1", &["linux"], 1, false);
    let error = harness.fails_without_writing("register with an unknown token", || {
        harness.store.register_runner("token-nobody-issued", &new, "credential-1", T0)
    });
    assert_unauthorized(&error);
    assert!(harness.store.runners(RunnerId(0), 100).expect("list").is_empty());
    assert!(harness.events().is_empty());
    assert_eq!(harness.store.runner_by_credential("credential-1").expect("read"), None);
}

pub fn an_expired_token_is_unauthorized_and_writes_nothing(harness: &mut Harness) {
    harness.create_token("token-short", &[], "default", Timestamp(2_000), None, T0);

    let late = new_runner("runner-late", &["linux"], 1, false);
    let error = harness.fails_without_writing("register one millisecond after expiry", || {
        harness.store.register_runner("token-short", &late, "credential-late", Timestamp(2_001))
    });
    assert_unauthorized(&error);
    assert_eq!(harness.token("token-short").uses, 0);
    assert!(harness.events().is_empty());

    // The expiry instant itself is still inside the token's lifetime.
    let on_time = new_runner("runner-on-time", &["linux"], 1, false);
    harness
        .store
        .register_runner("token-short", &on_time, "credential-on-time", Timestamp(2_000))
        .expect("still valid");
    assert_eq!(harness.token("token-short").uses, 1);
}

pub fn a_revoked_token_is_unauthorized_and_writes_nothing(harness: &mut Harness) {
    harness.create_token("token-revoked", &[], "default", FAR_FUTURE, None, T0);
    harness.revoke_token("token-revoked");

    let new = new_runner("runner-1", &["linux"], 1, false);
    let error = harness.fails_without_writing("register with a revoked token", || {
        harness.store.register_runner("token-revoked", &new, "credential-1", at(10))
    });
    assert_unauthorized(&error);
    assert_eq!(harness.token("token-revoked").uses, 0);
    assert!(harness.events().is_empty());
}

pub fn a_used_up_token_is_unauthorized_and_writes_nothing(harness: &mut Harness) {
    harness.create_token("token-twice", &[], "default", FAR_FUTURE, Some(2), T0);
    for name in ["runner-1", "runner-2"] {
        let new = new_runner(name, &["linux"], 1, false);
        harness.store.register_runner("token-twice", &new, &format!("credential-{name}"), at(10)).expect("uses left");
    }
    assert_eq!(harness.token("token-twice").uses, 2);

    let third = new_runner("runner-3", &["linux"], 1, false);
    let error = harness.fails_without_writing("a third registration with a two-use token", || {
        harness.store.register_runner("token-twice", &third, "credential-runner-3", at(20))
    });
    assert_unauthorized(&error);
    assert_eq!(harness.token("token-twice").uses, 2, "a refused registration does not count as a use");
    assert_eq!(harness.store.runners(RunnerId(0), 100).expect("list").len(), 2);
    assert_eq!(harness.events().len(), 2);
}

pub fn a_taken_name_is_a_name_taken_conflict_and_writes_nothing(harness: &mut Harness) {
    let first = harness.register("runner-1", &["linux"], 1, T0);
    harness.create_token("token-once", &[], "default", FAR_FUTURE, Some(1), T0);

    // The script counts the token's use before it finds the name taken; the rollback must undo
    // that use too, or a refused registration would burn a single-use token.
    let again = new_runner("runner-1", &["linux"], 1, false);
    let error = harness.fails_without_writing("register a second runner-1", || {
        harness.store.register_runner("token-once", &again, "credential-other", at(10))
    });
    assert_conflict(&error, "name_taken");
    assert_eq!(harness.token("token-once").uses, 0);
    assert_eq!(harness.store.runner_by_credential("credential-other").expect("read"), None);
    assert_eq!(harness.store.runners(RunnerId(0), 100).expect("list").len(), 1);
    assert_eq!(harness.runner(first.id), first);

    // The token still works for a free name.
    let other = new_runner("runner-2", &["linux"], 1, false);
    harness.store.register_runner("token-once", &other, "credential-other", at(20)).expect("the name is free");
}

pub fn the_name_of_a_gone_runner_can_be_registered_again(harness: &mut Harness) {
    let ephemeral = harness.register_ephemeral("runner-eph", &["linux"], T0);
    let session = harness.store.open_session(ephemeral.id, T0).expect("session");
    harness.store.goodbye(ephemeral.id, session.id, at(10)).expect("goodbye");
    assert_eq!(harness.runner(ephemeral.id).state, RunnerState::Gone);

    let again = harness
        .store
        .register_runner(OPEN_TOKEN, &new_runner("runner-eph", &["linux"], 1, true), "credential-eph-2", at(20))
        .expect("a gone runner's name is free");
    assert_ne!(again.id, ephemeral.id, "a new runner, not the gone one revived");
    assert_eq!(again.state, RunnerState::Registered);
    assert_eq!(harness.runner(ephemeral.id).state, RunnerState::Gone);
}

pub fn bad_names_labels_and_capacities_are_invalid_and_write_nothing(harness: &mut Harness) {
    let too_many_labels: Vec<String> = (0..33).map(|index| format!("label-{index}")).collect();
    let cases: Vec<(&str, NewRunner)> = vec![
        ("name", NewRunner { name: String::new(), labels: strings(&["linux"]), capacity: 1, ephemeral: false }),
        ("name", NewRunner { name: "has space".into(), labels: strings(&["linux"]), capacity: 1, ephemeral: false }),
        ("name", NewRunner { name: "a".repeat(65), labels: strings(&["linux"]), capacity: 1, ephemeral: false }),
        ("labels", NewRunner { name: "runner-1".into(), labels: strings(&["a,b"]), capacity: 1, ephemeral: false }),
        ("labels", NewRunner { name: "runner-1".into(), labels: strings(&["   "]), capacity: 1, ephemeral: false }),
        ("labels", NewRunner { name: "runner-1".into(), labels: too_many_labels, capacity: 1, ephemeral: false }),
        ("capacity", NewRunner { name: "runner-1".into(), labels: strings(&["linux"]), capacity: 0, ephemeral: false }),
        (
            "capacity",
            NewRunner { name: "runner-1".into(), labels: strings(&["linux"]), capacity: 257, ephemeral: false },
        ),
    ];
    for (field, new) in &cases {
        let error = harness.fails_without_writing(&format!("register {new:?}"), || {
            harness.store.register_runner(OPEN_TOKEN, new, "credential-1", T0)
        });
        assert_invalid(&error, field);
    }
    assert_eq!(harness.token(OPEN_TOKEN).uses, 0);

    // The limits themselves are accepted.
    let widest = NewRunner { name: "a".repeat(64), labels: strings(&["linux"]), capacity: 256, ephemeral: false };
    let runner = harness.store.register_runner(OPEN_TOKEN, &widest, "credential-1", T0).expect("at the limits");
    assert_eq!(runner.capacity, 256);
}

pub fn an_ephemeral_runner_has_capacity_one(harness: &mut Harness) {
    let new = new_runner("runner-eph", &["linux"], 4, true);
    let runner = harness.store.register_runner(OPEN_TOKEN, &new, "credential-eph", T0).expect("registers");
    assert!(runner.ephemeral);
    assert_eq!(runner.capacity, 1, "an ephemeral runner runs one job in its life");
    assert_eq!(harness.runner(runner.id).capacity, 1);
}

fn jit_runner(name: &str, jit_hash: &str, expires_at: Timestamp) -> NewJitRunner {
    NewJitRunner {
        name: name.to_string(),
        labels: strings(&["Linux", "GPU"]),
        pool: "pool-jit".to_string(),
        capacity: 1,
        ephemeral: true,
        jit_hash: jit_hash.to_string(),
        expires_at,
    }
}

pub fn a_jit_config_registers_its_runner_exactly_once(harness: &mut Harness) {
    let created =
        harness.store.create_jit_runner(&jit_runner("jit-1", "jit-secret-1", Timestamp(5_000)), T0).expect("created");
    assert_eq!(created.state, RunnerState::Registered);
    assert_eq!(created.credential_hash, None, "no credential until the machine redeems the config");
    assert_eq!(created.labels, strings(&["gpu", "linux"]));
    assert_eq!(created.pool, "pool-jit");
    let events = harness.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::RunnerRegistered);
    assert_eq!(events[0].runner_id, Some(created.id));

    let registered = harness.store.register_jit("jit-secret-1", "credential-jit-1", at(1_000)).expect("first use");
    assert_eq!(registered.id, created.id, "the JIT config binds the pre-created runner");
    assert_eq!(registered.state, RunnerState::Registered);
    assert_eq!(registered.credential_hash.as_deref(), Some("credential-jit-1"));
    assert_eq!(harness.runner(created.id), registered);
    let found = harness.store.runner_by_credential("credential-jit-1").expect("read").expect("the credential is bound");
    assert_eq!(found.id, created.id);

    let error = harness.fails_without_writing("redeem the JIT config a second time", || {
        harness.store.register_jit("jit-secret-1", "credential-jit-2", at(1_500))
    });
    assert_unauthorized(&error);
    assert_eq!(harness.store.runner_by_credential("credential-jit-2").expect("read"), None);
    assert_eq!(
        harness.runner(created.id).credential_hash.as_deref(),
        Some("credential-jit-1"),
        "a replayed JIT config cannot take over the runner"
    );
}

pub fn an_expired_or_unknown_jit_config_is_unauthorized(harness: &mut Harness) {
    let created =
        harness.store.create_jit_runner(&jit_runner("jit-1", "jit-secret-1", Timestamp(2_000)), T0).expect("created");

    let error = harness.fails_without_writing("redeem an expired JIT config", || {
        harness.store.register_jit("jit-secret-1", "credential-jit-1", Timestamp(2_001))
    });
    assert_unauthorized(&error);
    assert_eq!(harness.runner(created.id).credential_hash, None);

    let error = harness.fails_without_writing("redeem an unknown JIT config", || {
        harness.store.register_jit("jit-secret-unknown", "credential-jit-1", at(10))
    });
    assert_unauthorized(&error);

    // The expiry instant itself is still inside the config's lifetime.
    harness.store.create_jit_runner(&jit_runner("jit-2", "jit-secret-2", Timestamp(2_000)), T0).expect("created");
    harness.store.register_jit("jit-secret-2", "credential-jit-2", Timestamp(2_000)).expect("on time");
}

pub fn a_jit_runner_with_a_taken_name_writes_nothing(harness: &mut Harness) {
    harness.register("runner-1", &["linux"], 1, T0);
    let error = harness.fails_without_writing("pre-create a JIT runner with a taken name", || {
        harness.store.create_jit_runner(&jit_runner("runner-1", "jit-secret-1", FAR_FUTURE), at(10))
    });
    assert_conflict(&error, "name_taken");
    // The config was not stored either: redeeming it finds nothing.
    let error = harness.fails_without_writing("redeem the refused config", || {
        harness.store.register_jit("jit-secret-1", "credential-jit-1", at(20))
    });
    assert_unauthorized(&error);
}

pub fn a_credential_belongs_to_exactly_one_runner(harness: &mut Harness) {
    let first = harness.register("runner-1", &["linux"], 1, T0);
    let credential = first.credential_hash.clone().expect("a registered runner has a credential");

    // A second runner with the same credential would make every authenticated call ambiguous;
    // the backend refuses it (SQLite by its unique index) and the script writes nothing.
    let error = harness.fails_without_writing("register a second runner with the same credential", || {
        harness.store.register_runner(OPEN_TOKEN, &new_runner("runner-2", &["linux"], 1, false), &credential, at(10))
    });
    assert!(matches!(error, baton_store::Error::Store(_)), "{error:?}");

    // The same holds when a JIT config would bind a credential that is already in use.
    harness.store.create_jit_runner(&jit_runner("jit-1", "jit-secret-1", FAR_FUTURE), at(20)).expect("created");
    let error = harness.fails_without_writing("redeem a JIT config with a credential in use", || {
        harness.store.register_jit("jit-secret-1", &credential, at(30))
    });
    assert!(matches!(error, baton_store::Error::Store(_)), "{error:?}");
    assert_eq!(harness.store.runner_by_credential(&credential).expect("read").map(|runner| runner.id), Some(first.id));
}
