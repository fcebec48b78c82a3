//! The parser: a hand-written Pratt parser from tokens to the syntax tree.
//!
//! Binding powers, from loosest to tightest (GitHub's precedence):
//!
//! | power | operators                        | notes                                            |
//! |-------|----------------------------------|--------------------------------------------------|
//! | 1     | `\|\|`                           | one flat chain                                   |
//! | 2     | `&&`                             | one flat chain                                   |
//! | 3     | `==` `!=`                        | left to right, one flat chain                    |
//! | 4     | `<` `<=` `>` `>=`                | left to right, one flat chain                    |
//! | 5     | prefix `!`                       |                                                  |
//! | 6     | postfix `.name` `.*` `[i]` `[*]` | only after a name, a call or a parenthesised group |
//!
//! Depth is counted exactly as GitHub counts it, because its conformance data pins the limit down to the
//! level: each nested expression (the whole expression, a parenthesised group, a function argument, an index
//! expression) is one level, each `!` is one, each `&&` chain and each `||` chain is one, and each postfix access
//! is one until the chain of accesses ends. Comparison operators do not add depth.

use crate::ast::{ComparisonOperator, Function, Node, NodeKind};
use crate::error::{ArgumentCountProblem, ExpressionError, SourcePosition};
use crate::lexer::{Token, TokenKind};
use crate::options::ParseOptions;
use crate::value::Value;

const OR_POWER: u8 = 1;
const AND_POWER: u8 = 2;
const EQUALITY_POWER: u8 = 3;
const RELATIONAL_POWER: u8 = 4;
const NOT_POWER: u8 = 5;
const POSTFIX_POWER: u8 = 6;

/// The deepest nesting accepted whatever the limits say: depth bounds the recursion of the parser and the
/// evaluator, and 200 levels stay well within a 2 MiB thread stack even in unoptimised builds.
pub(crate) const MAX_SUPPORTED_DEPTH: usize = 200;

/// Parses `tokens` (ending with the end-of-input token) into a tree; `None` for an empty expression, which
/// GitHub evaluates to `null`.
pub(crate) fn parse_tokens(
    expression: &str,
    tokens: Vec<Token>,
    options: &ParseOptions,
) -> Result<Option<Node>, ExpressionError> {
    let mut parser = Parser { expression, tokens, cursor: 0, depth: 0, options };
    if parser.at_end() {
        return Ok(None);
    }
    let root = parser.parse_nested_expression()?;
    if !parser.at_end() {
        return Err(parser.unexpected_symbol(parser.cursor));
    }
    Ok(Some(root))
}

struct Parser<'s, 'o> {
    expression: &'s str,
    tokens: Vec<Token>,
    cursor: usize,
    depth: usize,
    options: &'o ParseOptions,
}

/// A binary operator found in the token stream.
#[derive(Clone, Copy)]
enum BinaryOperator {
    Or,
    And,
    Comparison(ComparisonOperator),
}

impl BinaryOperator {
    fn binding_power(self) -> u8 {
        match self {
            BinaryOperator::Or => OR_POWER,
            BinaryOperator::And => AND_POWER,
            BinaryOperator::Comparison(operator) if operator.is_equality() => EQUALITY_POWER,
            BinaryOperator::Comparison(_) => RELATIONAL_POWER,
        }
    }
}

/// The state of one Pratt loop.
struct LoopState {
    /// Everything parsed so far at this level.
    left: Node,
    /// Whether `.` and `[` may follow `left`.
    accepts_postfix: bool,
    /// Depth levels held by the postfix accesses applied so far; released when the access chain ends.
    postfix_levels: usize,
    /// The `&&` or `||` chain this loop has open, if any.
    open_chain: Option<LogicalChain>,
    /// Whether `left` is a comparison chain built by this loop, which further operators of the same precedence
    /// extend instead of nesting.
    left_is_open_comparison: bool,
}

/// What the Pratt loop does next.
enum LoopStep {
    Postfix,
    Binary(BinaryOperator),
    Stop,
}

/// Stands in for `left` while it is moved into a new node.
fn placeholder_node() -> Node {
    Node { kind: NodeKind::Literal(Value::Null), position: SourcePosition { byte_offset: 0, column: 1 } }
}

/// The `&&` or `||` chain a loop of the parser currently has open; each open chain is one level of depth.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LogicalChain {
    And,
    Or,
}

impl<'s, 'o> Parser<'s, 'o> {
    /// A full expression in its own depth level: the whole input, a group, an argument or an index.
    fn parse_nested_expression(&mut self) -> Result<Node, ExpressionError> {
        self.enter_level()?;
        let node = self.parse_with_binding_power(0)?;
        self.leave_levels(1);
        Ok(node)
    }

    /// The Pratt loop: a prefix part, then every operator that binds at least as tightly as `minimum_power`.
    ///
    /// The work for each operator happens in helper methods, which keeps this function's stack frame small: it
    /// is on the stack once per nesting level, so its size decides how deep expressions may nest.
    fn parse_with_binding_power(&mut self, minimum_power: u8) -> Result<Node, ExpressionError> {
        let (left, accepts_postfix) = self.parse_prefix()?;
        let mut state =
            LoopState { left, accepts_postfix, postfix_levels: 0, open_chain: None, left_is_open_comparison: false };
        loop {
            match self.next_step(minimum_power, &state) {
                LoopStep::Postfix => self.apply_postfix(&mut state)?,
                LoopStep::Binary(operator) => self.apply_binary(&mut state, operator)?,
                LoopStep::Stop => break,
            }
        }
        self.leave_levels(state.postfix_levels);
        if state.open_chain.is_some() {
            self.leave_levels(1);
        }
        Ok(state.left)
    }

    /// What the Pratt loop does with the next token.
    fn next_step(&self, minimum_power: u8, state: &LoopState) -> LoopStep {
        let kind = &self.peek().kind;
        if matches!(kind, TokenKind::Dot | TokenKind::LeftBracket) {
            // Accesses apply only to names, calls and groups (and to earlier accesses); after anything else the
            // `.` or `[` is left for the caller to report.
            return if POSTFIX_POWER >= minimum_power && state.accepts_postfix {
                LoopStep::Postfix
            } else {
                LoopStep::Stop
            };
        }
        match binary_operator(kind) {
            Some(operator) if operator.binding_power() >= minimum_power => LoopStep::Binary(operator),
            _ => LoopStep::Stop,
        }
    }

    fn apply_postfix(&mut self, state: &mut LoopState) -> Result<(), ExpressionError> {
        let target = std::mem::replace(&mut state.left, placeholder_node());
        state.left = self.parse_postfix(target)?;
        state.postfix_levels += 1;
        Ok(())
    }

    fn apply_binary(&mut self, state: &mut LoopState, operator: BinaryOperator) -> Result<(), ExpressionError> {
        // A binary operator ends any chain of accesses: its levels are released, and its result cannot be
        // accessed further (`a == b.c` accesses `b`, never the comparison).
        self.leave_levels(state.postfix_levels);
        state.postfix_levels = 0;
        state.accepts_postfix = false;
        match operator {
            BinaryOperator::And => self.apply_logical(state, LogicalChain::And),
            BinaryOperator::Or => self.apply_logical(state, LogicalChain::Or),
            BinaryOperator::Comparison(comparison) => self.apply_comparison(state, comparison),
        }
    }

    /// `&&` or `||`: starts a chain (one depth level) or extends the open one.
    fn apply_logical(&mut self, state: &mut LoopState, chain: LogicalChain) -> Result<(), ExpressionError> {
        let operator_position = self.position_of(self.cursor);
        if state.open_chain != Some(chain) {
            // `a && b || c`: the `&&` chain is complete once `||` appears; the `||` chain starts with it as its
            // first operand.
            if state.open_chain.is_some() {
                self.leave_levels(1);
            }
            self.enter_level()?;
            state.open_chain = Some(chain);
            let first = std::mem::replace(&mut state.left, placeholder_node());
            let kind = match chain {
                LogicalChain::And => NodeKind::And(vec![first]),
                LogicalChain::Or => NodeKind::Or(vec![first]),
            };
            state.left = Node { kind, position: operator_position };
        }
        self.cursor += 1;
        let power = match chain {
            LogicalChain::And => AND_POWER,
            LogicalChain::Or => OR_POWER,
        };
        let right = self.parse_with_binding_power(power + 1)?;
        if let NodeKind::And(operands) | NodeKind::Or(operands) = &mut state.left.kind {
            operands.push(right);
        }
        state.left_is_open_comparison = false;
        Ok(())
    }

    /// A comparison operator: extends the comparison chain this loop built, or starts one.
    fn apply_comparison(
        &mut self,
        state: &mut LoopState,
        comparison: ComparisonOperator,
    ) -> Result<(), ExpressionError> {
        let operator_position = self.position_of(self.cursor);
        let power = BinaryOperator::Comparison(comparison).binding_power();
        self.cursor += 1;
        let right = self.parse_with_binding_power(power + 1)?;
        let extends_open_chain = state.left_is_open_comparison
            && matches!(&state.left.kind, NodeKind::Comparison { rest, .. }
                if rest.first().is_some_and(|(first, _)| first.is_equality() == comparison.is_equality()));
        if extends_open_chain {
            if let NodeKind::Comparison { rest, .. } = &mut state.left.kind {
                rest.push((comparison, right));
            }
        } else {
            let first = std::mem::replace(&mut state.left, placeholder_node());
            state.left = Node {
                kind: NodeKind::Comparison { first: Box::new(first), rest: vec![(comparison, right)] },
                position: operator_position,
            };
        }
        state.left_is_open_comparison = true;
        Ok(())
    }

    /// Literals, names, calls, groups and `!`; returns the node and whether postfix accesses may follow it.
    fn parse_prefix(&mut self) -> Result<(Node, bool), ExpressionError> {
        let position = self.position_of(self.cursor);
        let literal = match &self.peek().kind {
            TokenKind::Bang => return self.parse_not(),
            TokenKind::LeftParenthesis => return self.parse_group(),
            TokenKind::Identifier => return self.parse_name(),
            TokenKind::EndOfInput => return Err(self.unexpected_end()),
            TokenKind::True => Value::Bool(true),
            TokenKind::False => Value::Bool(false),
            TokenKind::Null => Value::Null,
            TokenKind::Number(number) => Value::Number(*number),
            TokenKind::String(text) => Value::String(text.clone()),
            _ => return Err(self.unexpected_symbol(self.cursor)),
        };
        self.cursor += 1;
        Ok((Node { kind: NodeKind::Literal(literal), position }, false))
    }

    /// `!operand`; the operand is a prefix part with its accesses, so `!a.b` is `!(a.b)` and `!a == b` is
    /// `(!a) == b`.
    fn parse_not(&mut self) -> Result<(Node, bool), ExpressionError> {
        let position = self.position_of(self.cursor);
        self.cursor += 1;
        self.enter_level()?;
        let operand = self.parse_with_binding_power(NOT_POWER)?;
        self.leave_levels(1);
        Ok((Node { kind: NodeKind::Not(Box::new(operand)), position }, false))
    }

    /// `( expression )`.
    fn parse_group(&mut self) -> Result<(Node, bool), ExpressionError> {
        self.cursor += 1;
        let inner = self.parse_nested_expression()?;
        if self.at_end() {
            return Err(self.unexpected_end());
        }
        self.expect(&TokenKind::RightParenthesis)?;
        Ok((inner, true))
    }

    /// A function call when `(` follows the name, otherwise a context name, which must be allowed here.
    fn parse_name(&mut self) -> Result<(Node, bool), ExpressionError> {
        let name_index = self.cursor;
        self.cursor += 1;
        let name = self.token(name_index).lexeme(self.expression).to_owned();
        if self.peek().kind == TokenKind::LeftParenthesis {
            return Ok((self.parse_call(name, name_index)?, true));
        }
        let position = self.position_of(name_index);
        if !self.options.allows_named_value(&name) {
            return Err(self.unrecognized_named_value(name, position));
        }
        Ok((Node { kind: NodeKind::NamedValue(name), position }, true))
    }

    fn unrecognized_named_value(&self, name: String, position: SourcePosition) -> ExpressionError {
        ExpressionError::UnrecognizedNamedValue {
            name,
            position,
            expression: self.expression.to_owned(),
            allowed_names: self.options.allowed_named_values.clone(),
        }
    }

    /// The arguments of a call (the name is already consumed and `(` is next), then checks the function exists
    /// and accepts that many arguments. A trailing comma before `)` is accepted, as GitHub accepts it.
    fn parse_call(&mut self, name: String, name_index: usize) -> Result<Node, ExpressionError> {
        self.cursor += 1;
        let mut arguments = Vec::new();
        loop {
            if self.peek().kind == TokenKind::RightParenthesis {
                self.cursor += 1;
                break;
            }
            arguments.push(self.parse_nested_expression()?);
            if self.peek().kind != TokenKind::RightParenthesis {
                self.expect(&TokenKind::Comma)?;
            }
        }
        let position = self.position_of(name_index);
        let function = self.resolve_function(&name, arguments.len(), position)?;
        Ok(Node { kind: NodeKind::Call { function, name, arguments }, position })
    }

    fn resolve_function(
        &self,
        name: &str,
        argument_count: usize,
        position: SourcePosition,
    ) -> Result<Function, ExpressionError> {
        let function = Function::from_name(name).filter(|function| self.function_is_available(*function));
        let Some(function) = function else {
            return Err(ExpressionError::UnrecognizedFunction {
                name: name.to_owned(),
                position,
                expression: self.expression.to_owned(),
                available_functions: Function::ALL
                    .into_iter()
                    .filter(|function| self.function_is_available(*function))
                    .map(|function| format!("{}()", function.name()))
                    .collect(),
            });
        };
        let (minimum, maximum) = function.argument_range();
        let problem = if argument_count < minimum {
            Some(ArgumentCountProblem::TooFew)
        } else if argument_count > maximum {
            Some(ArgumentCountProblem::TooMany)
        } else if function == Function::Case && argument_count.is_multiple_of(2) {
            Some(ArgumentCountProblem::EvenCount)
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ExpressionError::WrongArgumentCount {
                function: name.to_owned(),
                problem,
                supplied: argument_count,
                accepted: function.accepted_arguments(),
                position,
                expression: self.expression.to_owned(),
            });
        }
        Ok(function)
    }

    fn function_is_available(&self, function: Function) -> bool {
        match function {
            Function::HashFiles => self.options.allow_hash_files,
            _ if function.is_status_function() => self.options.allow_status_functions,
            _ => true,
        }
    }

    /// One access: `.name`, `.*`, `[index]` or `[*]`. The `.` or `[` is next.
    fn parse_postfix(&mut self, target: Node) -> Result<Node, ExpressionError> {
        let position = self.position_of(self.cursor);
        let target = Box::new(target);
        if self.peek().kind == TokenKind::LeftBracket {
            self.cursor += 1;
            let index = if self.peek().kind == TokenKind::Star {
                self.cursor += 1;
                None
            } else {
                Some(self.parse_nested_expression()?)
            };
            self.expect(&TokenKind::RightBracket)?;
            self.enter_level()?;
            let kind = match index {
                None => NodeKind::Filter { target },
                Some(index) => NodeKind::Index { target, index: Box::new(index) },
            };
            return Ok(Node { kind, position });
        }
        self.cursor += 1;
        self.enter_level()?;
        let kind = match self.peek().kind {
            TokenKind::Identifier => {
                let name = self.peek().lexeme(self.expression).to_owned();
                NodeKind::Property { target, name }
            }
            TokenKind::Star => NodeKind::Filter { target },
            _ => return Err(self.unexpected_symbol(self.cursor)),
        };
        self.cursor += 1;
        Ok(Node { kind, position })
    }

    fn enter_level(&mut self) -> Result<(), ExpressionError> {
        self.depth += 1;
        let limit = self.options.limits.max_depth.min(MAX_SUPPORTED_DEPTH);
        if self.depth > limit {
            return Err(ExpressionError::MaxDepthExceeded {
                limit,
                position: self.position_of(self.cursor),
                expression: self.expression.to_owned(),
            });
        }
        Ok(())
    }

    fn leave_levels(&mut self, levels: usize) {
        self.depth = self.depth.saturating_sub(levels);
    }

    fn token(&self, index: usize) -> &Token {
        // The token list always ends with the end-of-input token and the cursor never moves past it.
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[index.min(last)]
    }

    fn peek(&self) -> &Token {
        self.token(self.cursor)
    }

    fn at_end(&self) -> bool {
        self.peek().kind == TokenKind::EndOfInput
    }

    fn position_of(&self, token_index: usize) -> SourcePosition {
        SourcePosition::at(self.expression, self.token(token_index).start)
    }

    fn expect(&mut self, expected: &TokenKind) -> Result<(), ExpressionError> {
        if !self.at_end() && &self.peek().kind == expected {
            self.cursor += 1;
            return Ok(());
        }
        Err(self.unexpected_symbol(self.cursor))
    }

    fn unexpected_symbol(&self, token_index: usize) -> ExpressionError {
        let token = self.token(token_index);
        let hint = match token.kind {
            TokenKind::EndOfInput => "the expression is incomplete; close every '(' and '[' and finish every function \
                                      call"
                .to_owned(),
            TokenKind::LeftBracket | TokenKind::Dot => {
                "'.' and '[' can follow only a context name, a function call or \
                                                        a parenthesised expression"
                    .to_owned()
            }
            _ => format!(
                "remove '{}' or add the operator, comma or closing bracket that should come before it",
                token.describe(self.expression)
            ),
        };
        ExpressionError::UnexpectedSymbol {
            symbol: token.describe(self.expression),
            position: SourcePosition::at(self.expression, token.start),
            expression: self.expression.to_owned(),
            hint,
        }
    }

    /// The input ended where an operand or `)` was needed; GitHub reports the last token before the end.
    fn unexpected_end(&self) -> ExpressionError {
        let last = self.token(self.cursor.saturating_sub(1));
        let last_symbol = last.describe(self.expression);
        ExpressionError::UnexpectedEnd {
            hint: format!("the expression stops after '{last_symbol}'; add the missing operand or closing ')'"),
            last_symbol,
            position: SourcePosition::at(self.expression, last.start),
            expression: self.expression.to_owned(),
        }
    }
}

fn binary_operator(kind: &TokenKind) -> Option<BinaryOperator> {
    Some(match kind {
        TokenKind::Or => BinaryOperator::Or,
        TokenKind::And => BinaryOperator::And,
        TokenKind::EqualEqual => BinaryOperator::Comparison(ComparisonOperator::Equal),
        TokenKind::BangEqual => BinaryOperator::Comparison(ComparisonOperator::NotEqual),
        TokenKind::Less => BinaryOperator::Comparison(ComparisonOperator::Less),
        TokenKind::LessEqual => BinaryOperator::Comparison(ComparisonOperator::LessOrEqual),
        TokenKind::Greater => BinaryOperator::Comparison(ComparisonOperator::Greater),
        TokenKind::GreaterEqual => BinaryOperator::Comparison(ComparisonOperator::GreaterOrEqual),
        _ => return None,
    })
}
