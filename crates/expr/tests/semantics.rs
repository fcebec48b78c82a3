//! Table-driven tests of the public API beyond GitHub's conformance data: every operator, the coercion table
//! from GitHub's documentation, functions with a fake host, error positions and messages, and resource limits.

use std::cell::RefCell;

use baton_expr::{
    ErrorCategory, Expression, ExpressionError, Host, JobStatus, Limits, NoHost, Object, ParseOptions, Value,
    evaluate_expression,
};
use expect_test::expect;

/// Contexts used by most tables.
fn contexts() -> Object {
    let text = r#"{
        "github": {"event_name": "push", "ref": "refs/heads/main", "event": {"labels": [{"name": "bug"}, {"name": "ci"}]}},
        "env": {"EMPTY": "", "NUMBER": "42", "FLAG": "true"},
        "matrix": {"os": "linux", "versions": [1, 2, 3], "nested": {"a": {"x": 1}, "b": {"x": 2}}},
        "steps": {}
    }"#;
    match Value::from_json_text(text) {
        Ok(Value::Object(object)) => object,
        other => panic!("test contexts must be an object: {other:?}"),
    }
}

fn evaluate(expression: &str) -> Result<Value, ExpressionError> {
    evaluate_expression(expression, &contexts(), &NoHost)
}

fn assert_results(cases: &[(&str, Value)]) {
    for (expression, expected) in cases {
        match evaluate(expression) {
            Ok(actual) => assert_eq!(&actual, expected, "{expression}"),
            Err(error) => panic!("{expression}: unexpected error {error}"),
        }
    }
}

fn boolean(value: bool) -> Value {
    Value::Bool(value)
}

#[test]
fn every_operator() {
    assert_results(&[
        // Grouping and precedence: ( ) > [] . > ! > < <= > >= > == != > && > ||.
        ("(1 || 2) && 3", Value::from(3)),
        ("1 || 2 && 3", Value::from(1)),
        ("!(1 == 2)", boolean(true)),
        ("!1 == 2", boolean(false)),
        ("1 < 2 == true", boolean(true)),
        // Index and property access.
        ("matrix['os']", Value::from("linux")),
        ("matrix.OS", Value::from("linux")),
        ("matrix.versions[1]", Value::from(2)),
        ("matrix.versions[1.9]", Value::from(2)),
        ("matrix.versions['2']", Value::from(3)),
        ("matrix.versions[3]", Value::Null),
        ("matrix.missing.deeper", Value::Null),
        ("github.event.labels[0].name", Value::from("bug")),
        // Object filters.
        ("github.event.labels.*.name", Value::Array(vec![Value::from("bug"), Value::from("ci")])),
        ("matrix.nested.*.x", Value::Array(vec![Value::from(1), Value::from(2)])),
        ("matrix.versions[*]", Value::Array(vec![Value::from(1), Value::from(2), Value::from(3)])),
        ("matrix.os.*", Value::Array(vec![])),
        // Not.
        ("!env.EMPTY", boolean(true)),
        ("!matrix", boolean(false)),
        // Comparisons.
        ("1 < 2", boolean(true)),
        ("2 <= 2", boolean(true)),
        ("3 > 2", boolean(true)),
        ("2 >= 3", boolean(false)),
        ("'abc' == 'ABC'", boolean(true)),
        ("'abc' != 'abd'", boolean(true)),
        ("env.NUMBER == 42", boolean(true)),
        ("env.NUMBER > 41.5", boolean(true)),
        ("null >= null", boolean(true)),
        ("null > null", boolean(false)),
        // && and || return an operand, not a boolean.
        ("env.EMPTY || 'default'", Value::from("default")),
        ("github.ref && 'set'", Value::from("set")),
        ("env.EMPTY && 'never'", Value::from("")),
        ("0 || null", Value::Null),
    ]);
}

#[test]
fn short_circuit_skips_the_unevaluated_operands() {
    // The right-hand sides would fail if evaluated.
    assert_results(&[
        ("false && fromJSON('not json')", boolean(false)),
        ("true || format('{')", boolean(true)),
        ("case(true, 1, fromJSON('[]')) == 1", boolean(true)),
    ]);
}

/// The coercion table of GitHub's documentation: how each kind converts to a number for `==` and the ordering
/// operators, plus its notes on NaN, objects and strings.
#[test]
fn documented_coercion_table() {
    assert_results(&[
        // Null → 0.
        ("null == 0", boolean(true)),
        ("null < 1", boolean(true)),
        // Boolean → true is 1, false is 0.
        ("true == 1", boolean(true)),
        ("false == 0", boolean(true)),
        ("true > false", boolean(true)),
        // String → parsed from any legal JSON number format (and hex/octal), the empty string is 0, else NaN.
        ("'' == 0", boolean(true)),
        ("' 1.5e1 ' == 15", boolean(true)),
        ("'0x10' == 16", boolean(true)),
        ("'abc' == 0", boolean(false)),
        ("'abc' != 'abc' == false", boolean(true)),
        // Array and Object → NaN.
        ("matrix.versions == 0", boolean(false)),
        ("matrix == matrix", boolean(true)),
        ("matrix.nested.a == matrix.nested.b", boolean(false)),
        ("fromJSON('{}') == fromJSON('{}')", boolean(false)),
        // NaN is not equal to anything, including NaN; it never orders.
        ("NaN == NaN", boolean(false)),
        ("NaN < 1 || NaN >= 1", boolean(false)),
        // Strings compare without regard to case; mixed string and boolean convert both to numbers.
        ("'TRUE' == true", boolean(false)),
        ("'1' == true", boolean(true)),
        ("env.FLAG == 'True'", boolean(true)),
    ]);
}

#[test]
fn functions() {
    assert_results(&[
        ("contains(github.event.labels.*.name, 'CI')", boolean(true)),
        ("contains('Hello world', 'WORLD')", boolean(true)),
        ("contains(matrix.versions, '2')", boolean(true)),
        ("contains(matrix, 'os')", boolean(false)),
        ("startsWith(github.ref, 'refs/HEADS/')", boolean(true)),
        ("endsWith(github.ref, '/main')", boolean(true)),
        ("format('{0}-{1}-{0}', 'a', 1.50)", Value::from("a-1.5-a")),
        ("format('{{{0}}}', 'x')", Value::from("{x}")),
        ("join(matrix.versions)", Value::from("1,2,3")),
        ("join(matrix.versions, ' + ')", Value::from("1 + 2 + 3")),
        ("join('solo', '-')", Value::from("solo")),
        ("toJSON(matrix.versions)", Value::from("[\n  1,\n  2,\n  3\n]")),
        ("toJSON(matrix.nested.*.x)", Value::from("[\n  1,\n  2\n]")),
        ("fromJSON('{\"a\": [1, {\"b\": null}]}').a[1]", Value::Object([("b", Value::Null)].into_iter().collect())),
        ("fromJSON(env.NUMBER) == 42", boolean(true)),
        (
            "case(github.event_name == 'pull_request', 'pr', github.event_name == 'push', 'push', 'other')",
            Value::from("push"),
        ),
        ("TOJSON(true)", Value::from("true")),
    ]);
}

/// A host that records `hashFiles` calls and reports a fixed status.
struct FakeHost {
    status: JobStatus,
    hash_calls: RefCell<Vec<Vec<String>>>,
}

impl Host for FakeHost {
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        self.hash_calls.borrow_mut().push(patterns.to_vec());
        if patterns.iter().any(|pattern| pattern.contains("unreadable")) {
            return Err("permission denied".to_owned());
        }
        Ok(format!("hash-of-{}", patterns.join("+")))
    }

    fn status(&self) -> JobStatus {
        self.status
    }
}

#[test]
fn host_functions_use_the_host() {
    let host = FakeHost { status: JobStatus::Failure, hash_calls: RefCell::new(Vec::new()) };
    let contexts = contexts();
    let options = ParseOptions::default();
    let run =
        |source: &str| Expression::parse(source, &options).and_then(|expression| expression.evaluate(&contexts, &host));

    assert_eq!(
        run("hashFiles('**/*.lock', format('{0}/x', matrix.os))").ok(),
        Some(Value::from("hash-of-**/*.lock+linux/x"))
    );
    assert_eq!(*host.hash_calls.borrow(), vec![vec!["**/*.lock".to_owned(), "linux/x".to_owned()]]);
    assert_eq!(run("failure() && !success() && !cancelled() && always()").ok(), Some(boolean(true)));

    let error = run("hashFiles('unreadable')").expect_err("the host fails");
    assert_eq!(error.category(), ErrorCategory::Evaluation);
    expect![[r#"
        hashFiles('unreadable') failed: permission denied. Located at position 1 within expression: hashFiles('unreadable')
          help: check that the patterns are relative to the workspace and the files are readable"#]]
    .assert_eq(&error.to_string());

    // Where the options leave them out, these functions do not exist.
    let restricted = ParseOptions::default().status_functions(false).hash_files(false);
    let error = Expression::parse("success() || hashFiles('x')", &restricted).expect_err("success is unavailable");
    assert!(matches!(error, ExpressionError::UnrecognizedFunction { ref name, .. } if name == "success"), "{error}");
}

#[test]
fn error_positions_and_messages() {
    let cases: &[(&str, ErrorCategory, usize)] = &[
        ("1 = 2", ErrorCategory::Lexing, 3),
        ("github.ref == 'x", ErrorCategory::Lexing, 15),
        ("github.", ErrorCategory::Parsing, 7),
        ("(1 + 2)", ErrorCategory::Lexing, 4),
        ("contains(1)", ErrorCategory::Parsing, 1),
        ("a == 1", ErrorCategory::Parsing, 1),
        ("  github.ref == vars", ErrorCategory::Parsing, 17),
        ("format('{0}')", ErrorCategory::Evaluation, 1),
        ("1 == fromJSON('{')", ErrorCategory::Evaluation, 6),
        ("'x'[0]", ErrorCategory::Parsing, 4),
        ("length(github)", ErrorCategory::Parsing, 1),
    ];
    for (expression, category, column) in cases {
        let error = evaluate(expression).expect_err(expression);
        assert_eq!(
            (error.category(), error.position().map(|position| position.column)),
            (*category, Some(*column)),
            "{expression}: {error}"
        );
    }

    let error = evaluate("github.ref = 'main'").expect_err("single equals");
    expect![[r#"
        Unexpected symbol: '='. Located at position 12 within expression: github.ref = 'main'
          help: compare with '==' (a single '=' is not an operator)"#]]
    .assert_eq(&error.to_string());

    let error = evaluate("secrets.TOKEN").expect_err("secrets are not in the contexts");
    expect![[r#"
        Unrecognized named-value: 'secrets'. Located at position 1 within expression: secrets.TOKEN
          help: the contexts available here are: github, env, matrix, steps; a string needs quotes ('text'), a function call needs parentheses"#]]
    .assert_eq(&error.to_string());

    let error = evaluate("github.ref && success").expect_err("a function without parentheses");
    expect![[r#"
        Unrecognized named-value: 'success'. Located at position 15 within expression: github.ref && success
          help: 'success' is a function; call it with parentheses: success()"#]]
    .assert_eq(&error.to_string());

    let error = evaluate("join()").expect_err("too few arguments");
    expect![[r#"
        Too few parameters supplied: 'join'. Located at position 1 within expression: join()
          help: join() takes 1 or 2 arguments; 0 supplied"#]]
    .assert_eq(&error.to_string());

    let error = evaluate("toJson(github) ==").expect_err("incomplete");
    expect![[r#"
        Unexpected end of expression: '=='. Located at position 16 within expression: toJson(github) ==
          help: the expression stops after '=='; add the missing operand or closing ')'"#]]
    .assert_eq(&error.to_string());

    let error = evaluate("format('{0:x}', 1)").expect_err("specifiers");
    expect![[r#"
        The format specifiers 'x' are not valid for objects of type 'Number'. Located at position 1 within expression: format('{0:x}', 1)
          help: write the placeholder without specifiers, e.g. {0}"#]]
    .assert_eq(&error.to_string());

    // The position counts characters from the start of the whole expression, across lines.
    let error = evaluate("github.ref == 'é'\n&& nope").expect_err("unknown name");
    let position = error.position().expect("has a position");
    assert_eq!((position.column, position.byte_offset), (22, 22));
}

#[test]
fn expression_length_limit() {
    let long = format!("'{}'", "x".repeat(21_000));
    let error = evaluate(&long).expect_err("too long");
    assert!(matches!(error, ExpressionError::MaxLengthExceeded { limit: 21_000, length: 21_002 }), "{error}");
    assert!(evaluate(&format!("'{}'", "x".repeat(20_998))).is_ok());
}

#[test]
fn depth_limit_ends_deep_nesting_without_overflowing_the_stack() {
    for expression in [
        format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000)),
        format!("{}true", "!".repeat(20_000)),
        format!("{}1{}", "format(".repeat(2_500), ")".repeat(2_500)),
        format!("matrix{}", ".a".repeat(5_000)),
    ] {
        let error = evaluate(&expression).expect_err("too deep");
        assert!(matches!(error, ExpressionError::MaxDepthExceeded { limit: 50, .. }), "{error}");
    }
}

#[test]
fn raised_depth_limits_are_capped_and_fit_a_small_thread_stack() {
    let options = ParseOptions::default().limits(Limits { max_depth: 100_000, ..Limits::GITHUB });
    let nested = |levels: usize| format!("{}1{}", "format(".repeat(levels), ")".repeat(levels));
    let (deepest, too_deep) = (nested(199), nested(250));
    // Test threads get 2 MiB of stack; the deepest accepted expression must parse and evaluate within that.
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let deepest_result = Expression::parse(&deepest, &options)
                .and_then(|expression| expression.evaluate(&Object::new(), &NoHost));
            let too_deep_error = Expression::parse(&too_deep, &options).expect_err("deeper than the cap");
            (deepest_result, too_deep_error)
        })
        .expect("thread starts")
        .join()
        .expect("no stack overflow");
    assert_eq!(outcome.0.ok(), Some(Value::from("1")));
    assert!(matches!(outcome.1, ExpressionError::MaxDepthExceeded { limit: 200, .. }), "{}", outcome.1);
}

#[test]
fn long_flat_chains_are_fine() {
    // GitHub does not count comparison chains toward the depth limit; evaluating them must not recurse deeply.
    // (2 == 2) is true, true == 2 is false (true is 1), and false == 2 stays false.
    let equality_chain = format!("2{}", " == 2".repeat(4_000));
    assert_eq!(evaluate(&equality_chain).ok(), Some(boolean(false)));
    let or_chain = format!("0{}", " || 0".repeat(4_000));
    assert_eq!(evaluate(&or_chain).ok(), Some(Value::from(0)));
}

#[test]
fn memory_limit_stops_runaway_strings() {
    // Each level multiplies the length by eight: without a limit this would need petabytes.
    let mut expression = "'0123456789'".to_owned();
    for _ in 0..20 {
        expression = format!("format('{{0}}{{0}}{{0}}{{0}}{{0}}{{0}}{{0}}{{0}}', {expression})");
    }
    let error = evaluate(&expression).expect_err("too much memory");
    assert!(matches!(error, ExpressionError::MemoryLimitExceeded { limit_bytes: 1_048_576, .. }), "{error}");
    assert_eq!(error.category(), ErrorCategory::Evaluation);

    // A string just under the limit is fine: 26 + 2 × 500,000 bytes.
    assert!(evaluate(&format!("format('{}')", "x".repeat(20_000))).is_ok());
}

#[test]
fn step_limit_stops_large_filters() {
    let items: Vec<Value> = (0..1_000).map(Value::from).collect();
    let contexts: Object = [("big", Value::Array(items))].into_iter().collect();
    let options =
        ParseOptions::with_named_values(["big"]).limits(Limits { max_evaluation_steps: 500, ..Limits::GITHUB });
    let run = |source: &str| {
        Expression::parse(source, &options).and_then(|expression| expression.evaluate(&contexts, &NoHost))
    };
    for source in ["big.*", "contains(big, 999)", "join(big)", "toJSON(big)"] {
        let error = run(source).expect_err(source);
        assert!(matches!(error, ExpressionError::StepLimitExceeded { limit: 500, .. }), "{source}: {error}");
    }
    assert_eq!(run("big[999]").ok(), Some(Value::from(999)));
}

#[test]
fn empty_expression_is_null_and_contexts_may_be_absent() {
    assert_eq!(evaluate("").ok(), Some(Value::Null));
    assert_eq!(evaluate("   ").ok(), Some(Value::Null));
    let options = ParseOptions::default();
    let expression = Expression::parse("inputs.name || 'none'", &options).expect("parses");
    assert_eq!(expression.evaluate(&Object::new(), &NoHost).ok(), Some(Value::from("none")));
}
