//! Providers make and remove the machines runners run on, behind one trait. Every call is
//! idempotent: creating a name that exists answers the existing instance, terminating an
//! unknown instance succeeds, so the scaler may retry any of them.

use std::future::Future;
use std::pin::Pin;

/// One machine (process, container, VM) of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The provider's id for it.
    pub id: String,
    /// The runner's name; the scaler names both alike.
    pub name: String,
    pub pool: String,
}

/// What a new machine must start: `baton runner` with a single-use JIT config.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub pool: String,
    pub labels: Vec<String>,
    /// The servers the runner reaches, as `baton runner --server` takes them: one base URL, or
    /// several replicas' separated by commas. Handed on whole, never split.
    pub server: String,
    pub jit_config: String,
    pub ephemeral: bool,
    pub capacity: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub type ProviderResult<T> = Result<T, ProviderError>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of machines.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Starts a machine running `baton runner` with the request's JIT config.
    fn create<'a>(&'a self, request: &'a CreateRequest) -> BoxFuture<'a, ProviderResult<Instance>>;
    /// Stops and removes a machine. Unknown ids succeed.
    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProviderResult<()>>;
    /// The pool's machines that exist now.
    fn list<'a>(&'a self, pool: &'a str) -> BoxFuture<'a, ProviderResult<Vec<Instance>>>;
}
