//! The commands that work the same on a state opened here and against a
//! running `weft serve` (`--server`): written once against `weft::ops::Ops`,
//! so they print the same wherever the state is.

use super::args::*;
use super::output::{print_json, summary};
use super::scope;
use crate::outln;
use std::io::Write;
use std::process::ExitCode;
use weft::ops::Ops;

/// Runs `command` (dead letters, flow state, runs, config export,
/// connectors add and list) over `ops`.
pub(crate) async fn run(ops: &impl Ops, command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Dlq { command } => match command {
            DlqCommand::List { filter } => {
                let list = ops.dead_letters(&scope(filter)).await?;
                for v in &list {
                    let d = &v.dead_letter;
                    let moved = if v.destination_changed {
                        format!(
                            "\t(the flow delivers to {} now)",
                            v.flow_destination.as_deref().unwrap_or("nothing")
                        )
                    } else {
                        String::new()
                    };
                    outln!(
                        "{}\t{}/{}\t{} {}\t{} by {}\tto {}\t{} attempt(s)\t{}{moved}",
                        d.id,
                        d.tenant,
                        d.flow,
                        d.record.kind,
                        d.record.key,
                        d.stage,
                        d.connector,
                        d.destination,
                        d.attempts,
                        d.error
                    );
                }
                if list.is_empty() {
                    eprintln!("no dead letters");
                }
            }
            DlqCommand::Show { id } => print_json(&ops.dead_letter(id).await?)?,
            DlqCommand::Replay { id, filter } => {
                let replayed = if id == "all" {
                    ops.replay_all(&scope(filter)).await?
                } else {
                    vec![ops.replay(id).await?]
                };
                let mut failed = false;
                for r in replayed {
                    match &r.dead_letter {
                        None => outln!("{}: delivered", r.id),
                        Some(d) => {
                            failed = true;
                            outln!(
                                "{}: still failing at {} ({}): {}",
                                r.id,
                                d.stage,
                                d.connector,
                                d.error
                            );
                        }
                    }
                }
                if failed {
                    return Ok(ExitCode::FAILURE);
                }
            }
            DlqCommand::Discard { id } => {
                ops.discard_dead_letter(id).await?;
                outln!("{id}: discarded");
            }
        },
        Command::State { command } => match command {
            StateCommand::Show { filter } => {
                for (tenant, flow) in ops.flows(&scope(filter)).await? {
                    let s = ops.flow_state(&tenant, &flow).await?;
                    outln!(
                        "{tenant}/{flow}\tcursor: {}\t{}",
                        s.cursor.as_deref().unwrap_or("(beginning)"),
                        s.health
                    );
                }
            }
            StateCommand::Reset {
                tenant,
                flow,
                since,
            } => {
                let r = ops.reset_flow(tenant, flow, since.as_deref()).await?;
                outln!(
                    "{tenant}/{flow}: cursor reset to {}",
                    r.cursor.as_deref().unwrap_or("the beginning")
                );
            }
            StateCommand::Copy { .. } => {
                anyhow::bail!(
                    "`weft state copy` works on the state directly: stop `weft serve` and run it without --server"
                )
            }
        },
        Command::Runs { command } => match command {
            RunsCommand::List { filter, limit } => {
                for r in ops.runs(&scope(filter), *limit).await? {
                    outln!("{}", summary(&r));
                }
            }
            RunsCommand::Show { id } => print_json(&ops.run_record(id).await?)?,
        },
        Command::Config {
            command: ConfigCommand::Export,
        } => outln!("{}", ops.export_config().await?),
        Command::Connectors { command } => match command {
            ConnectorsCommand::Add { file } => {
                let a = ops.add_connector(file).await?;
                let e = &a.connector;
                outln!(
                    "{} {}@{} ({}, {})",
                    if a.added {
                        "registered"
                    } else {
                        "already registered"
                    },
                    e.name,
                    e.version,
                    e.world,
                    &e.digest[..12.min(e.digest.len())]
                );
            }
            ConnectorsCommand::List => {
                for v in ops.connectors(None).await? {
                    let e = &v.entry;
                    outln!(
                        "{}@{}\t{}\t{}\t{}",
                        e.name,
                        e.version,
                        e.world,
                        &e.digest[..12.min(e.digest.len())],
                        v.used_by.join(" ")
                    );
                }
            }
            ConnectorsCommand::Inspect { .. } => unreachable!("a command of this process"),
        },
        _ => unreachable!("not a shared command"),
    }
    Ok(ExitCode::SUCCESS)
}
