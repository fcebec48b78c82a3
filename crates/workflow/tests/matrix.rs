//! Matrix expansion tests, built from the examples in GitHub's documentation ("Running variations of jobs in a
//! workflow"), whose job lists and order Baton must reproduce exactly.

use baton_expr::{Object, Value};
use baton_workflow::{ErrorKind, LiteralMatrix, Matrix, Position, expand_matrix, parse_workflow};
use expect_test::{Expect, expect};

/// The matrix of the only job of a workflow whose `strategy.matrix` is `matrix_yaml` (indented by six spaces).
fn matrix_of(matrix_yaml: &str) -> Matrix {
    let text = format!(
        "on: push\njobs:\n  test:\n    runs-on: x\n    steps: [run: echo]\n    strategy:\n      matrix:\n{matrix_yaml}"
    );
    let workflow = parse_workflow("ci.yml", &text).unwrap_or_else(|errors| panic!("{errors:?}"));
    workflow.jobs[0]
        .strategy
        .as_ref()
        .and_then(|strategy| strategy.matrix.clone())
        .unwrap_or_else(|| panic!("no matrix"))
}

/// The expanded combinations, one compact JSON object per line.
fn expanded(matrix_yaml: &str) -> String {
    let combinations = expand_matrix(&matrix_of(matrix_yaml)).unwrap_or_else(|error| panic!("{error}"));
    combinations
        .into_iter()
        .map(|combination| serde_json::to_string(&baton_expr::Value::Object(combination)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn github_documentation_examples() {
    let cases: &[(&str, Expect)] = &[
        // "Using a single-dimension matrix".
        (
            "        version: [10, 12, 14]\n",
            expect![[r#"
            {"version":10}
            {"version":12}
            {"version":14}"#]],
        ),
        // "Using a multi-dimension matrix": the first vector varies slowest.
        (
            "        os: [ubuntu-22.04, ubuntu-20.04]\n        version: [10, 12, 14]\n",
            expect![[r#"
            {"os":"ubuntu-22.04","version":10}
            {"os":"ubuntu-22.04","version":12}
            {"os":"ubuntu-22.04","version":14}
            {"os":"ubuntu-20.04","version":10}
            {"os":"ubuntu-20.04","version":12}
            {"os":"ubuntu-20.04","version":14}"#]],
        ),
        // "Expanding or adding matrix configurations": the documented six jobs, including that the second
        // `banana` entry does not extend the combination the first one created.
        (
            "        fruit: [apple, pear]\n        animal: [cat, dog]\n        include:\n          - color: green\n          \
             - color: pink\n            animal: cat\n          - fruit: apple\n            shape: circle\n          \
             - fruit: banana\n          - fruit: banana\n            animal: cat\n",
            expect![[r#"
                {"fruit":"apple","animal":"cat","color":"pink","shape":"circle"}
                {"fruit":"apple","animal":"dog","color":"green","shape":"circle"}
                {"fruit":"pear","animal":"cat","color":"pink"}
                {"fruit":"pear","animal":"dog","color":"green"}
                {"fruit":"banana"}
                {"fruit":"banana","animal":"cat"}"#]],
        ),
        // "Example: Expanding configurations".
        (
            "        os: [windows-latest, ubuntu-latest]\n        node: [14, 16]\n        include:\n          - os: \
             windows-latest\n            node: 16\n            npm: 6\n",
            expect![[r#"
                {"os":"windows-latest","node":14}
                {"os":"windows-latest","node":16,"npm":6}
                {"os":"ubuntu-latest","node":14}
                {"os":"ubuntu-latest","node":16}"#]],
        ),
        // "Example: Adding configurations".
        (
            "        os: [macos-latest, windows-latest, ubuntu-latest]\n        version: [12, 14, 16]\n        include:\n          \
             - os: windows-latest\n            version: 17\n",
            expect![[r#"
                {"os":"macos-latest","version":12}
                {"os":"macos-latest","version":14}
                {"os":"macos-latest","version":16}
                {"os":"windows-latest","version":12}
                {"os":"windows-latest","version":14}
                {"os":"windows-latest","version":16}
                {"os":"ubuntu-latest","version":12}
                {"os":"ubuntu-latest","version":14}
                {"os":"ubuntu-latest","version":16}
                {"os":"windows-latest","version":17}"#]],
        ),
        // "Excluding matrix configurations": a partial exclude removes every matching combination.
        (
            "        os: [macos-latest, windows-latest]\n        version: [12, 14, 16]\n        environment: [staging, production]\n        \
             exclude:\n          - os: macos-latest\n            version: 12\n            environment: production\n          \
             - os: windows-latest\n            version: 16\n",
            expect![[r#"
                {"os":"macos-latest","version":12,"environment":"staging"}
                {"os":"macos-latest","version":14,"environment":"staging"}
                {"os":"macos-latest","version":14,"environment":"production"}
                {"os":"macos-latest","version":16,"environment":"staging"}
                {"os":"macos-latest","version":16,"environment":"production"}
                {"os":"windows-latest","version":12,"environment":"staging"}
                {"os":"windows-latest","version":12,"environment":"production"}
                {"os":"windows-latest","version":14,"environment":"staging"}
                {"os":"windows-latest","version":14,"environment":"production"}"#]],
        ),
        // A matrix of only `include` entries: each entry is one job.
        (
            "        include:\n          - site: production\n            datacenter: site-a\n          - site: staging\n            \
             datacenter: site-b\n",
            expect![[r#"
                {"site":"production","datacenter":"site-a"}
                {"site":"staging","datacenter":"site-b"}"#]],
        ),
        // Object values are compared whole.
        (
            "        node: [{version: 14, lts: true}, {version: 15}]\n        exclude:\n          - node: {version: 15}\n",
            expect![[r#"{"node":{"version":14,"lts":true}}"#]],
        ),
    ];
    for (matrix, expected) in cases {
        expected.assert_eq(&expanded(matrix));
    }
}

#[test]
fn more_than_256_combinations_are_refused() {
    let numbers = |count: u32| (1..=count).map(|number| Value::Number(f64::from(number))).collect::<Vec<_>>();
    let matrix = Matrix::Literal(LiteralMatrix {
        vectors: vec![("a".to_owned(), numbers(8)), ("b".to_owned(), numbers(8)), ("c".to_owned(), numbers(5))],
        include: Vec::new(),
        exclude: Vec::new(),
        position: Position { line: 7, column: 7 },
    });
    let error = expand_matrix(&matrix).err().unwrap_or_else(|| panic!("expanded"));
    assert_eq!(error.kind, ErrorKind::Matrix);
    expect![[r#"7:7: the matrix has 320 or more combinations, more than the limit of 256; remove values from the vectors, or exclude combinations"#]]
        .assert_eq(&error.to_string());
    let text = "on: push\njobs:\n  big:\n    runs-on: x\n    steps: [run: echo]\n    strategy:\n      matrix:\n        \
                a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]\n        b: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n";
    let errors = parse_workflow("ci.yml", text).err().unwrap_or_default();
    expect![[r#"ci.yml:8:9: job `big`: the matrix has 272 or more combinations, more than the limit of 256; remove values from the vectors, or exclude combinations"#]]
        .assert_eq(&errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}

#[test]
fn expression_matrices_are_kept_for_later() {
    let whole = matrix_of("          ${{ fromJSON(needs.setup.outputs.matrix) }}\n");
    assert!(matches!(whole, Matrix::Deferred(_)));
    let vector = matrix_of("        os: ${{ fromJSON(needs.setup.outputs.os) }}\n        node: [1]\n");
    assert!(matches!(vector, Matrix::Deferred(_)));
    assert_eq!(expand_matrix(&vector).err().map(|error| error.kind), Some(ErrorKind::Matrix));
}

#[test]
fn matrix_errors_are_reported_where_they_are() {
    let text = "on: push\njobs:\n  m:\n    runs-on: x\n    steps: [run: echo]\n    strategy:\n      matrix:\n        \
                os: []\n        node: 14\n        exclude:\n          - arch: arm\n";
    let errors = parse_workflow("ci.yml", text).err().unwrap_or_default();
    expect![[r#"
        ci.yml:8:13: the matrix vector `os` of `strategy` of job `m` is empty; list at least one value, or remove the vector
        ci.yml:9:15: the matrix vector `node` of `strategy` of job `m` must be a list, not a number; write `node: [value1, value2]`"#]].assert_eq(&errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}

#[test]
fn exclude_keys_must_be_matrix_keys() {
    let mut rule = Object::new();
    rule.insert("arch", Value::from("arm"));
    let matrix = Matrix::Literal(LiteralMatrix {
        vectors: vec![("os".to_owned(), vec![Value::from("linux")])],
        include: Vec::new(),
        exclude: vec![rule],
        position: Position { line: 3, column: 5 },
    });
    let error = expand_matrix(&matrix).err().unwrap_or_else(|| panic!("expanded"));
    expect![[r#"3:5: the matrix `exclude` key `arch` does not match any key of the matrix; exclude only by keys that are matrix vectors"#]]
        .assert_eq(&error.to_string());
}
