//! The evaluation budget: how much memory the intermediate results of one evaluation may hold at once and how
//! many steps it may take, so that `format`, `join`, `toJSON` or `*` filters over large inputs end with a clear
//! error instead of exhausting memory or time.
//!
//! Memory is measured the way GitHub's runner measures it: a string costs 26 bytes plus 2 bytes per UTF-16 code
//! unit, anything else 24 bytes per value. Only results that are alive at the same time count: when a node has
//! produced its result, the results of its operands are released.

use crate::text::utf16_length;
use crate::value::Value;

/// The fixed cost of a string, as in GitHub's runner.
pub(crate) const STRING_BASE_COST: usize = 26;
/// The cost of each UTF-16 code unit of a string.
pub(crate) const BYTES_PER_UTF16_UNIT: usize = 2;
/// The cost of any value that is not a string, and of a reference to a value in the contexts.
pub(crate) const VALUE_COST: usize = 24;

/// Which part of the budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetExceeded {
    Memory,
    Steps,
}

/// The memory and step budget of one evaluation.
#[derive(Debug)]
pub(crate) struct EvaluationBudget {
    live_bytes: usize,
    max_memory_bytes: usize,
    steps: usize,
    max_steps: usize,
}

impl EvaluationBudget {
    pub(crate) fn new(max_memory_bytes: usize, max_steps: usize) -> Self {
        Self { live_bytes: 0, max_memory_bytes, steps: 0, max_steps }
    }

    /// Records `bytes` more of live intermediate results.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), BudgetExceeded> {
        self.live_bytes = self.live_bytes.saturating_add(bytes);
        if self.live_bytes > self.max_memory_bytes {
            return Err(BudgetExceeded::Memory);
        }
        Ok(())
    }

    /// Records that `bytes` of intermediate results are no longer alive.
    pub(crate) fn release(&mut self, bytes: usize) {
        self.live_bytes = self.live_bytes.saturating_sub(bytes);
    }

    /// Records `count` more evaluation steps.
    pub(crate) fn step(&mut self, count: usize) -> Result<(), BudgetExceeded> {
        self.steps = self.steps.saturating_add(count);
        if self.steps > self.max_steps {
            return Err(BudgetExceeded::Steps);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn live_bytes(&self) -> usize {
        self.live_bytes
    }
}

/// The cost of a string result.
pub(crate) fn string_cost(text: &str) -> usize {
    STRING_BASE_COST.saturating_add(BYTES_PER_UTF16_UNIT.saturating_mul(utf16_length(text)))
}

/// The cost of a value produced during evaluation (for example by `fromJSON`), counting every nested value.
pub(crate) fn owned_value_cost(value: &Value) -> usize {
    // An explicit stack keeps deeply nested values from exhausting the call stack.
    let mut total = 0_usize;
    let mut pending: Vec<&Value> = vec![value];
    while let Some(current) = pending.pop() {
        total = total.saturating_add(match current {
            Value::String(text) => string_cost(text),
            _ => VALUE_COST,
        });
        match current {
            Value::Array(items) => pending.extend(items.iter()),
            Value::Object(object) => {
                for (key, nested) in object.iter() {
                    total = total.saturating_add(string_cost(key));
                    pending.push(nested);
                }
            }
            _ => {}
        }
    }
    total
}

/// Somewhere text can be written to piece by piece.
pub(crate) trait TextSink {
    fn push_text(&mut self, text: &str) -> Result<(), BudgetExceeded>;

    /// Called once per element of a collection being written, so that writing huge values counts as work.
    fn count_element(&mut self) -> Result<(), BudgetExceeded> {
        Ok(())
    }
}

impl TextSink for String {
    fn push_text(&mut self, text: &str) -> Result<(), BudgetExceeded> {
        self.push_str(text);
        Ok(())
    }
}

/// A string under construction whose growth is charged to the budget as it happens, so an oversized result is
/// refused before it is built rather than after.
#[derive(Debug)]
pub(crate) struct CostedString<'b> {
    text: String,
    charged_bytes: usize,
    budget: &'b mut EvaluationBudget,
}

impl<'b> CostedString<'b> {
    pub(crate) fn new(budget: &'b mut EvaluationBudget) -> Result<Self, BudgetExceeded> {
        budget.charge(STRING_BASE_COST)?;
        Ok(Self { text: String::new(), charged_bytes: STRING_BASE_COST, budget })
    }

    /// The finished string and the bytes already charged for it.
    pub(crate) fn finish(self) -> (String, usize) {
        (self.text, self.charged_bytes)
    }
}

impl TextSink for CostedString<'_> {
    fn push_text(&mut self, text: &str) -> Result<(), BudgetExceeded> {
        let cost = BYTES_PER_UTF16_UNIT.saturating_mul(utf16_length(text));
        self.budget.charge(cost)?;
        self.charged_bytes = self.charged_bytes.saturating_add(cost);
        self.text.push_str(text);
        Ok(())
    }

    fn count_element(&mut self) -> Result<(), BudgetExceeded> {
        self.budget.step(1)
    }
}

impl CostedString<'_> {
    /// The budget the string is charged to, for counting steps while the string is being built.
    pub(crate) fn budget(&mut self) -> &mut EvaluationBudget {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costed_string_refuses_to_grow_past_the_budget() {
        let mut budget = EvaluationBudget::new(100, 10);
        let mut text = CostedString::new(&mut budget).expect("26 bytes fit");
        text.push_text("0123456789").expect("26 + 20 bytes fit");
        assert_eq!(text.push_text(&"x".repeat(30)), Err(BudgetExceeded::Memory));
    }

    #[test]
    fn release_returns_bytes_and_steps_are_counted() {
        let mut budget = EvaluationBudget::new(50, 2);
        budget.charge(40).expect("fits");
        budget.release(40);
        assert_eq!(budget.live_bytes(), 0);
        budget.step(2).expect("two steps fit");
        assert_eq!(budget.step(1), Err(BudgetExceeded::Steps));
    }

    #[test]
    fn owned_value_cost_counts_every_nested_value() {
        let value = Value::from_json_text(r#"{"ab": [1, "xyz"]}"#).expect("valid JSON");
        // Object 24 + key "ab" (26 + 4) + array 24 + number 24 + "xyz" (26 + 6).
        assert_eq!(owned_value_cost(&value), 24 + 30 + 24 + 24 + 32);
    }
}
