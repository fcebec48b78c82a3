//! Differential test against GitHub's own implementation, the npm package `@actions/expressions`: generates
//! random expressions, evaluates them in both, and compares result kinds and JSON forms, or error kinds and
//! positions.
//!
//! Opt-in, because it needs Node.js and the package: install it with `npm install @actions/expressions` in some
//! directory and set `BATON_ACTIONS_EXPRESSIONS_DIR` to that directory. Without the variable the test prints a
//! note and passes. `BATON_DIFFERENTIAL_CASES` sets the number of cases (default 5,000).
//!
//! Two deliberate differences are kept out of the generated expressions: characters whose upper case is more
//! than one character (`ß`), which GitHub's runner compares like .NET (`'ß' != 'SS'`) and the TypeScript package
//! like JavaScript (`'ß' == 'SS'`); and the dotless `ı` inside `contains`, which the TypeScript package lower-cases.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use baton_expr::{ErrorCategory, Expression, NoHost, Object, ParseOptions, Value};

/// Evaluates JSON lines `{"expr", "contexts"}` with `@actions/expressions` and prints one JSON line per case.
const NODE_SCRIPT: &str = r#"
import * as readline from "node:readline";
import { pathToFileURL } from "node:url";
const root = process.env.BATON_ACTIONS_EXPRESSIONS_DIR + "/node_modules/@actions/expressions/dist/";
const load = (file) => import(pathToFileURL(root + file).href);
const { Lexer, Parser, Evaluator, data } = await load("index.js");
const { reviver } = await load("data/reviver.js");
const { replacer } = await load("data/replacer.js");
const { kindStr } = await load("data/expressiondata.js");
for await (const line of readline.createInterface({ input: process.stdin })) {
  const { expr, contexts } = JSON.parse(line);
  const ctx = JSON.parse(JSON.stringify(contexts), reviver);
  let out;
  try {
    const tree = new Parser(new Lexer(expr).lex().tokens, ctx.pairs().map(p => p.key), []).parse();
    const result = tree === undefined ? new data.Null() : new Evaluator(tree, ctx).evaluate();
    out = { kind: kindStr(result.kind), json: JSON.stringify(result, replacer, 2) };
  } catch (e) {
    const message = String(e.message);
    const located = /Located at position (\d+)/.exec(message);
    const position = located ? Number(located[1]) : (e.pos !== undefined ? e.pos.column + 1 : null);
    out = { error: message.split(":")[0].split(".")[0], position };
  }
  console.log(JSON.stringify(out));
}
"#;

const CONTEXTS: &str = r#"{"ctx": {"num": 1.5, "zero": 0, "str": "Hello", "empty": "", "numstr": " 0x1F ",
    "arr": [1, "two", null, true, {"a": 1}], "obj": {"Key": "v", "nested": {"x": [1, 2]}},
    "objs": [{"name": "a", "v": 1}, {"name": "B", "v": 2}, {"v": 3}], "big": 1e21, "small": 1e-7, "frac": 0.1,
    "strs": ["A", "b", "c"]}}"#;

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "0.5",
    ".5",
    "1e3",
    "1.5e-7",
    "0x1f",
    "0o17",
    "NaN",
    "Infinity",
    "-Infinity",
    "123456789012345680000",
    "0.1",
    "3.14159265358979323",
    "1e21",
    "2.5e-5",
    "0.000015258789063",
    "1.0000152587890625",
    "-0",
    "1e15",
    "1e16",
    "99999999999999.99",
    "0.30000000000000004",
    "5e-324",
    "1e-7",
    "4.35",
];
const STRINGS: &[&str] = &[
    "'abc'",
    "'ABC'",
    "''",
    "' 1 '",
    "'0x10'",
    "'é'",
    "'É'",
    "'{0}'",
    "'a''b'",
    "'😊'",
    "'\u{FF21}'",
    "'HELLO'",
    "'two'",
    "'1.5'",
    "'true'",
    "'null'",
    "' '",
    "'Array'",
    "'Object'",
    "'{{'",
    "'}}'",
    "'{0}{1}'",
    "'σ'",
    "'Σ'",
];
const PATHS: &[&str] = &[
    "ctx.num",
    "ctx.zero",
    "ctx.str",
    "ctx.empty",
    "ctx.numstr",
    "ctx.arr",
    "ctx.arr[1]",
    "ctx.arr[*]",
    "ctx.obj",
    "ctx.obj.key",
    "ctx.obj.*",
    "ctx.objs.*.name",
    "ctx.objs[*].v",
    "ctx.missing",
    "ctx['str']",
    "ctx.arr[ctx.num]",
    "ctx.big",
    "ctx.small",
    "ctx.frac",
    "ctx.strs",
    "ctx.strs.*",
    "ctx.obj.nested.x[1]",
    "ctx.objs[0]",
    "ctx.objs.*",
    "ctx.arr[4].A",
    "ctx.obj.*.x",
    "ctx.arr['1']",
    "ctx.arr[true]",
    "ctx.arr[-1]",
    "ctx.obj[ctx.obj.key]",
];
const OPERATORS: &[&str] = &["==", "!=", "<", "<=", ">", ">=", "&&", "||"];

/// A small deterministic generator (xorshift64), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<'t>(&mut self, items: &[&'t str]) -> &'t str {
        items[self.below(items.len())]
    }
}

fn atom(random: &mut Random) -> String {
    match random.below(20) {
        0..=5 => random.pick(NUMBERS).to_owned(),
        6..=10 => random.pick(STRINGS).to_owned(),
        11..=12 => random.pick(&["null", "true", "false"]).to_owned(),
        _ => random.pick(PATHS).to_owned(),
    }
}

fn expression(random: &mut Random, depth: usize) -> String {
    if depth == 0 {
        return atom(random);
    }
    let choice = random.below(20);
    if choice <= 4 {
        return atom(random);
    }
    let operator = random.pick(OPERATORS);
    let mut inner = || expression(random, depth - 1);
    match choice {
        5..=9 => {
            let (left, right) = (inner(), inner());
            format!("{left} {operator} {right}")
        }
        10 => format!("!{}", inner()),
        11 => format!("({})", inner()),
        12 => format!("format('{{0}}|{{1}}', {}, {})", inner(), inner()),
        13 => format!("join({}, {})", inner(), inner()),
        14 => format!("toJSON({})", inner()),
        15 => format!("fromJSON(toJSON({}))", inner()),
        16 => format!("case({} == {}, {}, {})", inner(), inner(), inner(), inner()),
        17 => format!("contains({}, {})", inner(), inner()),
        18 => format!("startsWith({}, {})", inner(), inner()),
        _ => format!("endsWith({}, {})", inner(), inner()),
    }
}

/// The same JSON line the Node script prints, computed by this crate.
fn evaluate_here(source: &str, contexts: &Object) -> serde_json::Value {
    let options = ParseOptions::with_named_values(contexts.keys()).status_functions(false).hash_files(false);
    match Expression::parse(source, &options).and_then(|expression| expression.evaluate(contexts, &NoHost)) {
        Ok(value) => serde_json::json!({"kind": value.kind().name(), "json": value.to_json_pretty()}),
        Err(error) => {
            let message = error.to_string();
            let first_words = message.split([':', '.']).next().unwrap_or_default().to_owned();
            // TypeScript evaluation errors carry no position.
            let position = match error.category() {
                ErrorCategory::Evaluation => None,
                _ => error.position().map(|position| position.column),
            };
            serde_json::json!({"error": first_words, "position": position})
        }
    }
}

#[test]
fn agrees_with_actions_expressions_when_baton_actions_expressions_dir_is_set() {
    let Some(package_directory) = std::env::var_os("BATON_ACTIONS_EXPRESSIONS_DIR").map(PathBuf::from) else {
        println!("note: BATON_ACTIONS_EXPRESSIONS_DIR is not set; skipping the differential test");
        return;
    };
    let case_count: usize =
        std::env::var("BATON_DIFFERENTIAL_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(5_000);
    let contexts = match Value::from_json_text(CONTEXTS) {
        Ok(Value::Object(object)) => object,
        other => panic!("the contexts must be an object: {other:?}"),
    };
    let contexts_json: serde_json::Value = serde_json::from_str(CONTEXTS).expect("valid JSON");

    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let sources: Vec<String> = (0..case_count)
        .map(|_| {
            let depth = random.below(5);
            expression(&mut random, depth)
        })
        .collect();
    let input: String = sources
        .iter()
        .map(|source| serde_json::json!({"expr": source, "contexts": contexts_json}).to_string() + "\n")
        .collect();

    let mut node = Command::new("node")
        .args(["--input-type=module", "-e", NODE_SCRIPT])
        .env("BATON_ACTIONS_EXPRESSIONS_DIR", &package_directory)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().expect("stdin is piped");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = node.wait_with_output().expect("node finishes");
    writer.join().expect("writer thread finishes").expect("input is written");
    assert!(output.status.success(), "node failed: {:?}", output.status);

    let theirs: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("node prints JSON"))
        .collect();
    assert_eq!(theirs.len(), sources.len(), "node answered every case");

    let differences: Vec<String> = sources
        .iter()
        .zip(&theirs)
        .filter_map(|(source, expected)| {
            let ours = evaluate_here(source, &contexts);
            (&ours != expected)
                .then(|| format!("{source}\n    @actions/expressions: {expected}\n    baton-expr: {ours}"))
        })
        .collect();
    println!("differential: {} of {} cases agree", sources.len() - differences.len(), sources.len());
    assert!(differences.is_empty(), "{} difference(s):\n{}", differences.len(), differences.join("\n"));
}
