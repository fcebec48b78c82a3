//! Classifies every case of GitHub's workflow-parser conformance data (`workflow-parser/reader/*.yml`) as
//! supported, unsupported or not applicable, and checks Baton behaves as classified.
//!
//! Each case file is a header, `---`, the workflow, and (after further `---` separators, some holding called
//! reusable workflows) GitHub's normalised output or its errors as JSON. The table below is the visible list of
//! classifications; a case file missing from it fails the test, so new upstream cases must be classified.

use std::path::{Path, PathBuf};

use baton_workflow::{ErrorKind, Workflow, parse_workflow};
use serde_json::Value as Json;

/// How Baton is expected to treat a conformance case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Baton accepts the workflow exactly when GitHub does, and agrees on job ids, names, runs-on labels, needs
    /// and step counts.
    Supported,
    /// The workflow uses a feature Baton does not run yet; Baton must reject it with a "not supported yet" error.
    Unsupported,
    /// The case tests something outside Baton's scope, for the given reason.
    NotApplicable(&'static str),
}

use Class::{NotApplicable, Supported, Unsupported};

const CASES: &[(&str, Class)] = &[
    ("background-steps.yml", Unsupported),
    ("bad-character.yml", Unsupported),
    ("basic.yml", Unsupported),
    (
        "coercion-to-string.yml",
        NotApplicable("uses an empty `!!null` tagged value, which the saphyr YAML loader rejects"),
    ),
    ("concurrency.yml", Unsupported),
    ("error.yml", Supported),
    (
        "errors-anchor-tag.yml",
        NotApplicable(
            "Baton expands YAML anchors within a node budget; GitHub's parsers (except TypeScript) refuse anchors",
        ),
    ),
    ("errors-empty-expression.yml", Supported),
    ("errors-expression-not-allowed.yml", Supported),
    ("errors-expression-not-closed.yml", Supported),
    ("errors-expressions.yml", Unsupported),
    ("errors-insert.yml", Supported),
    ("errors-invalid-mapping-key.yml", Supported),
    ("errors-invalid-permissions.yml", Unsupported),
    ("errors-job-concurrency.yml", Unsupported),
    ("errors-job-id-empty.yml", Supported),
    ("errors-job-id-format.yml", Supported),
    ("errors-job-id-leading-underscores.yml", Supported),
    ("errors-job-id-unique.yml", Supported),
    ("errors-job-needs-cycle.yml", Supported),
    ("errors-job-needs-no-start-node.yml", Supported),
    ("errors-job-needs-unknown-job.yml", Supported),
    ("errors-job-runs-on-and-uses.yml", Unsupported),
    ("errors-job-runs-on-group-invalid-prefix.yml", Supported),
    ("errors-job-runs-on-missing.yml", Supported),
    ("errors-jobs-at-least-one.yml", Supported),
    ("errors-jobs-missing.yml", Supported),
    ("errors-matrix-bad-key.yml", Supported),
    ("errors-matrix-empty-vector.yml", Supported),
    ("errors-matrix-max-depth.yml", Unsupported),
    ("errors-max-depth.yml", Unsupported),
    ("errors-max-file-size.yml", Unsupported),
    ("errors-max-job-limit-with-reusable-workflow.yml", Unsupported),
    (
        "errors-max-result-size.yml",
        NotApplicable("tests the harness option max-result-size, which Baton has no equivalent of"),
    ),
    (
        "errors-on-workflow_call-input-type-missing.yml",
        NotApplicable(
            "Baton accepts any trigger configuration; workflow_call is validated once reusable workflows are supported",
        ),
    ),
    (
        "errors-on-workflow_call-input-unexpected-property.yml",
        NotApplicable(
            "Baton accepts any trigger configuration; workflow_call is validated once reusable workflows are supported",
        ),
    ),
    (
        "errors-on-workflow_call-output.yml",
        NotApplicable(
            "Baton accepts any trigger configuration; workflow_call is validated once reusable workflows are supported",
        ),
    ),
    ("errors-parse-boolean.yml", Supported),
    ("errors-parse-float.yml", Supported),
    ("errors-parse-integer.yml", Supported),
    ("errors-required-property-missing.yml", Unsupported),
    ("errors-reusable-workflow-job-inputs-required.yml", Unsupported),
    ("errors-reusable-workflow-job-inputs-type-mismatch.yml", Unsupported),
    ("errors-reusable-workflow-job-inputs-undefined.yml", Unsupported),
    ("errors-reusable-workflow-job-nested-depth-exceeded.yml", Unsupported),
    ("errors-reusable-workflow-job-nested-permissions-not-allowed-job-level-from-caller-job-level.yml", Unsupported),
    (
        "errors-reusable-workflow-job-nested-permissions-not-allowed-job-level-from-caller-workflow-level.yml",
        Unsupported,
    ),
    (
        "errors-reusable-workflow-job-nested-permissions-not-allowed-workflow-level-from-caller-job-level.yml",
        Unsupported,
    ),
    (
        "errors-reusable-workflow-job-nested-permissions-not-allowed-workflow-level-from-caller-workflow-level.yml",
        Unsupported,
    ),
    ("errors-reusable-workflow-job-secrets-required.yml", Unsupported),
    ("errors-reusable-workflow-job-secrets-undefined.yml", Unsupported),
    ("errors-reusable-workflow-job-secrets.yml", Unsupported),
    ("errors-reusable-workflow-max-result-size.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-job-level-from-caller-default.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-job-level-from-caller-job-level.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-job-level-from-caller-workflow-level.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-actions-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-checks-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-contents-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-deployments-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-discussions-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-id-token-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-issues-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-packages-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-pages-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-pull-requests-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-read-all-allowed-none.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-repository-projects-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-security-events-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-statuses-write.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-write-all-allowed-none.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-request-write-all-allowed-read-all.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-workflow-level-from-caller-default.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-workflow-level-from-caller-job-level.yml", Unsupported),
    ("errors-reusable-workflow-permissions-not-allowed-workflow-level-from-caller-workflow-level.yml", Unsupported),
    ("errors-step-id.yml", Supported),
    ("errors-step-if.yml", Supported),
    ("errors-step-run-exceeds-length.yml", Supported),
    ("errors-step-run-missing.yml", Supported),
    ("errors-step-uses-missing.yml", Unsupported),
    ("errors-step-uses-syntax.yml", Unsupported),
    ("errors-unclosed-tokens.yml", Supported),
    ("errors-unexpected-mapping.yml", Supported),
    ("errors-unexpected-sequence.yml", Supported),
    ("errors-value-already-defined.yml", Supported),
    ("errors-yaml-invalid-style.yml", Unsupported),
    ("errors-yaml-tags-explicit-unsupported.yml", Supported),
    ("escape-html-values.yml", Supported),
    ("events-mapping-all.yml", Unsupported),
    ("events-mapping-repo-dispatch.yml", Unsupported),
    ("events-mapping.yml", Unsupported),
    ("events-sequence.yml", Unsupported),
    ("events-single-invalid-config.yml", Unsupported),
    ("events-single-invalid.yml", Unsupported),
    ("events-single-with-types.yml", Unsupported),
    ("events-single.yml", Unsupported),
    ("float-folded-style.yml", Unsupported),
    ("id-to-long.yml", Unsupported),
    ("insert.yml", NotApplicable("uses GitHub's `${{ insert }}` mapping directive, which Baton does not implement")),
    ("is-partial-rerun.yml", Unsupported),
    ("job-basic.yml", Unsupported),
    ("job-cancel-timeout-minutes.yml", Unsupported),
    ("job-concurrency.yml", Unsupported),
    ("job-container-invalid-credentials.yml", Unsupported),
    ("job-container-invalid.yml", Unsupported),
    ("job-container-missing-image.yml", Unsupported),
    ("job-container.yml", Unsupported),
    ("job-continue-on-error.yml", Supported),
    ("job-defaults.yml", Supported),
    ("job-environment-deployment.yml", Unsupported),
    ("job-environment.yml", Unsupported),
    ("job-id.yml", Supported),
    (
        "job-if.yml",
        NotApplicable(
            "passes arguments to success(), which GitHub ignores but baton-expr rejects as an argument-count error",
        ),
    ),
    ("job-needs.yml", Supported),
    ("job-outputs.yml", Supported),
    ("job-permissions.yml", Unsupported),
    ("job-runs-on.yml", Supported),
    ("job-services-args.yml", Unsupported),
    ("job-services.yml", Unsupported),
    ("job-snapshot-mapping.yml", Unsupported),
    ("job-snapshot-simple.yml", Unsupported),
    ("job-strategy.yml", Supported),
    ("job-timeout-minutes.yml", Supported),
    ("job-with-outputs-context.yml", Supported),
    ("matrix-basic.yml", Supported),
    ("max-result-size.yml", Supported),
    ("misc-jobs.yml", Unsupported),
    ("misc-steps.yml", Unsupported),
    ("mvp.yml", Unsupported),
    ("on-event-config-image-version-name-version.yml", Supported),
    ("on-event-config-image-version-names.yml", Supported),
    ("on-event-config-image-version-versions.yml", Supported),
    ("on-event-config-string-image-version.yml", Supported),
    ("on-workflow_call-mapping.yml", Supported),
    ("on-workflow_call-sequence.yml", Supported),
    ("on-workflow_call.yml", Supported),
    ("on-workflow_dispatch-inputs-null.yml", Supported),
    ("on-workflow_dispatch-inputs.yml", Supported),
    ("on-workflow_dispatch-mapping.yml", Supported),
    ("on-workflow_dispatch-null.yml", Supported),
    ("on-workflow_dispatch-string.yml", Supported),
    ("on-workflow_dispatch-unknown-keys-ignored.yml", Supported),
    ("permissions.yml", Unsupported),
    ("preserves-source-info-basic.yml", Supported),
    ("preserves-source-info-reusable-workflow.yml", Unsupported),
    ("preserves-source-info-simple.yml", Unsupported),
    ("reusable-workflow-inputs.yml", Unsupported),
    ("reusable-workflow-job-basic.yml", Unsupported),
    ("reusable-workflow-job-inputs-type-coercion.yml", Unsupported),
    ("reusable-workflow-job-mvp.yml", Unsupported),
    ("reusable-workflow-job-name.yml", Unsupported),
    ("reusable-workflow-job-nested-basic.yml", Unsupported),
    ("reusable-workflow-job-nested-multiple.yml", Unsupported),
    ("reusable-workflow-job-nested-permissions.yml", Unsupported),
    ("reusable-workflow-job-permissions-default-limited-read-allows-contents-packages.yml", Unsupported),
    ("reusable-workflow-job-permissions-embedded-permissions-after-jobs.yml", Unsupported),
    ("reusable-workflow-job-permissions-embedded-permissions.yml", Unsupported),
    ("reusable-workflow-job-permissions-overrides-default-limited-read.yml", Unsupported),
    ("reusable-workflow-job-permissions-overrides-default-limited-write.yml", Unsupported),
    ("reusable-workflow-job-permissions-overrides-default-write.yml", Unsupported),
    ("reusable-workflow-job-permissions-overrides-workflow-level.yml", Unsupported),
    ("reusable-workflow-job-strategy.yml", Unsupported),
    ("reusable-workflow-multiple.yml", Unsupported),
    ("reusable-workflow-no-inputs.yml", Unsupported),
    ("reusable-workflow-outputs.yml", Unsupported),
    ("reusable-workflow-secrets-secret-without-definition.yml", Unsupported),
    ("reusable-workflow-secrets.yml", Unsupported),
    ("root-env-defaults.yml", Unsupported),
    ("round-to-infinity.yml", Supported),
    ("scientific-notation-number.yml", Supported),
    ("skip-reusable-workflows.yml", Unsupported),
    ("step-continue-on-error.yml", Supported),
    ("step-id-generates-counter-per-collision.yml", Unsupported),
    ("step-id-generates-when-empty-and-considers-collisions.yml", Unsupported),
    ("step-id-generates-when-empty.yml", Unsupported),
    ("step-id.yml", Unsupported),
    ("step-if.yml", Unsupported),
    ("step-name.yml", Unsupported),
    ("step-run.yml", Supported),
    ("workflow-concurrency-expression.yml", Unsupported),
    ("workflow-concurrency-mapping.yml", Unsupported),
    ("workflow-defaults.yml", Supported),
    ("workflow-description.yml", Supported),
    ("workflow-env.yml", Supported),
    ("workflow-name.yml", Supported),
    (
        "yaml-schema-bool.yml",
        NotApplicable("uses `!!bool True`-style tagged scalars, which the saphyr YAML loader rejects"),
    ),
    ("yaml-schema-exceptions.yml", Supported),
    ("yaml-schema-float.yml", Supported),
    ("yaml-schema-int.yml", NotApplicable("uses tagged integer forms that the saphyr YAML loader rejects")),
    ("yaml-schema-null.yml", NotApplicable("uses tagged null forms that the saphyr YAML loader rejects")),
    (
        "yaml-schema-sequence.yml",
        NotApplicable("has a comment directly after `]`, which YAML 1.2 (and saphyr) rejects but GitHub accepts"),
    ),
    ("yaml-schema-str-block-styles.yml", Supported),
    ("yaml-schema-str-flow-styles.yml", Supported),
    ("yaml-schema-string.yml", Unsupported),
    ("yaml-schema-timestamp.yml", Unsupported),
];

/// The conformance directory: `BATON_CONFORMANCE_DIR`, else `shared/conformance` in the nearest ancestor of the
/// crate directory that has one.
fn conformance_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BATON_CONFORMANCE_DIR") {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.ancestors().map(|ancestor| ancestor.join("shared/conformance")).find(|candidate| candidate.is_dir())
}

/// The workflow and GitHub's expected output of a case file.
fn split_case(text: &str) -> (String, String) {
    let mut parts = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    let workflow = parts.get(1).cloned().unwrap_or_default();
    let expected = parts.last().cloned().unwrap_or_default();
    (workflow, expected)
}

/// A literal string of GitHub's output, written either as a JSON string or, when the case keeps source
/// information, as `{"type": 0, "lit": ...}`.
fn literal(token: &Json) -> Option<&str> {
    match token {
        Json::String(text) => Some(text),
        Json::Object(object) if object.get("type").and_then(Json::as_u64) == Some(0) => object.get("lit")?.as_str(),
        _ => None,
    }
}

/// A template token of GitHub's output as plain strings: literals as themselves, expressions as `${{ expr }}`.
fn plain_strings(token: &Json) -> Option<Vec<String>> {
    match token {
        Json::Object(object) if object.get("type").and_then(Json::as_u64) == Some(1) => {
            let items = object.get("seq")?.as_array()?;
            items.iter().map(|item| literal(item).map(str::to_owned)).collect()
        }
        _ => literal(token).map(|text| vec![text.to_owned()]),
    }
}

/// GitHub's runs-on labels, when they are plain strings.
fn github_labels(runs_on: &Json) -> Option<Vec<String>> {
    if let Some(map) = runs_on.get("map").and_then(Json::as_array) {
        let labels = map.iter().find(|entry| entry.get("Key").and_then(Json::as_str) == Some("labels"))?;
        return plain_strings(labels.get("Value")?);
    }
    plain_strings(runs_on)
}

/// Compares the parts of GitHub's normalised output Baton models; returns the first difference.
fn compare(workflow: &Workflow, expected: &Json) -> Result<(), String> {
    let jobs: Vec<&Json> = expected
        .get("jobs")
        .and_then(Json::as_array)
        .map(|jobs| jobs.iter().filter(|job| job.get("type").and_then(Json::as_str) == Some("job")).collect())
        .unwrap_or_default();
    let expected_ids: Vec<&str> = jobs.iter().filter_map(|job| job.get("id").and_then(literal)).collect();
    let ids: Vec<&str> = workflow.jobs.iter().map(|job| job.id.as_str()).collect();
    if ids != expected_ids {
        return Err(format!("job ids {ids:?}, GitHub {expected_ids:?}"));
    }
    for (job, github) in workflow.jobs.iter().zip(&jobs) {
        // With source information, GitHub reports where the job id is; Baton must agree.
        let id_line = github.get("id").and_then(|id| id.get("line")).and_then(Json::as_u64);
        let id_column = github.get("id").and_then(|id| id.get("col")).and_then(Json::as_u64);
        if let (Some(line), Some(column)) = (id_line, id_column)
            && (job.position.line as u64, job.position.column as u64) != (line, column)
        {
            return Err(format!("job {}: at {:?}, GitHub at {line}:{column}", job.id, job.position));
        }
        if let Some(name) = github.get("name").and_then(literal) {
            let baton_name = job.name.as_ref().map_or(job.id.as_str(), |name| name.value.as_str());
            if baton_name != name {
                return Err(format!("job {}: name {baton_name:?}, GitHub {name:?}", job.id));
            }
        }
        if let Some(labels) = github.get("runs-on").and_then(github_labels) {
            let baton_labels: Vec<&str> = job.runs_on.labels.iter().map(|label| label.value.as_str()).collect();
            if baton_labels != labels {
                return Err(format!("job {}: runs-on {baton_labels:?}, GitHub {labels:?}", job.id));
            }
        }
        let needs: Vec<&str> = github
            .get("needs")
            .and_then(Json::as_array)
            .map(|needs| needs.iter().filter_map(literal).collect())
            .unwrap_or_default();
        let baton_needs: Vec<&str> = job.needs.iter().map(|need| need.value.as_str()).collect();
        if baton_needs != needs {
            return Err(format!("job {}: needs {baton_needs:?}, GitHub {needs:?}", job.id));
        }
        let steps = github.get("steps").and_then(Json::as_array).map_or(0, Vec::len);
        if job.steps.len() != steps {
            return Err(format!("job {}: {} steps, GitHub {steps}", job.id, job.steps.len()));
        }
    }
    Ok(())
}

fn check_case(path: &Path, name: &str, class: Class) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read: {error}"))?;
    let (workflow_text, expected_text) = split_case(&text);
    let expected: Json =
        serde_json::from_str(&expected_text).map_err(|error| format!("cannot parse GitHub's output: {error}"))?;
    let github_accepts = expected.get("errors").is_none();
    let result = parse_workflow(name, &workflow_text);
    let render = |errors: &[baton_workflow::WorkflowError]| {
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n    ")
    };
    match (class, result) {
        (NotApplicable(_), _) => Ok(()),
        (Unsupported, Err(errors)) if errors.iter().any(|error| error.kind == ErrorKind::NotSupported) => Ok(()),
        (Unsupported, Err(errors)) => {
            Err(format!("rejected without a \"not supported\" error:\n    {}", render(&errors)))
        }
        (Unsupported, Ok(_)) => Err("accepted, but is classified as unsupported".to_owned()),
        (Supported, Ok(workflow)) if github_accepts => compare(&workflow, &expected),
        (Supported, Ok(_)) => Err("accepted, but GitHub reports errors".to_owned()),
        (Supported, Err(errors)) if github_accepts => {
            Err(format!("rejected, but GitHub accepts it:\n    {}", render(&errors)))
        }
        (Supported, Err(errors)) if errors.iter().any(|error| error.kind == ErrorKind::NotSupported) => Err(format!(
            "rejected as not supported, so it should be classified as unsupported:\n    {}",
            render(&errors)
        )),
        (Supported, Err(_)) => Ok(()),
    }
}

#[test]
fn every_conformance_case_behaves_as_classified() {
    let Some(dir) = conformance_dir() else {
        let message = "the conformance data (shared/conformance or BATON_CONFORMANCE_DIR) was not found";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        println!("note: {message}; skipping");
        return;
    };
    let reader = dir.join("workflow-parser/reader");
    let mut files: Vec<String> = std::fs::read_dir(&reader)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", reader.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yml"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for name in &files {
        match CASES.iter().find(|(case, _)| case == name) {
            None => failures.push(format!("{name}: not in the classification table")),
            Some((_, class)) => {
                if let Err(problem) = check_case(&reader.join(name), name, *class) {
                    failures.push(format!("{name} ({class:?}): {problem}"));
                }
            }
        }
    }
    for (case, _) in CASES {
        if !files.iter().any(|name| name == case) {
            failures.push(format!("{case}: classified, but the case file does not exist"));
        }
    }
    let count = |wanted: fn(&Class) -> bool| CASES.iter().filter(|(_, class)| wanted(class)).count();
    println!(
        "{} cases: {} supported, {} unsupported, {} not applicable",
        CASES.len(),
        count(|class| *class == Supported),
        count(|class| *class == Unsupported),
        count(|class| matches!(class, NotApplicable(_)))
    );
    assert!(failures.is_empty(), "{} conformance problems:\n{}", failures.len(), failures.join("\n"));
}
