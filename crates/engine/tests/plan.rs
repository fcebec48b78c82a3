//! The planner, table by table: needs and outputs, status functions in job `if`, fail-fast,
//! max-parallel, run cancellation, computed matrices and job selection.

use std::collections::BTreeMap;

use baton_engine::{Action, Outcome, Phase, Planner, RunContext, RunState};
use baton_expr::Object;
use baton_workflow::Workflow;

/// A run driven by hand: enqueued legs get job ids 1, 2, ...; tests finish them.
struct Run {
    workflow: Workflow,
    inputs: Object,
    any_runner: bool,
    state: RunState,
    next_id: i64,
    /// Enqueued and not yet finished: job id -> (key, spec).
    live: BTreeMap<i64, (String, baton_api::JobSpec)>,
    cancels: Vec<i64>,
}

impl Run {
    fn start(yaml: &str) -> Run {
        Run::start_with(yaml, None, Object::new())
    }

    fn start_with(yaml: &str, only: Option<&str>, inputs: Object) -> Run {
        let workflow = baton_workflow::parse_workflow("test.yml", yaml).unwrap_or_else(|errors| {
            panic!("invalid test workflow: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
        });
        let mut run = Run {
            workflow,
            inputs,
            any_runner: false,
            state: RunState::default(),
            next_id: 1,
            live: BTreeMap::new(),
            cancels: Vec::new(),
        };
        run.state = run.planner().start(only).expect("start");
        let actions = run.plan(|planner, state| planner.advance(state));
        run.apply(actions);
        run
    }

    fn planner(&self) -> Planner<'_> {
        Planner::new(RunContext {
            run_id: 7,
            workflow: &self.workflow,
            inputs: &self.inputs,
            any_runner: self.any_runner,
        })
    }

    /// Calls the planner on the run's state and returns its actions.
    fn plan(&mut self, call: impl FnOnce(&Planner<'_>, &mut RunState) -> Vec<Action>) -> Vec<Action> {
        let mut state = std::mem::take(&mut self.state);
        let actions = call(&self.planner(), &mut state);
        self.state = state;
        actions
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Enqueue { key, leg, spec } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.state.bind(&key, leg, id);
                    self.live.insert(id, (key, *spec));
                }
                Action::Cancel { job_id } => self.cancels.push(job_id),
            }
        }
    }

    /// The live Baton jobs of workflow job `key`.
    fn live_of(&self, key: &str) -> Vec<i64> {
        self.live.iter().filter(|(_, (k, _))| k == key).map(|(id, _)| *id).collect()
    }

    fn spec_of(&self, key: &str) -> &baton_api::JobSpec {
        let id = *self.live_of(key).first().unwrap_or_else(|| panic!("{key} is not live"));
        &self.live[&id].1
    }

    fn finish(&mut self, job_id: i64, outcome: Outcome, outputs: &[(&str, &str)]) {
        self.live.remove(&job_id).unwrap_or_else(|| panic!("job {job_id} is not live"));
        let outputs: BTreeMap<String, String> = outputs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let actions = self.plan(|planner, state| planner.leg_finished(state, job_id, outcome, &outputs));
        self.apply(actions);
    }

    fn finish_key(&mut self, key: &str, outcome: Outcome, outputs: &[(&str, &str)]) {
        let ids = self.live_of(key);
        assert_eq!(ids.len(), 1, "{key} should have exactly one live leg, has {ids:?}");
        self.finish(ids[0], outcome, outputs);
    }

    fn result(&self, key: &str) -> Option<Outcome> {
        self.state.jobs.iter().find(|job| job.key == key).and_then(|job| job.result)
    }

    fn results(&self) -> Vec<(String, Option<Outcome>)> {
        self.state.jobs.iter().map(|job| (job.key.clone(), job.result)).collect()
    }
}

fn contexts(spec: &baton_api::JobSpec) -> &serde_json::Value {
    spec.contexts.as_ref().expect("run jobs carry contexts")
}

#[test]
fn needs_wait_and_outputs_flow_to_the_next_job() {
    let mut run = Run::start(
        "on: push\njobs:\n  a:\n    runs-on: linux\n    outputs:\n      x: ${{ steps.s.outputs.x }}\n    steps:\n      - id: s\n        run: echo x=1 >> $GITHUB_OUTPUT\n  \
         b:\n    needs: a\n    runs-on: linux\n    steps:\n      - run: echo ${{ needs.a.outputs.x }}\n",
    );
    assert_eq!(run.live_of("b"), Vec::<i64>::new(), "b waits for a");
    let a = run.spec_of("a");
    assert_eq!(a.labels, ["linux"]);
    assert_eq!(a.outputs.as_ref().expect("outputs")["x"], "${{ steps.s.outputs.x }}");
    assert_eq!(a.timeout_minutes, Some(360));
    run.finish_key("a", Outcome::Success, &[("x", "hello")]);
    let b = contexts(run.spec_of("b"));
    assert_eq!(b["needs"]["a"]["outputs"]["x"], "hello");
    assert_eq!(b["needs"]["a"]["result"], "success");
    assert_eq!(b["github"]["job"], "b");
    assert_eq!(b["github"]["run_id"], "7");
    run.finish_key("b", Outcome::Success, &[]);
    assert_eq!(run.state.conclusion(), Some(Outcome::Success));
}

#[test]
fn status_functions_in_job_if_follow_github() {
    // a fails: b (default if) is skipped; c needs b and asks failure(), which sees the failed
    // ancestor a; d runs always(); e needs the skipped b and is skipped too; f is skipped
    // because it asks success() of a chain that failed.
    let mut run = Run::start(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'false'}]\n  \
         b:\n    needs: a\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         c:\n    needs: b\n    if: failure()\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         d:\n    needs: a\n    if: always()\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         e:\n    needs: b\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         f:\n    needs: [a]\n    if: success()\n    runs-on: x\n    steps: [{run: 'true'}]\n",
    );
    run.finish_key("a", Outcome::Failure, &[]);
    assert_eq!(run.result("b"), Some(Outcome::Skipped));
    assert_eq!(run.result("e"), Some(Outcome::Skipped));
    assert_eq!(run.result("f"), Some(Outcome::Skipped));
    assert_eq!(run.live_of("c").len(), 1, "failure() sees the failed ancestor");
    assert_eq!(run.live_of("d").len(), 1, "always() runs");
    run.finish_key("c", Outcome::Success, &[]);
    run.finish_key("d", Outcome::Success, &[]);
    assert_eq!(run.state.conclusion(), Some(Outcome::Failure));
}

#[test]
fn a_skipped_need_blocks_success_and_failure() {
    let mut run = Run::start(
        "on: push\njobs:\n  a:\n    if: false\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         b:\n    needs: a\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         c:\n    needs: a\n    if: failure()\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         d:\n    needs: a\n    if: ${{ !failure() && !cancelled() }}\n    runs-on: x\n    steps: [{run: 'true'}]\n",
    );
    assert_eq!(run.result("a"), Some(Outcome::Skipped));
    assert_eq!(run.result("b"), Some(Outcome::Skipped));
    assert_eq!(run.result("c"), Some(Outcome::Skipped));
    assert_eq!(run.live_of("d").len(), 1);
    run.finish_key("d", Outcome::Success, &[]);
    assert_eq!(run.state.conclusion(), Some(Outcome::Success), "skipped jobs do not fail a run");
}

const MATRIX: &str = "on: push\njobs:\n  test:\n    runs-on: ${{ matrix.os }}\n    strategy:\n      matrix:\n        \
                      os: [linux, mac]\n        rust: [stable, beta]\n        exclude:\n          - os: mac\n            \
                      rust: beta\n        include:\n          - os: linux\n            rust: nightly\n            \
                      experimental: true\n    continue-on-error: ${{ matrix.experimental == true }}\n    \
                      steps: [{run: 'true'}]\n";

#[test]
fn matrix_legs_have_names_labels_and_strategy() {
    let run = Run::start(MATRIX);
    let legs: Vec<(String, Vec<String>)> =
        run.live.values().map(|(_, spec)| (spec.name.clone(), spec.labels.clone())).collect();
    assert_eq!(
        legs,
        [
            ("test (linux, stable)".to_string(), vec!["linux".to_string()]),
            ("test (linux, beta)".to_string(), vec!["linux".to_string()]),
            ("test (mac, stable)".to_string(), vec!["mac".to_string()]),
            ("test (linux, nightly, true)".to_string(), vec!["linux".to_string()]),
        ]
    );
    let last = contexts(&run.live[&4].1);
    assert_eq!(last["strategy"]["job-index"], 3.0);
    assert_eq!(last["strategy"]["job-total"], 4.0);
    assert_eq!(last["matrix"]["experimental"], true);
    let job = &run.state.jobs[0];
    assert_eq!(job.legs.iter().map(|leg| leg.continue_on_error).collect::<Vec<_>>(), [false, false, false, true]);
}

#[test]
fn fail_fast_cancels_the_other_legs_unless_the_failure_may_continue() {
    let mut run = Run::start(MATRIX);
    // The experimental leg may fail: nothing is cancelled.
    run.finish(4, Outcome::Failure, &[]);
    assert!(run.cancels.is_empty());
    run.finish(1, Outcome::Success, &[]);
    // A real failure cancels the legs still running.
    run.finish(2, Outcome::Failure, &[]);
    assert_eq!(run.cancels, [3]);
    run.finish(3, Outcome::Cancelled, &[]);
    assert_eq!(run.result("test"), Some(Outcome::Failure));
    assert_eq!(run.state.conclusion(), Some(Outcome::Failure));
}

#[test]
fn without_fail_fast_the_other_legs_go_on() {
    let yaml = MATRIX.replace("    strategy:\n", "    strategy:\n      fail-fast: false\n");
    let mut run = Run::start(&yaml);
    run.finish(1, Outcome::Failure, &[]);
    assert!(run.cancels.is_empty());
    for id in [2, 3, 4] {
        run.finish(id, Outcome::Success, &[]);
    }
    assert_eq!(run.result("test"), Some(Outcome::Failure));
}

#[test]
fn max_parallel_starts_legs_one_by_one_and_fail_fast_stops_the_rest() {
    let yaml = "on: push\njobs:\n  t:\n    runs-on: x\n    strategy:\n      max-parallel: 1\n      matrix:\n        \
                n: [1, 2, 3]\n    steps: [{run: 'true'}]\n";
    let mut run = Run::start(yaml);
    assert_eq!(run.live_of("t"), [1]);
    run.finish(1, Outcome::Success, &[]);
    assert_eq!(run.live_of("t"), [2]);
    run.finish(2, Outcome::Failure, &[]);
    assert!(run.live_of("t").is_empty(), "the third leg never starts");
    let legs: Vec<Option<Outcome>> = run.state.jobs[0].legs.iter().map(|leg| leg.result).collect();
    assert_eq!(legs, [Some(Outcome::Success), Some(Outcome::Failure), Some(Outcome::Cancelled)]);
    assert_eq!(run.state.conclusion(), Some(Outcome::Failure));
}

#[test]
fn cancelling_a_run_stops_legs_and_runs_only_clean_up_jobs() {
    let mut run = Run::start(
        "on: push\njobs:\n  build:\n    runs-on: x\n    steps: [{run: 'sleep 100'}]\n  \
         test:\n    needs: build\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         report:\n    needs: build\n    if: cancelled()\n    runs-on: x\n    steps: [{run: 'true'}]\n",
    );
    let actions = run.plan(|planner, state| planner.cancel(state));
    run.apply(actions);
    assert_eq!(run.cancels, [1]);
    assert!(run.plan(|planner, state| planner.cancel(state)).is_empty(), "a second cancel changes nothing");
    run.finish(1, Outcome::Cancelled, &[]);
    assert_eq!(run.result("test"), Some(Outcome::Skipped));
    assert_eq!(run.live_of("report").len(), 1, "cancelled() jobs run after a cancel");
    run.finish_key("report", Outcome::Success, &[]);
    assert_eq!(run.state.conclusion(), Some(Outcome::Cancelled));
}

#[test]
fn a_matrix_computed_from_needs_outputs_expands_after_the_need() {
    let mut run = Run::start(
        "on: push\njobs:\n  setup:\n    runs-on: x\n    outputs:\n      targets: ${{ steps.s.outputs.t }}\n    \
         steps:\n      - id: s\n        run: 'true'\n  \
         build:\n    needs: setup\n    runs-on: x\n    strategy:\n      matrix:\n        \
         target: ${{ fromJSON(needs.setup.outputs.targets) }}\n    steps: [{run: 'true'}]\n",
    );
    run.finish_key("setup", Outcome::Success, &[("targets", r#"["arm", "x86"]"#)]);
    let names: Vec<&str> = run.state.jobs[1].legs.iter().map(|leg| leg.name.as_str()).collect();
    assert_eq!(names, ["build (arm)", "build (x86)"]);
}

#[test]
fn a_matrix_that_evaluates_to_nonsense_fails_the_job_with_a_reason() {
    let mut run = Run::start(
        "on: push\njobs:\n  setup:\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
         build:\n    needs: setup\n    runs-on: x\n    strategy:\n      matrix: ${{ fromJSON('[1]') }}\n    \
         steps: [{run: 'true'}]\n",
    );
    run.finish_key("setup", Outcome::Success, &[]);
    assert_eq!(run.result("build"), Some(Outcome::Failure));
    let message = run.state.jobs[1].message.clone().unwrap_or_default();
    assert!(message.contains("must evaluate to a mapping"), "{message}");
}

#[test]
fn job_if_sees_inputs_and_selection_takes_the_needed_jobs() {
    let mut inputs = Object::new();
    inputs.insert("deploy", baton_expr::Value::Bool(false));
    let yaml = "on: push\njobs:\n  lint:\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
                build:\n    runs-on: x\n    steps: [{run: 'true'}]\n  \
                deploy:\n    needs: build\n    if: inputs.deploy\n    runs-on: x\n    steps: [{run: 'true'}]\n";
    let mut run = Run::start_with(yaml, Some("deploy"), inputs);
    let keys: Vec<&str> = run.state.jobs.iter().map(|job| job.key.as_str()).collect();
    assert_eq!(keys, ["build", "deploy"]);
    run.finish_key("build", Outcome::Success, &[]);
    assert_eq!(run.results(), [("build".into(), Some(Outcome::Success)), ("deploy".into(), Some(Outcome::Skipped))]);

    let workflow = baton_workflow::parse_workflow("t.yml", yaml).expect("valid");
    let inputs = Object::new();
    let planner = Planner::new(RunContext { run_id: 1, workflow: &workflow, inputs: &inputs, any_runner: false });
    let error = planner.start(Some("nope")).expect_err("unknown job");
    assert_eq!(error.to_string(), "the workflow has no job `nope`; its jobs are: lint, build, deploy");
}

#[test]
fn any_runner_drops_labels_and_step_fields_are_resolved() {
    let yaml = "on: push\ndefaults:\n  run:\n    shell: sh\nenv:\n  A: top\njobs:\n  j:\n    runs-on: ubuntu-latest\n    \
                timeout-minutes: 5\n    env:\n      B: ${{ github.job }}\n    defaults:\n      run:\n        \
                working-directory: sub\n    steps:\n      - id: one\n        name: Say ${{ github.job }}\n        \
                run: echo $A\n        continue-on-error: true\n        timeout-minutes: 2\n        if: always()\n";
    let workflow = baton_workflow::parse_workflow("t.yml", yaml).expect("valid");
    let inputs = Object::new();
    let planner = Planner::new(RunContext { run_id: 1, workflow: &workflow, inputs: &inputs, any_runner: true });
    let mut state = planner.start(None).expect("start");
    let actions = planner.advance(&mut state);
    let [Action::Enqueue { spec, .. }] = actions.as_slice() else { panic!("one enqueue, got {actions:?}") };
    assert!(spec.labels.is_empty());
    assert_eq!(spec.timeout_minutes, Some(5));
    assert_eq!(spec.env.get("A").map(String::as_str), Some("top"));
    assert_eq!(spec.env.get("B").map(String::as_str), Some("${{ github.job }}"), "env is evaluated by the runner");
    let step = &spec.steps[0];
    assert_eq!(step.name.as_deref(), Some("Say j"));
    assert_eq!(step.shell.as_deref(), Some("sh"));
    assert_eq!(step.working_directory.as_deref(), Some("sub"));
    assert!(step.continue_on_error);
    assert_eq!(step.timeout_minutes, Some(2));
    assert_eq!(step.condition.as_deref(), Some("always()"));
    assert_eq!(state.jobs[0].phase, Phase::Running);
}

#[test]
fn state_round_trips_through_json() {
    let run = Run::start(MATRIX);
    let text = serde_json::to_string(&run.state).expect("serialize");
    let back: RunState = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, run.state);
}
