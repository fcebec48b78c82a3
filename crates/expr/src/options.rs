//! What an expression may use and how much it may cost: the allowed context names and functions of the place the
//! expression appears in ([`ParseOptions`]) and the resource [`Limits`].

/// The context names a workflow can use somewhere; each workflow key allows a subset of them.
pub const WORKFLOW_CONTEXT_NAMES: [&str; 11] =
    ["github", "env", "vars", "secrets", "inputs", "matrix", "needs", "strategy", "steps", "job", "runner"];

/// Resource limits of parsing and evaluation. Exceeding any of them is a clear error, never a hang or a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest expression accepted, in characters. GitHub's limit is 21,000.
    pub max_expression_length: usize,
    /// How deeply parentheses, function calls, `!`, `&&`/`||` chains and property or index accesses may nest.
    /// GitHub's limit is 50. Because depth bounds the recursion of the parser and the evaluator, values above 200
    /// are treated as 200.
    pub max_depth: usize,
    /// How many bytes of intermediate results may be alive at once, measured as GitHub's runner measures them
    /// (a string costs 26 bytes plus 2 per UTF-16 code unit). GitHub's runner allows 1 MiB.
    pub max_memory_bytes: usize,
    /// How many evaluation steps one evaluation may take: one per evaluated node plus one per element visited by
    /// `*` filters, `contains`, `join`, `toJSON` and the like.
    pub max_evaluation_steps: usize,
}

impl Limits {
    /// GitHub's limits, plus a step limit generous enough for any realistic workflow.
    pub const GITHUB: Limits = Limits {
        max_expression_length: 21_000,
        max_depth: 50,
        max_memory_bytes: 1_048_576,
        max_evaluation_steps: 1_000_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::GITHUB
    }
}

/// Where an expression appears decides which contexts and functions it may use; these options describe that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// The context names (GitHub calls them named-values) the expression may refer to, compared without regard to
    /// case. Any other bare name is a parse error listing these.
    pub allowed_named_values: Vec<String>,
    /// Whether `success()`, `failure()`, `cancelled()` and `always()` are available (in GitHub: only in `if:`).
    pub allow_status_functions: bool,
    /// Whether `hashFiles()` is available (in GitHub: in steps and step-level keys).
    pub allow_hash_files: bool,
    /// Resource limits.
    pub limits: Limits,
}

impl ParseOptions {
    /// Options allowing exactly the given context names, every function and GitHub's limits.
    pub fn with_named_values<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            allowed_named_values: names.into_iter().map(Into::into).collect(),
            allow_status_functions: true,
            allow_hash_files: true,
            limits: Limits::GITHUB,
        }
    }

    /// Sets whether the status functions are available.
    pub fn status_functions(mut self, allowed: bool) -> Self {
        self.allow_status_functions = allowed;
        self
    }

    /// Sets whether `hashFiles` is available.
    pub fn hash_files(mut self, allowed: bool) -> Self {
        self.allow_hash_files = allowed;
        self
    }

    /// Sets the resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether `name` is an allowed context name.
    pub(crate) fn allows_named_value(&self, name: &str) -> bool {
        self.allowed_named_values.iter().any(|allowed| crate::text::equals_ignoring_case(allowed, name))
    }
}

impl Default for ParseOptions {
    /// Every workflow context name, every function and GitHub's limits.
    fn default() -> Self {
        Self::with_named_values(WORKFLOW_CONTEXT_NAMES)
    }
}
