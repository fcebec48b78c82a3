//! Tests of parsing: the exact `file:line:col` text of errors, the resource limits, `needs` validation and the
//! model built for valid workflows.

use std::time::{Duration, Instant};

use baton_workflow::{ErrorKind, Matrix, WorkflowError, parse_workflow};
use expect_test::{Expect, expect};

/// The rendered errors of a workflow that must be rejected, one per line.
fn errors_of(text: &str) -> String {
    match parse_workflow("ci.yml", text) {
        Ok(_) => "accepted".to_owned(),
        Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
    }
}

fn kinds_of(text: &str) -> Vec<ErrorKind> {
    parse_workflow("ci.yml", text).err().unwrap_or_default().iter().map(|error| error.kind).collect()
}

#[test]
fn errors_render_with_file_line_and_column() {
    let cases: &[(&str, Expect)] = &[
        (
            "on: push\njobs:\n  build:\n    runs_on: linux\n    steps:\n      - run: echo\n",
            expect![[r#"
                ci.yml:3:3: job `build` has no `runs-on`; add `runs-on: <label>`
                ci.yml:4:5: unknown key `runs_on` in job `build`; did you mean `runs-on`?"#]],
        ),
        (
            "on: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - uses: actions/checkout@v4\n",
            expect![[
                r#"ci.yml:6:9: step 1 of job `build`: `uses:` (actions) is not supported yet; use `run:` with the equivalent shell commands"#
            ]],
        ),
        (
            "on: push\njobs:\n  build:\n    runs-on: linux\n    runs-on: mac\n    steps:\n      - run: echo\n",
            expect![[
                r#"ci.yml:5:5: duplicate key in mapping; each key may appear only once in a mapping; remove or rename one of them"#
            ]],
        ),
        (
            "on: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - run: echo ${{ github.ref == }}\n",
            expect![
                "ci.yml:6:34: invalid expression in `run` of step 1 of job `build` (column 12 of the expression): Unexpected end of expression: '=='. Located at position 12 within expression: github.ref ==; the expression stops after '=='; add the missing operand or closing ')'"
            ],
        ),
        (
            "on: push\npermissions: read-all\njobs:\n  build:\n    runs-on: linux\n    services: {}\n    steps:\n      - run: echo\n",
            expect![[r#"
                ci.yml:2:1: `permissions:` in the workflow is not supported yet; remove `permissions:`; Baton does not run it yet
                ci.yml:6:5: `services:` in job `build` is not supported yet; remove `services:`; Baton does not run it yet"#]],
        ),
        (
            "on: push\njobs:\n  1build:\n    runs-on: linux\n    steps:\n      - run: echo\n",
            expect![[
                r#"ci.yml:3:3: the job id `1build` is invalid; job ids may contain only letters, digits, `-` and `_`, must start with a letter or `_`, and must be shorter than 100 characters"#
            ]],
        ),
        (
            "name: ${{ github.ref }}\non: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: echo\n",
            expect![
                "ci.yml:1:7: the workflow `name` cannot contain a `${{ }}` expression; write a literal value; `${{ }}` is not evaluated at this place"
            ],
        ),
        (
            "name: only a name\n",
            expect![[r#"
            ci.yml:1:1: the workflow has no `on:`; add `on: push` or another trigger
            ci.yml:1:1: the workflow has no `jobs:`; add `jobs:` with at least one job"#]],
        ),
        (
            "on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: echo\n        shel: bash\n        iff: true\n  b:\n    runs-on: [linux]\n    stepz: []\n",
            expect![[r#"
                ci.yml:7:9: unknown key `shel` in step 1 of job `a`; did you mean `shell`?
                ci.yml:8:9: unknown key `iff` in step 1 of job `a`; did you mean `if`?
                ci.yml:9:3: job `b` has no `steps`; add `steps:` with at least one `run:` step
                ci.yml:11:5: unknown key `stepz` in job `b`; did you mean `steps`?"#]],
        ),
        (
            "on: push\njobs:\n  a:\n    runs-on: linux\n    if: ${{ secrets.X }}\n    steps:\n      - run: echo\n        env:\n          A: ${{ hashFiles('x') }} ${{ nope.x }}\n",
            expect![[r#"
                ci.yml:5:9: invalid expression in `if` of job `a` (column 1 of the expression): Unrecognized named-value: 'secrets'. Located at position 1 within expression: secrets.X; the contexts available here are: github, needs, vars, inputs; a string needs quotes ('text'), a function call needs parentheses
                ci.yml:9:40: invalid expression in `A` in `env` of step 1 of job `a` (column 1 of the expression): Unrecognized named-value: 'nope'. Located at position 1 within expression: nope.x; the contexts available here are: github, needs, strategy, matrix, job, runner, env, vars, secrets, steps, inputs; a string needs quotes ('text'), a function call needs parentheses"#]],
        ),
        (
            "on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: echo\n        timeout-minutes: soon\n",
            expect![[
                r#"ci.yml:7:26: `timeout-minutes` of step 1 of job `a` must be a number of minutes such as 30 or a `${{ }}` expression, not a string; write a number of minutes such as 30"#
            ]],
        ),
        (
            "on: [push\n",
            expect![[
                r#"ci.yml:2:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'; fix the YAML syntax"#
            ]],
        ),
        // A quoted value is not the text written in the file, so its errors are reported at the value's start.
        (
            "on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: \"echo \\\"${{ 1 + }}\\\"\"\n        name: ${{ 'a' }} ${{ x\n",
            expect![[r#"
                ci.yml:6:14: invalid expression in `run` of step 1 (`${{ 'a' }} ${{ x`) of job `a` (column 3 of the expression): Unexpected symbol: '+'. Located at position 3 within expression: 1 +; write numbers like 42, -1.5, .5, 1e3, 0xff or 0o17 (a sign is not allowed before 0x or 0o); other text must be a string literal in single quotes
                ci.yml:7:26: invalid expression in `name` of step 1 (`${{ 'a' }} ${{ x`) of job `a`: The expression is not closed. An unescaped ${{ sequence was found, but the closing }} sequence was not found. Located at byte 11 of: ${{ 'a' }} ${{ x; end the expression with }}; to write a literal ${{, use ${{ '${{' }}"#]],
        ),
    ];
    for (text, expected) in cases {
        expected.assert_eq(&errors_of(text));
    }
}

#[test]
fn needs_errors_name_the_jobs_and_the_cycle() {
    let text = "on: push\njobs:\n  a:\n    needs: [c]\n    runs-on: x\n    steps: [run: echo]\n  b:\n    needs: a\n    \
                runs-on: x\n    steps: [run: echo]\n  c:\n    needs: [b, d]\n    runs-on: x\n    steps: [run: echo]\n";
    expect![[r#"
        ci.yml:8:12: the `needs` of the jobs form a cycle: a -> c -> b -> a; remove `a` from the `needs` of job `b`, or another link of the cycle
        ci.yml:12:16: job `c` needs unknown job `d`; the jobs of this workflow are: a, b, c"#]].assert_eq(&errors_of(text));
    let self_cycle = "on: push\njobs:\n  a:\n    needs: a\n    runs-on: x\n    steps: [run: echo]\n";
    expect![[r#"ci.yml:4:12: the `needs` of the jobs form a cycle: a -> a; remove `a` from the `needs` of job `a`, or another link of the cycle"#]].assert_eq(&errors_of(self_cycle));
}

#[test]
fn topological_order_puts_needed_jobs_first() {
    let text = "on: push\njobs:\n  deploy:\n    needs: [test, build]\n    runs-on: x\n    steps: [run: echo]\n  \
                test:\n    needs: build\n    runs-on: x\n    steps: [run: echo]\n  lint:\n    runs-on: x\n    steps: \
                [run: echo]\n  build:\n    runs-on: x\n    steps: [run: echo]\n";
    let workflow = parse_workflow("ci.yml", text).unwrap_or_else(|errors| panic!("{errors:?}"));
    assert_eq!(workflow.topological_order(), ["lint", "build", "test", "deploy"]);
}

#[test]
fn the_model_keeps_values_and_positions() {
    let text = r#"name: CI
on:
  push:
    branches: [main]
  workflow_dispatch:
    inputs:
      level:
        type: choice
        options: [low, high]
        default: low
        required: true
        description: How loud
env:
  A: 1
defaults:
  run:
    shell: bash
    working-directory: src
jobs:
  build:
    name: Build ${{ matrix.os }}
    runs-on:
      group: organization/big
      labels: [linux, x64]
    needs: []
    if: github.ref == 'refs/heads/main'
    strategy:
      fail-fast: false
      max-parallel: 2
      matrix:
        os: [a, b]
    env:
      B: two
    outputs:
      out: ${{ steps.s.outputs.x }}
    timeout-minutes: 10
    continue-on-error: ${{ matrix.os == 'a' }}
    steps:
      - id: s
        name: Step
        run: echo hi
        shell: sh
        env:
          C: ${{ env.A }}
        if: always()
        working-directory: dir
        continue-on-error: true
        timeout-minutes: 5
  dynamic:
    runs-on: ubuntu-latest
    strategy:
      matrix: ${{ fromJSON(needs.build.outputs.out) }}
    needs: build
    steps:
      - run: echo
"#;
    let workflow = parse_workflow("ci.yml", text).unwrap_or_else(|errors| panic!("{errors:?}"));
    assert_eq!(workflow.name.as_ref().map(|name| name.value.as_str()), Some("CI"));
    assert_eq!(workflow.on.events.len(), 2);
    let dispatch = &workflow.on.events[1];
    assert_eq!(dispatch.inputs[0].options, ["low", "high"]);
    assert!(dispatch.inputs[0].required);
    assert_eq!(workflow.env[0].1.value, "1");
    assert_eq!(workflow.defaults.shell.as_ref().map(|shell| shell.value.as_str()), Some("bash"));
    let build = &workflow.jobs[0];
    let labels: Vec<&str> = build.runs_on.labels.iter().map(|label| label.value.as_str()).collect();
    assert_eq!(labels, ["linux", "x64"]);
    assert_eq!(build.runs_on.group.as_ref().map(|group| group.value.as_str()), Some("organization/big"));
    assert_eq!(build.steps[0].run.value, "echo hi");
    assert_eq!((build.steps[0].run.position.line, build.steps[0].run.position.column), (41, 14));
    assert_eq!((build.position.line, build.position.column), (20, 3));
    let strategy = build.strategy.as_ref().unwrap_or_else(|| panic!("no strategy"));
    assert!(matches!(strategy.matrix, Some(Matrix::Literal(_))));
    let dynamic = workflow.jobs[1].strategy.as_ref().and_then(|strategy| strategy.matrix.as_ref());
    assert!(matches!(dynamic, Some(Matrix::Deferred(_))));
    assert_eq!(workflow.topological_order(), ["build", "dynamic"]);
}

fn assert_refused_quickly(text: &str, kind: ErrorKind) {
    let started = Instant::now();
    let result = parse_workflow("big.yml", text);
    let elapsed = started.elapsed();
    let errors: Vec<WorkflowError> = result.err().unwrap_or_else(|| panic!("accepted"));
    assert_eq!(errors[0].kind, kind, "{errors:?}");
    // The machine running the tests is shared, so only a loose bound is checked.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn billion_laughs_is_refused_fast() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let previous = level - 1;
        let aliases = vec![format!("*a{previous}"); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
    }
    text.push_str("on: push\njobs: {}\n");
    assert_refused_quickly(&text, ErrorKind::Limit);
}

#[test]
fn huge_input_is_refused_before_parsing() {
    let text = "#".repeat(10 * 1024 * 1024);
    assert_refused_quickly(&text, ErrorKind::Limit);
}

#[test]
fn deep_nesting_is_refused() {
    let flow = format!("on: push\njobs: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert_refused_quickly(&flow, ErrorKind::Limit);
    let compact = format!("on: push\njobs:\n{}x\n", "- ".repeat(100_000));
    assert_refused_quickly(&compact, ErrorKind::Limit);
    let mut indented = String::from("on: push\njobs:\n");
    for level in 0..100 {
        indented.push_str(&format!("{}k{level}:\n", " ".repeat(level + 2)));
    }
    assert_refused_quickly(&indented, ErrorKind::Limit);
}

#[test]
fn too_many_nodes_are_refused() {
    let items = "1,".repeat(150_000);
    let text = format!("on: push\njobs: [{items}]\n");
    assert_refused_quickly(&text, ErrorKind::Limit);
}

#[test]
fn small_alias_use_is_accepted() {
    let text = "on: push\njobs:\n  a:\n    runs-on: &os linux\n    steps: [run: echo]\n  b:\n    runs-on: *os\n    steps: \
                [run: echo]\n";
    let workflow = parse_workflow("ci.yml", text).unwrap_or_else(|errors| panic!("{errors:?}"));
    assert_eq!(workflow.jobs[1].runs_on.labels[0].value, "linux");
}

#[test]
fn error_kinds_distinguish_problems() {
    let uses = "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [uses: a/b@v1]\n";
    assert_eq!(kinds_of(uses), [ErrorKind::NotSupported]);
    let duplicate = "on: push\non: pull_request\njobs: {}\n";
    assert_eq!(kinds_of(duplicate), [ErrorKind::DuplicateKey]);
}
