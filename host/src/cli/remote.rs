//! `weft --server … run`: queues a run of one flow on the server and, with
//! `--wait`, waits for it to end (the one command that does something else
//! against a server than in this process).

use super::args::*;
use super::output::summary;
use crate::outln;
use anyhow::Context;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use weft::ops::Remote;
use weft::state::{RunOutcome, RunRecord};

/// Queues the run `filter` names; with `wait`, prints its summary once it
/// ended and exits with its outcome.
pub(crate) async fn run(
    api: &Remote,
    server: &str,
    filter: &Filter,
    backfill: bool,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let (Some(t), Some(f)) = (&filter.tenant, &filter.flow) else {
        anyhow::bail!("against a server, `run` needs --tenant and --flow");
    };
    let runs = format!("/v1/runs?tenant={t}&flow={f}&limit=50");
    let ids = |v: &Vec<Value>| -> Vec<String> {
        v.iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    };
    let before = if wait {
        ids(&api.call("GET", &runs, None).await?)
    } else {
        vec![]
    };
    let _: Value = api
        .call(
            "POST",
            &format!("/v1/tenants/{t}/flows/{f}/runs"),
            Some(serde_json::json!({ "backfill": backfill })),
        )
        .await?;
    if !wait {
        outln!("{t}/{f}: queued on {server} (see `weft runs list`)");
        return Ok(ExitCode::SUCCESS);
    }
    // The first run of the flow that was not there before and that an
    // operator asked for (a scheduled or webhook run that ends meanwhile is
    // not this one; a queued manual run merges into a pending backfill),
    // once it ended.
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let list: Vec<Value> = api.call("GET", &runs, None).await?;
        let ended = list.iter().find(|r| {
            r["id"]
                .as_str()
                .is_some_and(|id| !before.iter().any(|b| b == id))
                && matches!(r["trigger"].as_str(), Some("manual" | "backfill"))
                && r["outcome"] != "running"
        });
        if let Some(r) = ended {
            let r: RunRecord =
                serde_json::from_value(r.clone()).context("reading the run's record")?;
            outln!("{}", summary(&r));
            return Ok(if r.outcome == RunOutcome::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
}
