//! `acme-sandbox`: serves the Acme CRM sandbox until interrupted.

use clap::Parser;
use std::net::SocketAddr;
use weft_sandbox::acme::{AcmeConfig, AcmeSandbox, data::Counts};

/// A stand-in for the Acme CRM API, with generated data and settable faults.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to serve on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Users to generate.
    #[arg(long, default_value_t = 5)]
    users: usize,
    /// Contacts to generate.
    #[arg(long, default_value_t = 60)]
    contacts: usize,
    /// Appointments to generate.
    #[arg(long, default_value_t = 200)]
    appointments: usize,
    /// Activities to generate.
    #[arg(long, default_value_t = 200)]
    activities: usize,
    /// OAuth client ID accepted.
    #[arg(long, default_value = "weft-demo")]
    client_id: String,
    /// OAuth client secret accepted.
    #[arg(long, default_value = "demo-secret")]
    client_secret: String,
    /// API key accepted (`X-Acme-Api-Key`).
    #[arg(long, default_value = "acme-demo-key")]
    api_key: String,
    /// Multiplier of the webhook retry delays (1 = the real schedule).
    #[arg(long, default_value_t = 1.0)]
    webhook_time_scale: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    weft_sandbox::log_to_stderr();
    let a = Args::parse();
    let config = AcmeConfig {
        seed: a.seed,
        counts: Counts {
            users: a.users,
            contacts: a.contacts,
            appointments: a.appointments,
            activities: a.activities,
        },
        client_id: a.client_id.clone(),
        client_secret: a.client_secret.clone(),
        api_key: a.api_key.clone(),
        webhook_time_scale: a.webhook_time_scale,
        ..AcmeConfig::default()
    };
    let sandbox = AcmeSandbox::start(config, a.listen).await?;
    println!("base_url={}", sandbox.base_url());
    println!("client_id={}", a.client_id);
    println!("client_secret={}", a.client_secret);
    println!("api_key={}", a.api_key);
    println!("control={}/_sandbox/", sandbox.root_url());
    println!("openapi={}/openapi.json", sandbox.root_url());
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    sandbox.stop().await;
    Ok(())
}
