//! `baton webhooks`: endpoints, their delivery log, redelivery and secret rotation.

use baton_api as api;
use clap::{Args, Subcommand};

use crate::connect::{ConnectArgs, EXIT_OK, OutputFormat};
use crate::output::{self, Style};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint; prints its signing secret (shown only now).
    Add(AddArgs),
    /// List endpoints.
    List(Common),
    /// Remove an endpoint.
    Remove(IdArgs),
    /// An endpoint's delivery log: status, response code, latency, attempts.
    Deliveries(IdArgs),
    /// Deliver a message again (same webhook-id), by delivery id.
    Redeliver(IdArgs),
    /// Rotate an endpoint's secret; the old one keeps signing during the overlap.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    connect: ConnectArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Where deliveries are POSTed.
    url: String,
    /// Events to receive, comma-separated: workflow_job, workflow_run, runner [default: all].
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    /// Use this whsec_ secret instead of a generated one.
    #[arg(long, env = "BATON_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Deliver in event order, one at a time (a failing delivery holds back later ones).
    #[arg(long)]
    ordered: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    id: i64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    id: i64,
    /// How long the old secret keeps signing, in seconds [default: 86400].
    #[arg(long)]
    overlap_secs: Option<u64>,
    #[command(flatten)]
    common: Common,
}

fn endpoint_rows(webhooks: &[api::WebhookInfo]) -> Vec<Vec<String>> {
    let mut rows = vec![vec!["ID".to_string(), "URL".into(), "EVENTS".into(), "ORDERED".into(), "SECRETS".into()]];
    for webhook in webhooks {
        rows.push(vec![
            webhook.id.to_string(),
            webhook.url.clone(),
            if webhook.events.is_empty() { "all".into() } else { webhook.events.join(",") },
            webhook.ordered.to_string(),
            webhook.active_secrets.to_string(),
        ]);
    }
    rows
}

pub async fn main(command: WebhooksCommand) -> anyhow::Result<u8> {
    let style = Style::detect();
    match command {
        WebhooksCommand::Add(args) => {
            let client = args.common.connect.connect().await?;
            let request = api::CreateWebhookRequest {
                url: args.url,
                events: args.events,
                secret: args.secret,
                ordered: args.ordered,
            };
            let created = client.create_webhook(&request).await?;
            match args.common.output {
                OutputFormat::Json => output::print_json(&created)?,
                OutputFormat::Text => {
                    output::line(&format!("webhook {} added", created.webhook.id));
                    output::line(&format!("secret (shown only now): {}", created.secret));
                }
            }
        }
        WebhooksCommand::List(args) => {
            let list = args.connect.connect().await?.list_webhooks().await?;
            match args.output {
                OutputFormat::Json => output::print_json(&list)?,
                OutputFormat::Text => output::table(&style, &endpoint_rows(&list.webhooks)),
            }
        }
        WebhooksCommand::Remove(args) => {
            let removed = args.common.connect.connect().await?.remove_webhook(args.id).await?;
            match args.common.output {
                OutputFormat::Json => output::print_json(&removed)?,
                OutputFormat::Text => output::line(&format!("webhook {} removed", removed.id)),
            }
        }
        WebhooksCommand::Deliveries(args) => {
            let list = args.common.connect.connect().await?.webhook_deliveries(args.id, 0, 1000).await?;
            match args.common.output {
                OutputFormat::Json => output::print_json(&list)?,
                OutputFormat::Text => {
                    let mut rows = vec![vec![
                        "ID".to_string(),
                        "WEBHOOK-ID".into(),
                        "EVENT".into(),
                        "STATUS".into(),
                        "CODE".into(),
                        "LATENCY".into(),
                        "ATTEMPTS".into(),
                        "ERROR".into(),
                    ]];
                    for delivery in &list.deliveries {
                        rows.push(vec![
                            delivery.id.to_string(),
                            delivery.message_id.clone(),
                            delivery.event.clone(),
                            delivery.status.clone(),
                            delivery.response_code.map(|code| code.to_string()).unwrap_or_else(|| "-".into()),
                            delivery.latency_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "-".into()),
                            delivery.attempts.to_string(),
                            delivery.error.clone().unwrap_or_default(),
                        ]);
                    }
                    output::table(&style, &rows);
                }
            }
        }
        WebhooksCommand::Redeliver(args) => {
            let delivery = args.common.connect.connect().await?.redeliver(args.id).await?;
            match args.common.output {
                OutputFormat::Json => output::print_json(&delivery)?,
                OutputFormat::Text => {
                    output::line(&format!("delivery {} queued ({})", delivery.id, delivery.message_id));
                }
            }
        }
        WebhooksCommand::Rotate(args) => {
            let request = api::RotateWebhookRequest { overlap_secs: args.overlap_secs };
            let rotated = args.common.connect.connect().await?.rotate_webhook(args.id, &request).await?;
            match args.common.output {
                OutputFormat::Json => output::print_json(&rotated)?,
                OutputFormat::Text => output::line(&format!("new secret (shown only now): {}", rotated.secret)),
            }
        }
    }
    Ok(EXIT_OK)
}
