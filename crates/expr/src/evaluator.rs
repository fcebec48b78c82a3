//! The evaluator: walks the syntax tree against the contexts and produces a value, charging every intermediate
//! result to the evaluation budget. Operators, property and index access and object filters live here; the
//! functions live in `functions.rs`.

use crate::ast::{ComparisonOperator, Node, NodeKind};
use crate::budget::{BudgetExceeded, EvaluationBudget, VALUE_COST, owned_value_cost, string_cost};
use crate::error::{ExpressionError, SourcePosition};
use crate::functions;
use crate::host::Host;
use crate::options::Limits;
use crate::value::{Object, Value};
use crate::view::{Evaluated, View, loosely_equals, order};

use std::cmp::Ordering;

/// A result together with the bytes it is charged for in the budget.
#[derive(Debug)]
pub(crate) struct Produced<'a> {
    pub(crate) value: Evaluated<'a>,
    pub(crate) cost: usize,
}

/// The state of one evaluation.
pub(crate) struct Evaluator<'a> {
    expression: &'a str,
    contexts: &'a Object,
    pub(crate) host: &'a dyn Host,
    pub(crate) budget: EvaluationBudget,
    limits: Limits,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Evaluator")
            .field("expression", &self.expression)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Where an error happened, kept separately from the evaluator so errors can be built while the budget is
/// borrowed by a string under construction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorSite<'a> {
    pub(crate) expression: &'a str,
    pub(crate) position: SourcePosition,
    pub(crate) limits: Limits,
}

impl ErrorSite<'_> {
    /// An evaluation error with GitHub's message and an optional hint.
    pub(crate) fn error(self, message: impl Into<String>, hint: Option<String>) -> ExpressionError {
        ExpressionError::Evaluation {
            message: message.into(),
            position: self.position,
            expression: self.expression.to_owned(),
            hint,
        }
    }

    /// The error for an exhausted budget.
    pub(crate) fn budget_error(self, exceeded: BudgetExceeded) -> ExpressionError {
        match exceeded {
            BudgetExceeded::Memory => ExpressionError::MemoryLimitExceeded {
                limit_bytes: self.limits.max_memory_bytes,
                position: self.position,
                expression: self.expression.to_owned(),
            },
            BudgetExceeded::Steps => ExpressionError::StepLimitExceeded {
                limit: self.limits.max_evaluation_steps,
                position: self.position,
                expression: self.expression.to_owned(),
            },
        }
    }
}

/// The key of a property or index access, converted as GitHub converts it: a primitive key is also used as a
/// string (`a[1]` reads the property `"1"` of an object), and a key that is a finite non-negative number is
/// also used, rounded down, as an array index (`a['1']` and `a[true]` read element 1 of an array).
#[derive(Debug)]
struct AccessKey {
    text: Option<String>,
    index: Option<usize>,
}

impl AccessKey {
    fn property(name: &str) -> Self {
        Self { text: Some(name.to_owned()), index: None }
    }

    fn from_view(view: View<'_>) -> Self {
        let text = view.is_primitive().then(|| view.to_display_string().into_owned());
        let number = view.to_number();
        // The range check makes the conversion exact after flooring; indexes beyond `usize` cannot exist anyway.
        let index =
            (number.is_finite() && number >= 0.0 && number < usize::MAX as f64).then(|| number.floor() as usize);
        Self { text, index }
    }
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(expression: &'a str, contexts: &'a Object, host: &'a dyn Host, limits: Limits) -> Self {
        Self {
            expression,
            contexts,
            host,
            budget: EvaluationBudget::new(limits.max_memory_bytes, limits.max_evaluation_steps),
            limits,
        }
    }

    /// Where errors about `node` point.
    pub(crate) fn site(&self, node: &Node) -> ErrorSite<'a> {
        ErrorSite { expression: self.expression, position: node.position, limits: self.limits }
    }

    /// Counts `count` evaluation steps for `node`.
    pub(crate) fn step(&mut self, count: usize, node: &Node) -> Result<(), ExpressionError> {
        let site = self.site(node);
        self.budget.step(count).map_err(|exceeded| site.budget_error(exceeded))
    }

    /// Finishes a node: releases what its operands (and any prepaid string building) were charged and charges
    /// the result instead.
    pub(crate) fn produce(
        &mut self,
        value: Evaluated<'a>,
        released_bytes: usize,
        node: &Node,
    ) -> Result<Produced<'a>, ExpressionError> {
        self.budget.release(released_bytes);
        let cost = cost_of(&value);
        let site = self.site(node);
        self.budget.charge(cost).map_err(|exceeded| site.budget_error(exceeded))?;
        Ok(Produced { value, cost })
    }

    /// Evaluates `node`.
    ///
    /// Each kind of node is handled by its own method so that this function, which is on the stack once per
    /// nesting level, keeps a small stack frame.
    pub(crate) fn evaluate(&mut self, node: &'a Node) -> Result<Produced<'a>, ExpressionError> {
        self.step(1, node)?;
        match &node.kind {
            NodeKind::Literal(value) => self.produce(Evaluated::Borrowed(value), 0, node),
            NodeKind::NamedValue(name) => self.evaluate_named_value(name, node),
            NodeKind::Property { target, name } => self.evaluate_property(target, name, node),
            NodeKind::Index { target, index } => self.evaluate_index(target, index, node),
            NodeKind::Filter { target } => self.evaluate_filter(target, node),
            NodeKind::Call { function, arguments, .. } => functions::call(self, *function, arguments, node),
            NodeKind::Not(operand) => self.evaluate_not(operand, node),
            NodeKind::Comparison { first, rest } => self.evaluate_comparison(first, rest, node),
            NodeKind::And(operands) => self.short_circuit(operands, false, node),
            NodeKind::Or(operands) => self.short_circuit(operands, true, node),
        }
    }

    fn evaluate_named_value(&mut self, name: &str, node: &Node) -> Result<Produced<'a>, ExpressionError> {
        // A name the parse options allow but the contexts lack reads as null, like a missing property.
        let value = self.contexts.get(name).map_or(Evaluated::Owned(Value::Null), Evaluated::Borrowed);
        self.produce(value, 0, node)
    }

    fn evaluate_property(
        &mut self,
        target: &'a Node,
        name: &str,
        node: &Node,
    ) -> Result<Produced<'a>, ExpressionError> {
        let target = self.evaluate(target)?;
        self.access(target, &AccessKey::property(name), node)
    }

    fn evaluate_index(
        &mut self,
        target: &'a Node,
        index: &'a Node,
        node: &Node,
    ) -> Result<Produced<'a>, ExpressionError> {
        // GitHub evaluates the index before the target; the order shows when both fail.
        let index = self.evaluate(index)?;
        let key = AccessKey::from_view(index.value.view());
        self.budget.release(index.cost);
        let target = self.evaluate(target)?;
        self.access(target, &key, node)
    }

    fn evaluate_filter(&mut self, target: &'a Node, node: &Node) -> Result<Produced<'a>, ExpressionError> {
        let target = self.evaluate(target)?;
        self.filter(target, node)
    }

    fn evaluate_not(&mut self, operand: &'a Node, node: &Node) -> Result<Produced<'a>, ExpressionError> {
        let operand = self.evaluate(operand)?;
        let result = !operand.value.view().is_truthy();
        self.produce(Evaluated::Owned(Value::Bool(result)), operand.cost, node)
    }

    /// A comparison chain, folded left to right: `3 < 2 < 1` compares `false` with 1.
    fn evaluate_comparison(
        &mut self,
        first: &'a Node,
        rest: &'a [(ComparisonOperator, Node)],
        node: &Node,
    ) -> Result<Produced<'a>, ExpressionError> {
        let mut accumulated = self.evaluate(first)?;
        for (operator, operand) in rest {
            let right = self.evaluate(operand)?;
            let result = compare(*operator, accumulated.value.view(), right.value.view());
            let released = accumulated.cost.saturating_add(right.cost);
            accumulated = self.produce(Evaluated::Owned(Value::Bool(result)), released, node)?;
        }
        Ok(accumulated)
    }

    /// `&&` (stop at the first falsy operand) and `||` (stop at the first truthy one); the result is the operand
    /// where evaluation stopped, or the last one, not a boolean.
    fn short_circuit(
        &mut self,
        operands: &'a [Node],
        stop_when_truthy: bool,
        node: &Node,
    ) -> Result<Produced<'a>, ExpressionError> {
        let mut last: Option<Produced<'a>> = None;
        for operand in operands {
            if let Some(previous) = last.take() {
                self.budget.release(previous.cost);
            }
            let result = self.evaluate(operand)?;
            let stop = result.value.view().is_truthy() == stop_when_truthy;
            last = Some(result);
            if stop {
                break;
            }
        }
        match last {
            Some(result) => Ok(result),
            None => self.produce(Evaluated::Owned(Value::Null), 0, node),
        }
    }

    /// Property and index access. On a filtered array the access applies to each element and the found values
    /// form a new filtered array; on anything else a missing property or index is `null`.
    fn access(&mut self, target: Produced<'a>, key: &AccessKey, node: &Node) -> Result<Produced<'a>, ExpressionError> {
        let result = match target.value {
            Evaluated::Filtered(items) => {
                self.step(items.len(), node)?;
                let found = items.into_iter().filter_map(|item| access_one(item, key)).collect();
                Evaluated::Filtered(found)
            }
            single => access_one(single, key).unwrap_or(Evaluated::Owned(Value::Null)),
        };
        self.produce(result, target.cost, node)
    }

    /// The object filter `*`: the values of an object or the elements of an array, as a filtered array; on a
    /// filtered array, the values and elements of all its objects and arrays, flattened one level.
    fn filter(&mut self, target: Produced<'a>, node: &Node) -> Result<Produced<'a>, ExpressionError> {
        let result = match target.value {
            Evaluated::Filtered(items) => {
                let mut flattened = Vec::new();
                for item in items {
                    let members = members_of(item);
                    self.step(members.len().saturating_add(1), node)?;
                    flattened.extend(members);
                }
                flattened
            }
            single => {
                let members = members_of(single);
                self.step(members.len(), node)?;
                members
            }
        };
        self.produce(Evaluated::Filtered(result), target.cost, node)
    }
}

/// What `*` yields for one value: the values of an object, the elements of an array, nothing for a primitive.
fn members_of(value: Evaluated<'_>) -> Vec<Evaluated<'_>> {
    match value {
        Evaluated::Borrowed(Value::Array(items)) => items.iter().map(Evaluated::Borrowed).collect(),
        Evaluated::Borrowed(Value::Object(object)) => object.values().map(Evaluated::Borrowed).collect(),
        Evaluated::Owned(Value::Array(items)) => items.into_iter().map(Evaluated::Owned).collect(),
        Evaluated::Owned(Value::Object(object)) => {
            object.into_entries().map(|(_, value)| Evaluated::Owned(value)).collect()
        }
        Evaluated::Filtered(items) => items,
        Evaluated::Borrowed(_) | Evaluated::Owned(_) => Vec::new(),
    }
}

/// Applies one property or index access to one value; `None` when nothing is there.
fn access_one<'a>(value: Evaluated<'a>, key: &AccessKey) -> Option<Evaluated<'a>> {
    match value {
        Evaluated::Borrowed(Value::Object(object)) => {
            key.text.as_deref().and_then(|text| object.get(text)).map(Evaluated::Borrowed)
        }
        Evaluated::Borrowed(Value::Array(items)) => {
            key.index.and_then(|index| items.get(index)).map(Evaluated::Borrowed)
        }
        Evaluated::Owned(Value::Object(object)) => {
            let position = object.position_of(key.text.as_deref()?)?;
            object.into_entries().nth(position).map(|(_, value)| Evaluated::Owned(value))
        }
        Evaluated::Owned(Value::Array(items)) => items.into_iter().nth(key.index?).map(Evaluated::Owned),
        Evaluated::Filtered(items) => key.index.and_then(|index| items.into_iter().nth(index)),
        Evaluated::Borrowed(_) | Evaluated::Owned(_) => None,
    }
}

/// One comparison operator applied to two operands, as GitHub defines them: `>=` is `==` or `>`, `<=` is `==`
/// or `<`.
fn compare(operator: ComparisonOperator, left: View<'_>, right: View<'_>) -> bool {
    match operator {
        ComparisonOperator::Equal => loosely_equals(left, right),
        ComparisonOperator::NotEqual => !loosely_equals(left, right),
        ComparisonOperator::Less => order(left, right) == Some(Ordering::Less),
        ComparisonOperator::Greater => order(left, right) == Some(Ordering::Greater),
        ComparisonOperator::LessOrEqual => loosely_equals(left, right) || order(left, right) == Some(Ordering::Less),
        ComparisonOperator::GreaterOrEqual => {
            loosely_equals(left, right) || order(left, right) == Some(Ordering::Greater)
        }
    }
}

/// The bytes a result is charged for: a reference to the contexts or the expression costs one value, produced
/// values cost what they hold.
fn cost_of(value: &Evaluated<'_>) -> usize {
    match value {
        Evaluated::Borrowed(_) => VALUE_COST,
        Evaluated::Owned(Value::String(text)) => string_cost(text),
        Evaluated::Owned(owned) => owned_value_cost(owned),
        Evaluated::Filtered(items) => items.iter().fold(VALUE_COST, |total, item| total.saturating_add(cost_of(item))),
    }
}
