//! Loading YAML text into a small positioned tree, enforcing the resource limits (file size, nesting depth,
//! alias expansion, node count) so that hostile input is refused quickly instead of exhausting memory or stack.
//!
//! saphyr's loader expands aliases by copying the anchored node, within a budget of 100,000 copied nodes, which
//! refuses a billion-laughs file after a bounded amount of work. It stops at the first duplicate key, so only the
//! first duplicate of a file is reported.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use crate::error::{ErrorKind, Position, WorkflowError};

/// The largest workflow file accepted, in bytes. GitHub documents no exact figure; 512 KiB is far above any real
/// workflow and keeps parsing cheap.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// How deeply YAML collections may nest.
pub const MAX_DEPTH: usize = 64;
/// How many YAML nodes a file may have after aliases are expanded.
pub const MAX_NODES: usize = 100_000;
/// The cheap textual pre-check refuses files whose estimated nesting exceeds this. The estimate over-counts, so
/// the bound is a multiple of [`MAX_DEPTH`]; its purpose is only to keep the loader's recursive structures
/// shallow enough that building and dropping them cannot overflow the stack.
const MAX_ESTIMATED_DEPTH: usize = 4 * MAX_DEPTH;

/// A YAML node with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub position: Position,
    pub data: NodeData,
}

/// The content of a YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeData {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    /// Keys are scalars converted to text, in the order they were written.
    Mapping(Vec<(String, Position, Node)>),
}

impl Node {
    /// The scalar as text (`true`, `3`, `text`); `None` for null and collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.data {
            NodeData::Bool(value) => Some(value.to_string()),
            NodeData::Integer(value) => Some(value.to_string()),
            NodeData::Float(value) => Some(baton_expr::Value::Number(*value).to_display_string()),
            NodeData::String(value) => Some(value.clone()),
            NodeData::Null | NodeData::Sequence(_) | NodeData::Mapping(_) => None,
        }
    }

    /// The node as an expression-language value.
    pub fn to_value(&self) -> baton_expr::Value {
        use baton_expr::Value;
        match &self.data {
            NodeData::Null => Value::Null,
            NodeData::Bool(value) => Value::Bool(*value),
            NodeData::Integer(value) => Value::Number(*value as f64),
            NodeData::Float(value) => Value::Number(*value),
            NodeData::String(value) => Value::String(value.clone()),
            NodeData::Sequence(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            NodeData::Mapping(entries) => {
                let mut object = baton_expr::Object::new();
                for (key, _, value) in entries {
                    object.insert(key.clone(), value.to_value());
                }
                Value::Object(object)
            }
        }
    }

    /// A short name of the node's type for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.data {
            NodeData::Null => "null",
            NodeData::Bool(_) => "a boolean",
            NodeData::Integer(_) | NodeData::Float(_) => "a number",
            NodeData::String(_) => "a string",
            NodeData::Sequence(_) => "a sequence",
            NodeData::Mapping(_) => "a mapping",
        }
    }
}

/// Loads the single YAML document of a workflow file.
pub fn load(file: &str, text: &str) -> Result<Node, WorkflowError> {
    let whole_file = Position::default();
    if text.len() > MAX_FILE_BYTES {
        return Err(WorkflowError::at(
            file,
            whole_file,
            ErrorKind::Limit,
            format!("the file is {} bytes, more than the limit of {MAX_FILE_BYTES} bytes", text.len()),
            "split the workflow into smaller workflows",
        ));
    }
    if let Some(line) = too_deep_line(text) {
        return Err(WorkflowError::at(
            file,
            Position { line, column: 1 },
            ErrorKind::Limit,
            format!("YAML nesting is deeper than the limit of {MAX_DEPTH} levels"),
            "flatten the structure",
        ));
    }
    let documents = MarkedYaml::load_from_str(text).map_err(|error| scan_error(file, &error))?;
    let mut documents = documents.into_iter();
    let Some(document) = documents.next() else {
        return Err(WorkflowError::at(
            file,
            whole_file,
            ErrorKind::Yaml,
            "the file is empty",
            "write a workflow with `on:` and `jobs:`",
        ));
    };
    if let Some(second) = documents.next() {
        return Err(WorkflowError::at(
            file,
            marker_position(&second),
            ErrorKind::Yaml,
            "the file has more than one YAML document",
            "remove the `---` separator and everything after it",
        ));
    }
    let mut budget = MAX_NODES;
    convert(file, &document, 0, &mut budget)
}

fn scan_error(file: &str, error: &saphyr::ScanError) -> WorkflowError {
    let marker = error.marker();
    let position = Position { line: marker.line(), column: marker.col() + 1 };
    let info = error.info();
    if info.contains("duplicated key") {
        WorkflowError::at(
            file,
            position,
            ErrorKind::DuplicateKey,
            "duplicate key in mapping",
            "each key may appear only once in a mapping; remove or rename one of them",
        )
    } else if info.contains("alias expansion") {
        WorkflowError::at(
            file,
            position,
            ErrorKind::Limit,
            "YAML aliases expand to too many nodes",
            "write the values out instead of repeating large anchors with aliases",
        )
    } else if info.contains("recursion limit") {
        WorkflowError::at(
            file,
            position,
            ErrorKind::Limit,
            format!("YAML nesting is deeper than the limit of {MAX_DEPTH} levels"),
            "flatten the structure",
        )
    } else {
        WorkflowError::at(file, position, ErrorKind::Yaml, format!("invalid YAML: {info}"), "fix the YAML syntax")
    }
}

/// The type name of a YAML core-schema tag (`str` for `!!str`), which saphyr reports either with the
/// `tag:yaml.org,2002:` handle or as a suffix carrying the whole URI.
fn core_schema_type(tag: &saphyr::Tag) -> Option<&str> {
    const CORE_SCHEMA: &str = "tag:yaml.org,2002:";
    if tag.handle == CORE_SCHEMA || tag.handle == "!!" {
        return Some(tag.suffix.as_str());
    }
    if tag.handle.is_empty() { tag.suffix.strip_prefix(CORE_SCHEMA) } else { None }
}

fn marker_position(node: &MarkedYaml<'_>) -> Position {
    Position { line: node.span.start.line(), column: node.span.start.col() + 1 }
}

/// Estimates, line by line, an upper bound of the nesting depth, and returns the first line whose estimate
/// exceeds [`MAX_ESTIMATED_DEPTH`]. Block structure nests through indentation, and a line can open several
/// levels at once with leading `- `, `? `, `[` and `{` indicators, so each line is charged the depth of the
/// closest less-indented line plus its own indicators. Flow collections spanning lines are capped separately by
/// the YAML scanner.
fn too_deep_line(text: &str) -> Option<usize> {
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        while stack.last().is_some_and(|(open_indent, _)| *open_indent >= indent) {
            stack.pop();
        }
        let parent_depth = stack.last().map_or(0, |(_, depth)| *depth);
        let depth = parent_depth + 2 + leading_indicators(content);
        if depth > MAX_ESTIMATED_DEPTH {
            return Some(index + 1);
        }
        stack.push((indent, depth));
    }
    None
}

/// Counts the collection indicators at the start of a line's content, plus one when the line holds a mapping.
fn leading_indicators(content: &str) -> usize {
    let bytes = content.as_bytes();
    let mut count = 0;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'[' | b'{' => count += 1,
            b'-' | b'?' if bytes.get(index + 1).is_none_or(|next| *next == b' ') => count += 1,
            b' ' | b'\t' => {}
            _ => break,
        }
        index += 1;
    }
    if content.contains(": ") || content.ends_with(':') {
        count += 1;
    }
    count
}

fn convert(file: &str, node: &MarkedYaml<'_>, depth: usize, budget: &mut usize) -> Result<Node, WorkflowError> {
    let position = marker_position(node);
    if depth > MAX_DEPTH {
        return Err(WorkflowError::at(
            file,
            position,
            ErrorKind::Limit,
            format!("YAML nesting is deeper than the limit of {MAX_DEPTH} levels"),
            "flatten the structure",
        ));
    }
    if *budget == 0 {
        return Err(WorkflowError::at(
            file,
            position,
            ErrorKind::Limit,
            format!("the file has more than {MAX_NODES} YAML nodes"),
            "split the workflow into smaller workflows",
        ));
    }
    *budget -= 1;
    let data = match &node.data {
        YamlData::Value(scalar) => match scalar {
            Scalar::Null => NodeData::Null,
            Scalar::Boolean(value) => NodeData::Bool(*value),
            Scalar::Integer(value) => NodeData::Integer(*value),
            Scalar::FloatingPoint(value) => NodeData::Float(value.into_inner()),
            Scalar::String(value) => NodeData::String(value.to_string()),
        },
        YamlData::Representation(text, _, _) => NodeData::String(text.to_string()),
        YamlData::Sequence(items) => NodeData::Sequence(
            items.iter().map(|item| convert(file, item, depth + 1, budget)).collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(entries) => {
            let mut converted = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let key_position = marker_position(key);
                let key_node = convert(file, key, depth + 1, budget)?;
                let Some(key_text) = key_node.scalar_text() else {
                    return Err(WorkflowError::at(
                        file,
                        key_position,
                        ErrorKind::Yaml,
                        format!("a mapping key must be a string, not {}", key_node.type_name()),
                        "write a plain string key",
                    ));
                };
                converted.push((key_text, key_position, convert(file, value, depth + 1, budget)?));
            }
            NodeData::Mapping(converted)
        }
        YamlData::Tagged(tag, inner) if core_schema_type(tag).is_some() => {
            // A core-schema tag (`!!str`, `!!seq`, ...) on a quoted or block scalar or a collection changes
            // nothing Baton cares about, except that `!!str` makes the value a string.
            let converted = convert(file, inner, depth, budget)?;
            match (core_schema_type(tag), converted.scalar_text()) {
                (Some("str"), Some(text)) => NodeData::String(text),
                _ => converted.data,
            }
        }
        YamlData::Tagged(tag, _) => {
            return Err(WorkflowError::at(
                file,
                position,
                ErrorKind::Yaml,
                format!("the YAML tag `{}{}` is not supported", tag.handle, tag.suffix),
                "remove the tag and write the value plainly",
            ));
        }
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(WorkflowError::at(
                file,
                position,
                ErrorKind::Yaml,
                "invalid YAML value: a value that does not match its explicit tag (such as `!!int x` or an empty \
                 `!!null`), or an unknown alias",
                "remove the tag, or write a value of the tagged type",
            ));
        }
    };
    Ok(Node { position, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_estimate_passes_ordinary_files_and_stops_compact_nesting() {
        let ordinary =
            "on: push\njobs:\n  a:\n    steps:\n      - run: |\n          if [ -f x ]; then\n            echo\n";
        assert_eq!(too_deep_line(ordinary), None);
        let compact = format!("x:\n{}y\n", "- ".repeat(300));
        assert_eq!(too_deep_line(&compact), Some(2));
    }

    #[test]
    fn scalars_convert_to_text() {
        let node = load("f.yml", "a: 1.50\nb: true\nc: !!str 012\n").unwrap_or_else(|error| panic!("{error}"));
        let NodeData::Mapping(entries) = node.data else { panic!("not a mapping") };
        let texts: Vec<Option<String>> = entries.iter().map(|(_, _, value)| value.scalar_text()).collect();
        assert_eq!(texts, [Some("1.5".to_owned()), Some("true".to_owned()), Some("012".to_owned())]);
    }
}
