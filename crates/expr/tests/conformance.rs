//! Runs every case of GitHub's expression conformance data (`shared/conformance/expressions/*.json`) against the
//! engine: each expected result must match in kind and JSON form, each expected error must match in stage
//! (lexing, parsing, evaluation) and its message must contain GitHub's message, as GitHub's own test harness
//! requires.
//!
//! The data directory comes from `BATON_CONFORMANCE_DIR`, or else the nearest `shared/conformance` directory
//! above this crate. When it is missing the test prints a note and passes, except with `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use baton_expr::{ErrorCategory, Expression, NoHost, Object, ParseOptions, Value};
use serde::Deserialize;

/// One case of the data: an expression, its contexts, and the expected result or error.
#[derive(Debug, Deserialize)]
struct ConformanceCase {
    expr: String,
    result: Option<ExpectedResult>,
    err: Option<ExpectedError>,
    /// The named-values available to the expression; their keys are the only names it may use.
    contexts: Option<Value>,
    /// Implementation-specific notes such as `{"skip": ["typescript"]}`; Baton is not the TypeScript
    /// implementation, so it runs these cases too.
    #[allow(dead_code)]
    options: Option<CaseOptions>,
}

#[derive(Debug, Deserialize)]
struct ExpectedResult {
    kind: String,
    value: Value,
}

#[derive(Debug, Deserialize)]
struct ExpectedError {
    kind: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct CaseOptions {
    #[serde(default)]
    #[allow(dead_code)]
    skip: Vec<String>,
}

fn conformance_directory() -> Option<PathBuf> {
    if let Some(configured) = std::env::var_os("BATON_CONFORMANCE_DIR") {
        let configured = PathBuf::from(configured);
        return configured.is_dir().then_some(configured);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|ancestor| ancestor.join("shared").join("conformance"))
        .find(|candidate| candidate.is_dir())
}

fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true"))
}

fn category_name(category: ErrorCategory) -> &'static str {
    match category {
        ErrorCategory::Lexing => "lexing",
        ErrorCategory::Parsing => "parsing",
        ErrorCategory::Evaluation => "evaluation",
    }
}

/// Checks one case; `Err` describes the mismatch.
fn check_case(case: &ConformanceCase) -> Result<(), String> {
    let contexts = match &case.contexts {
        None => Object::new(),
        Some(Value::Object(object)) => object.clone(),
        Some(other) => return Err(format!("contexts must be an object, found {other:?}")),
    };
    // Like GitHub's harness: the contexts' keys are the allowed names and no extension functions exist.
    let options = ParseOptions::with_named_values(contexts.keys()).status_functions(false).hash_files(false);
    let outcome =
        Expression::parse(&case.expr, &options).and_then(|expression| expression.evaluate(&contexts, &NoHost));

    match (outcome, &case.err, &case.result) {
        (Err(error), Some(expected), _) => {
            let actual_kind = category_name(error.category());
            let message = error.to_string();
            if actual_kind != expected.kind || !message.contains(&expected.value) {
                return Err(format!(
                    "expected {} error containing {:?}, got {actual_kind} error: {message}",
                    expected.kind, expected.value
                ));
            }
            Ok(())
        }
        (Err(error), None, _) => Err(format!("unexpected {} error: {error}", category_name(error.category()))),
        (Ok(value), Some(expected), _) => {
            Err(format!("expected {} error {:?}, got {:?}", expected.kind, expected.value, value))
        }
        (Ok(value), None, Some(expected)) => {
            let actual_kind = value.kind().name();
            // GitHub's harness compares JSON.stringify of both sides, which ignores -0 and keeps key order.
            if actual_kind != expected.kind || value.to_json_pretty() != expected.value.to_json_pretty() {
                return Err(format!(
                    "expected {} {}, got {actual_kind} {}",
                    expected.kind,
                    expected.value.to_json_pretty(),
                    value.to_json_pretty()
                ));
            }
            Ok(())
        }
        (Ok(_), None, None) => Err("the case has neither a result nor an error".to_owned()),
    }
}

#[test]
fn every_conformance_case_passes() {
    let Some(directory) = conformance_directory().map(|directory| directory.join("expressions")) else {
        assert!(
            !running_in_ci(),
            "the conformance data was not found (set BATON_CONFORMANCE_DIR or provide shared/conformance); \
             CI=true requires it"
        );
        println!("note: conformance data not found; skipping the expression conformance test");
        return;
    };
    assert!(directory.is_dir() || !running_in_ci(), "{} is missing", directory.display());
    if !directory.is_dir() {
        println!("note: {} not found; skipping the expression conformance test", directory.display());
        return;
    }

    let mut files: Vec<PathBuf> = fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
        .map(|entry| entry.expect("directory entry is readable").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no conformance files in {}", directory.display());

    let mut checked = 0_usize;
    let mut failures = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        let groups: BTreeMap<String, Vec<ConformanceCase>> =
            serde_json::from_str(&text).unwrap_or_else(|error| panic!("cannot parse {}: {error}", file.display()));
        let file_name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        for (group, cases) in &groups {
            for (index, case) in cases.iter().enumerate() {
                checked += 1;
                if let Err(problem) = check_case(case) {
                    failures.push(format!("{file_name} / {group} #{index}: {:?}\n    {problem}", case.expr));
                }
            }
        }
    }

    let passed = checked - failures.len();
    println!("conformance: {passed} of {checked} cases passed, from {} files in {}", files.len(), directory.display());
    assert!(failures.is_empty(), "{} conformance case(s) failed:\n{}", failures.len(), failures.join("\n"));
}
