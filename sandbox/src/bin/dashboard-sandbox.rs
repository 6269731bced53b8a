//! `dashboard-sandbox`: serves the touch-points dashboard until interrupted.

use clap::Parser;
use std::net::SocketAddr;
use weft_sandbox::dashboard::DashboardSandbox;

/// A stand-in for our app's touch-points dashboard.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to serve on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// `TENANT=TOKEN` pairs: the bearer token of each tenant (repeatable).
    #[arg(long = "tenant", value_parser = parse_pair, default_value = "demo=demo-dashboard-token")]
    tenants: Vec<(String, String)>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(t, k)| (t.to_owned(), k.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected TENANT=TOKEN"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    weft_sandbox::log_to_stderr();
    let a = Args::parse();
    let tokens = a
        .tenants
        .iter()
        .map(|(t, k)| (k.clone(), t.clone()))
        .collect();
    let d = DashboardSandbox::start(tokens, a.listen).await?;
    println!("url={}", d.url());
    for (t, k) in &a.tenants {
        println!("tenant {t} token={k}");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
