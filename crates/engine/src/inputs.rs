//! `workflow_dispatch` inputs: the strings a user gives, checked and typed as the workflow declares.

use std::collections::BTreeMap;

use baton_expr::{Object, Value};
use baton_workflow::{InputType, Workflow};

/// Largest value of one input, in bytes.
pub const INPUT_BYTES_MAX: usize = 64 * 1024;

/// Checks `given` against the workflow's `workflow_dispatch` inputs and returns the `inputs`
/// context: every declared input, typed (`boolean` and `number` inputs are a boolean and a
/// number), defaults filled in. Every problem is reported, each saying what to give instead.
pub fn typed_inputs(workflow: &Workflow, given: &BTreeMap<String, String>) -> Result<Object, Vec<String>> {
    let declared: Vec<_> = workflow
        .on
        .events
        .iter()
        .filter(|trigger| trigger.event == "workflow_dispatch")
        .flat_map(|trigger| trigger.inputs.iter())
        .collect();
    let mut problems = Vec::new();
    for name in given.keys() {
        if !declared.iter().any(|input| &input.name == name) {
            let names: Vec<&str> = declared.iter().map(|input| input.name.as_str()).collect();
            problems.push(if names.is_empty() {
                format!("unknown input `{name}`: the workflow declares no workflow_dispatch inputs")
            } else {
                format!("unknown input `{name}`: the workflow declares {}", names.join(", "))
            });
        }
    }
    let mut inputs = Object::new();
    for input in declared {
        let name = &input.name;
        let value = match (given.get(name), &input.default) {
            (Some(text), _) if text.len() > INPUT_BYTES_MAX => {
                problems.push(format!("input `{name}` is over {INPUT_BYTES_MAX} bytes"));
                continue;
            }
            (Some(text), _) => typed(input.input_type, text),
            (None, Some(default)) => match (input.input_type, default) {
                (_, Value::String(text)) => typed(input.input_type, text),
                (_, other) => Ok(other.clone()),
            },
            (None, None) if input.required => {
                problems.push(format!("input `{name}` is required: give it with --input {name}=VALUE"));
                continue;
            }
            (None, None) => Ok(match input.input_type {
                InputType::Boolean => Value::Bool(false),
                _ => Value::String(String::new()),
            }),
        };
        match value {
            Ok(value) => {
                if input.input_type == InputType::Choice
                    && let Value::String(text) = &value
                    && !input.options.iter().any(|option| option == text)
                {
                    problems.push(format!("input `{name}` must be one of {}, not {text:?}", input.options.join(", ")));
                    continue;
                }
                inputs.insert(name.clone(), value);
            }
            Err(problem) => problems.push(format!("input `{name}`: {problem}")),
        }
    }
    if problems.is_empty() { Ok(inputs) } else { Err(problems) }
}

fn typed(input_type: InputType, text: &str) -> Result<Value, String> {
    match input_type {
        InputType::Boolean => match text.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            other => Err(format!("{other:?} is not a boolean; give true or false")),
        },
        InputType::Number => match text.trim().parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(Value::Number(number)),
            _ => Err(format!("{text:?} is not a number")),
        },
        InputType::String | InputType::Choice | InputType::Environment => Ok(Value::String(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str = "on:\n  workflow_dispatch:\n    inputs:\n      name:\n        required: true\n      \
                            debug:\n        type: boolean\n        default: false\n      count:\n        type: number\n        \
                            default: 3\n      level:\n        type: choice\n        options: [low, high]\n        \
                            default: low\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n";

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn inputs_are_typed_and_defaulted() {
        let workflow = baton_workflow::parse_workflow("w.yml", WORKFLOW).expect("valid");
        let inputs = typed_inputs(&workflow, &given(&[("name", "x"), ("debug", "true")])).expect("valid inputs");
        assert_eq!(inputs.get("name"), Some(&Value::from("x")));
        assert_eq!(inputs.get("debug"), Some(&Value::Bool(true)));
        assert_eq!(inputs.get("count"), Some(&Value::Number(3.0)));
        assert_eq!(inputs.get("level"), Some(&Value::from("low")));
    }

    #[test]
    fn bad_inputs_are_each_reported() {
        let workflow = baton_workflow::parse_workflow("w.yml", WORKFLOW).expect("valid");
        let problems =
            typed_inputs(&workflow, &given(&[("debug", "yes"), ("count", "many"), ("level", "mid"), ("nope", "1")]))
                .expect_err("invalid inputs");
        assert_eq!(
            problems,
            [
                "unknown input `nope`: the workflow declares name, debug, count, level",
                "input `name` is required: give it with --input name=VALUE",
                "input `debug`: \"yes\" is not a boolean; give true or false",
                "input `count`: \"many\" is not a number",
                "input `level` must be one of low, high, not \"mid\"",
            ]
        );
    }
}
