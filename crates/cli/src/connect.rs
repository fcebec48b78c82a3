//! How operator commands reach a server: `--server` / `BATON_SERVER` and `--token` /
//! `BATON_TOKEN`, and the exit codes every command shares.
//!
//! `--server` may name several replicas of one server (comma-separated, or the flag repeated).
//! A command then first asks each in turn for `/healthz` until one answers, and sends its own
//! requests there: a one-shot command has no retry loop that would reach the next server.

use anyhow::Context;
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
    /// The server's URL, e.g. http://127.0.0.1:8420. For several replicas of one server,
    /// separate their URLs with commas or repeat the flag: commands go to the first that answers.
    #[arg(long, env = "BATON_SERVER", value_delimiter = ',')]
    pub server: Vec<String>,
    /// The admin token (shown once by `baton server` at its first start).
    #[arg(long, env = "BATON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    /// A client for the servers, which sends nothing yet; both the URL and the token are
    /// required. For a long-running command whose retries reach the next server on their own.
    pub fn client(&self) -> anyhow::Result<Client> {
        if self.server.is_empty() {
            return Err(InvalidInput("no server given: pass --server URL or set BATON_SERVER".into()).into());
        }
        let server = self.server.join(",");
        let Some(token) = &self.token else {
            return Err(InvalidInput(
                "no admin token given: pass --token TOKEN or set BATON_TOKEN (baton server prints it at its first start)"
                    .into(),
            )
            .into());
        };
        Client::new(&server, Some(token.clone())).map_err(|error| InvalidInput(format!("--server: {error}")).into())
    }

    /// A client for the servers whose current one answered `/healthz`, when there are several;
    /// with one server, nothing is sent until the command's own request.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let client = self.client()?;
        if client.server_urls().len() > 1 {
            client.find_live_server().await.context("find a server of --server that answers")?;
        }
        Ok(client)
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    fn client_of(args: &[&str]) -> anyhow::Result<Client> {
        Command::try_parse_from([&["baton", "--token", "bat_admin"], args].concat())?.connect.client()
    }

    #[test]
    fn several_servers_by_commas_or_a_repeated_flag() {
        let client = client_of(&["--server", "http://a:8420,http://b:8420", "--server", "http://c:8420/"])
            .expect("valid servers");
        assert_eq!(client.server_urls(), ["http://a:8420", "http://b:8420", "http://c:8420"]);
        assert_eq!(client.base_url(), "http://a:8420");
        let error = client_of(&["--server", "http://a:8420,"]).expect_err("a trailing comma");
        assert_eq!(exit_code_for(&error), EXIT_INVALID);
        assert_eq!(
            error.to_string(),
            r#"--server: invalid server URL "http://a:8420,": an empty entry: separate URLs with single commas"#
        );
    }
}
