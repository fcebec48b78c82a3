//! The store conformance suite: one set of tests, run identically against every backend.
//!
//! Each test body is written once, as a function of a [`harness::Harness`], in one of the
//! modules under `tests/conformance/`. The [`conformance_suite!`] macro instantiates every body
//! once per backend, as `mem::<module>::<test>` and `sqlite::<module>::<test>`, so a backend
//! that differs from the others in any observable way fails a named test, and
//! `cargo test -p baton-store --test conformance sqlite::` runs one backend alone.
//!
//! The tests assert observable outcomes (the answers of the scripts, the views, the events
//! appended) and the invariants of DESIGN.md section 9; time is always an explicit parameter.
//! The `differential` module adds a property test that runs random operation sequences on both
//! backends side by side and requires identical answers and identical stored truth.

#[path = "conformance/harness.rs"]
mod harness;

#[path = "conformance/registration.rs"]
mod registration;

#[path = "conformance/dispatch.rs"]
mod dispatch;

#[path = "conformance/lifecycle.rs"]
mod lifecycle;

#[path = "conformance/sweeps.rs"]
mod sweeps;

#[path = "conformance/sessions.rs"]
mod sessions;

#[path = "conformance/runners.rs"]
mod runners;

#[path = "conformance/cancel.rs"]
mod cancel;

#[path = "conformance/logs.rs"]
mod logs;

#[path = "conformance/outage.rs"]
mod outage;

#[path = "conformance/rollback.rs"]
mod rollback;

#[path = "conformance/runs.rs"]
mod runs;

#[path = "conformance/differential.rs"]
mod differential;

#[path = "conformance/webhooks.rs"]
mod webhooks;

#[path = "conformance/postgres_tls.rs"]
mod postgres_tls;

/// Instantiates every listed test body once per backend. Each body is
/// `fn(&mut harness::Harness)` (or `&Harness`) in the named module.
macro_rules! conformance_suite {
    ($($module:ident { $($test:ident),* $(,)? })*) => {
        mod mem {
            $(
                mod $module {
                    $(
                        #[test]
                        fn $test() {
                            let mut harness = crate::harness::Harness::memory();
                            crate::$module::$test(&mut harness);
                        }
                    )*
                }
            )*
        }

        mod sqlite {
            $(
                mod $module {
                    $(
                        #[test]
                        fn $test() {
                            let mut harness = crate::harness::Harness::sqlite();
                            crate::$module::$test(&mut harness);
                        }
                    )*
                }
            )*
        }

        mod postgres {
            $(
                mod $module {
                    $(
                        #[test]
                        fn $test() {
                            let Some(mut harness) = crate::harness::Harness::postgres() else { return };
                            crate::$module::$test(&mut harness);
                        }
                    )*
                }
            )*
        }
    };
}

conformance_suite! {
    webhooks {
        a_claimed_delivery_is_not_due_elsewhere_until_its_hold_ends,
        an_ordered_endpoints_claimed_head_holds_back_the_rest,
    }
    runs {
        a_finished_leg_starts_its_dependents_in_the_same_commit,
        a_cancelled_leg_skips_dependents_and_cancels_the_run,
        fail_fast_cancels_queued_legs_in_the_failing_commit,
        cancelling_a_run_tells_running_legs_and_concludes_when_they_stop,
        bad_secrets_are_invalid_and_write_nothing,
        the_server_masks_secrets_again_in_logs_outputs_and_summaries,
    }
    registration {
        a_valid_token_registers_a_runner_with_normalised_merged_labels,
        an_unknown_token_is_unauthorized_and_writes_nothing,
        an_expired_token_is_unauthorized_and_writes_nothing,
        a_revoked_token_is_unauthorized_and_writes_nothing,
        a_used_up_token_is_unauthorized_and_writes_nothing,
        a_taken_name_is_a_name_taken_conflict_and_writes_nothing,
        the_name_of_a_gone_runner_can_be_registered_again,
        bad_names_labels_and_capacities_are_invalid_and_write_nothing,
        an_ephemeral_runner_has_capacity_one,
        a_jit_config_registers_its_runner_exactly_once,
        an_expired_or_unknown_jit_config_is_unauthorized,
        a_jit_runner_with_a_taken_name_writes_nothing,
        a_credential_belongs_to_exactly_one_runner,
    }
    dispatch {
        opening_a_session_activates_the_runner,
        a_poll_offers_a_queued_job_with_epoch_one,
        an_offer_is_redelivered_until_acknowledged,
        enqueue_offers_at_once_to_a_runner_that_reported_free_slots,
        a_job_whose_labels_the_runner_lacks_is_not_offered,
        a_runner_reporting_no_free_slots_is_not_offered,
        a_runner_is_never_offered_more_than_its_capacity,
        the_oldest_queued_job_is_offered_first,
        a_draining_runner_is_not_offered_until_resumed,
        an_ephemeral_runner_that_ran_its_job_cannot_be_resumed,
        a_matching_job_behind_many_unmatched_ones_is_found,
        bad_jobs_are_invalid_and_write_nothing,
    }
    lifecycle {
        accept_renew_complete_emits_each_event_once,
        accept_is_idempotent,
        complete_is_idempotent_and_a_different_result_conflicts,
        an_ephemeral_runner_runs_one_job_and_then_leaves,
        calls_with_a_stale_epoch_are_stale_lease_and_change_nothing,
        calls_from_another_runner_are_forbidden_and_change_nothing,
    }
    sweeps {
        an_unaccepted_offer_is_reoffered_with_a_new_epoch,
        an_expired_offer_with_no_live_runner_waits_queued,
        an_expired_lease_loses_the_attempt_and_requeues_the_job,
        a_job_that_loses_every_attempt_fails_as_infrastructure_failure,
        completed_attempts_are_never_touched_by_the_sweeps,
    }
    sessions {
        an_expired_session_takes_the_runner_offline_and_leaves_attempts_alone,
        goodbye_of_an_ephemeral_runner_makes_it_gone,
        goodbye_of_a_persistent_runner_makes_it_offline,
        a_poll_on_a_closed_expired_or_replaced_session_is_session_closed,
    }
    runners {
        retire_if_idle_retires_an_idle_runner_for_good,
        retire_if_idle_on_a_busy_runner_answers_busy_and_changes_nothing,
        busy_follows_offered_and_running_attempts_through_the_lifecycle,
        remove_runner_makes_a_retired_runner_gone,
        retire_by_name_waits_for_a_gone_runners_running_attempt,
    }
    cancel {
        cancelling_a_queued_job_completes_it_as_cancelled,
        cancelling_an_offered_job_revokes_the_offer,
        cancelling_a_running_job_asks_its_runner_to_stop,
        a_cancelled_job_whose_runner_vanishes_concludes_cancelled,
        cancelling_a_completed_job_conflicts,
    }
    logs {
        log_chunks_are_sequenced_idempotent_and_gapless,
        logs_are_refused_outside_a_running_attempt,
    }
    outage {
        the_first_mark_alive_and_normal_ticks_report_no_outage,
        an_outage_extends_every_live_deadline_by_its_length,
        replicas_whose_clocks_differ_report_no_outage,
    }
    rollback {
        a_script_that_fails_after_writing_leaves_no_trace,
        a_backend_error_rolls_back_the_whole_script,
        the_commit_observer_hears_only_commits_with_effects,
    }
}
