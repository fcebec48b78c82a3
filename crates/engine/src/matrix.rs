//! Matrices that depend on expressions (`${{ fromJSON(needs.setup.outputs.matrix) }}`): evaluated
//! once the job's needs are done, then expanded exactly like a matrix written out in YAML.

use baton_expr::{Object, ParseOptions, Value};
use baton_workflow::{LiteralMatrix, Matrix, Position};

/// Evaluates a deferred matrix and expands it into its combinations.
pub(crate) fn evaluate(value: &Value, options: &ParseOptions, contexts: &Object) -> Result<Vec<Object>, String> {
    let evaluated = evaluate_strings(value, options, contexts)?;
    let Value::Object(entries) = evaluated else {
        return Err(format!("strategy.matrix must evaluate to a mapping of vectors, not {}", evaluated.kind().name()));
    };
    let mut matrix =
        LiteralMatrix { vectors: Vec::new(), include: Vec::new(), exclude: Vec::new(), position: Position::default() };
    for (key, value) in entries.iter() {
        match (key, value) {
            ("include" | "exclude", Value::Array(items)) => {
                let mut objects = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Object(object) = item else {
                        return Err(format!("strategy.matrix.{key} must be a list of mappings"));
                    };
                    objects.push(object.clone());
                }
                if key == "include" {
                    matrix.include = objects;
                } else {
                    matrix.exclude = objects;
                }
            }
            ("include" | "exclude", Value::Null) => {}
            ("include" | "exclude", _) => return Err(format!("strategy.matrix.{key} must be a list of mappings")),
            (_, Value::Array(items)) => matrix.vectors.push((key.to_owned(), items.clone())),
            (_, other) => {
                return Err(format!("strategy.matrix.{key} must be a list, not {}", other.kind().name()));
            }
        }
    }
    if matrix.vectors.is_empty() && matrix.include.is_empty() {
        return Err("strategy.matrix evaluated to no combinations; give at least one vector or include entry".into());
    }
    baton_workflow::expand_matrix(&Matrix::Literal(matrix))
        .map_err(|error| format!("strategy.matrix: {}; {}", error.message, error.hint))
}

/// Evaluates every template string in `value`, at any depth.
fn evaluate_strings(value: &Value, options: &ParseOptions, contexts: &Object) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) if text.contains("${{") => {
            baton_expr::evaluate_template(text, options, contexts, &baton_expr::NoHost)
                .map_err(|error| format!("strategy.matrix: {error}"))?
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| evaluate_strings(item, options, contexts)).collect::<Result<_, _>>()?)
        }
        Value::Object(entries) => {
            let mut out = Object::new();
            for (key, item) in entries.iter() {
                out.insert(key, evaluate_strings(item, options, contexts)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}
