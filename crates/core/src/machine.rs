//! Transition tables.
//!
//! Each state machine in Baton is a plain table of `(state, event) -> next state` rows. A pair
//! that is not in the table is an invalid transition: an error returned to the caller (HTTP 409
//! with a machine-readable code), never a silent no-op.

use std::fmt;

/// One allowed transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<S, E> {
    pub from: S,
    pub event: E,
    pub to: S,
}

/// A `(state, event)` pair that the machine's table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {machine} transition: event `{event}` in state `{state}`")]
pub struct InvalidTransition {
    /// Which machine: `attempt`, `job`, `runner` or `session`.
    pub machine: &'static str,
    pub state: &'static str,
    pub event: &'static str,
}

/// Looks `(from, event)` up in `table`.
pub fn step<S, E>(machine: &'static str, table: &[Transition<S, E>], from: S, event: E) -> Result<S, InvalidTransition>
where
    S: Copy + PartialEq + Name,
    E: Copy + PartialEq + Name,
{
    table.iter().find(|row| row.from == from && row.event == event).map(|row| row.to).ok_or(InvalidTransition {
        machine,
        state: from.name(),
        event: event.name(),
    })
}

/// A stable, lower-case name for a state or an event, used on the wire and in the store.
pub trait Name {
    fn name(&self) -> &'static str;
}

/// Declares a fieldless enum with a stable name per variant, the list of all variants, and a
/// parser from the name.
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Parses a name written by [`crate::machine::Name::name`].
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl $crate::machine::Name for $name {
            fn name(&self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::machine::Name::name(self))
            }
        }
    };
}
pub(crate) use named_enum;

/// Renders every `(state, event)` pair of a machine with its outcome, one line each. The
/// exhaustive table tests compare this rendering against a reviewed snapshot, so a change to
/// any outcome shows up as a diff.
pub fn render_outcomes<S, E>(machine: &'static str, table: &[Transition<S, E>], states: &[S], events: &[E]) -> String
where
    S: Copy + PartialEq + Name,
    E: Copy + PartialEq + Name,
{
    let mut out = String::new();
    for &state in states {
        for &event in events {
            let outcome = match step(machine, table, state, event) {
                Ok(to) => to.name().to_string(),
                Err(_) => "invalid".to_string(),
            };
            out.push_str(&format!("{:<10} --{:<14}--> {}\n", state.name(), event.name(), outcome));
        }
    }
    out
}

impl<S: Name, E: Name> fmt::Display for Transition<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} --{}--> {}", self.from.name(), self.event.name(), self.to.name())
    }
}
