//! How operator commands reach a server: `--server` / `BATON_SERVER` and `--token` /
//! `BATON_TOKEN`, and the exit codes every command shares.

use baton_client::Client;
use clap::Args;

/// Exit code of a run that concluded `success`, or a command that did what it was asked.
pub const EXIT_OK: u8 = 0;
/// Exit code of a run that failed or was cancelled, or a command that could not finish.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of invalid input: a bad workflow, flag, input or secret. Nothing was changed.
pub const EXIT_INVALID: u8 = 2;

/// Invalid input from the user: the command exits with [`EXIT_INVALID`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// The exit code for an error: invalid input (ours, or a 400/413/422 from the server) is 2.
pub fn exit_code_for(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<InvalidInput>().is_some() {
        return EXIT_INVALID;
    }
    if let Some(status) = error.downcast_ref::<baton_client::Error>().and_then(baton_client::Error::status)
        && matches!(status.as_u16(), 400 | 413 | 422)
    {
        return EXIT_INVALID;
    }
    EXIT_FAILED
}

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The server's URL, e.g. http://127.0.0.1:8420.
    #[arg(long, env = "BATON_SERVER")]
    pub server: Option<String>,
    /// The admin token (shown once by `baton server` at its first start).
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    /// A client for the server; both the URL and the token are required.
    pub fn client(&self) -> anyhow::Result<Client> {
        let Some(server) = &self.server else {
            return Err(InvalidInput("no server given: pass --server URL or set BATON_SERVER".into()).into());
        };
        let Some(token) = &self.token else {
            return Err(InvalidInput(
                "no admin token given: pass --token TOKEN or set BATON_TOKEN (baton server prints it at its first start)"
                    .into(),
            )
            .into());
        };
        Client::new(server, Some(token.clone())).map_err(|error| InvalidInput(format!("--server: {error}")).into())
    }
}

/// `--output`: how commands that print data print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables and live logs for people.
    #[default]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}
