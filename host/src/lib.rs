//! weft: a host runtime for SaaS-integration connectors.
//!
//! Connectors are WebAssembly components (`wasm32-wasip2`) that implement one
//! stage of a flow, as defined by the WIT contract in `wit/`: a **source**
//! fetches pages of changes (or turns webhooks into records), a **mapper**
//! reshapes records, a **destination** delivers them. This crate loads those
//! components into wasmtime and grants each one exactly the capabilities its
//! tenant allows: configuration, a private key-value space, logging and
//! policed outbound HTTP with host-injected credentials.
//!
//! The wiring, in short:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use weft::{HostConfig, Runtime, TenantGrant};
//! let runtime = Runtime::new(HostConfig::default())?;
//! let connector = runtime.load_file("acme-crm.wasm".as_ref()).await?;
//! println!("{}", serde_json::to_string_pretty(&connector.info())?);
//! let grant = TenantGrant::new("northwind");
//! let mut instance = runtime.instantiate(&connector, &grant).await?;
//! let page = instance.fetch("appointments", None).await?;
//! # let _ = page; Ok(()) }
//! ```
//!
//! The rooms, lowest first (each imports only rooms below it; the
//! integration test `layers` checks it): [`model`], [`config`],
//! [`secrets`], [`events`], [`metrics`] (shared vocabulary); [`state`] (the
//! durable state behind one trait: sled, the inbox log, the connectors'
//! kv); [`caps`] (one module per capability granted to a guest, the
//! recording tap of outbound HTTP among them); [`runtime`] (engine,
//! connector loading and calling, limits, the WIT bindings, call
//! recording, the registry of versions); [`Host`] (the parts together);
//! [`flow`] (one run: fetch → map → emit → commit, the version check,
//! webhook batches, replay, and the lease that decides who may write);
//! [`tenants`] (the tenant store and its checks, [`tenants::access`]: who
//! may write what); [`subscriptions`] (webhook subscriptions made for
//! sources); [`service`] (`weft serve`: front door, admin API, webhook
//! intake, scheduler, alerts); [`scaffold`] (`weft new connector`, the
//! SDKs the binary carries) and [`testkit`] (replaying recorded calls
//! offline: `weft test`).

#![deny(missing_docs)]

pub mod caps;
pub mod config;
pub mod events;
pub mod flow;
mod host;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod runtime;
pub mod scaffold;
pub mod secrets;
pub mod service;
pub mod state;
pub mod subscriptions;
pub mod tenants;
pub mod testkit;

pub use caps::http::{Credential, HttpGrants, OriginPattern};
pub use host::Host;
pub use runtime::connector::{
    CallError, Connector, ConnectorInstance, HostConfig, Runtime, TenantGrant, WorldKind,
};
pub use runtime::limits::Limits;

pub use model::{ConnectorError, ConnectorInfo, Operation, Page, Record, StreamInfo};
/// The memory allocator of weft's binaries: the system's on MSVC.
#[cfg(target_env = "msvc")]
pub use std::alloc::System as Allocator;
/// The memory allocator of weft's binaries: jemalloc, where it builds (not
/// on MSVC). Measured in `make bench` (issue 10): glibc's `malloc` and
/// `free` were a sixth of a sync's CPU, and jemalloc cut the CPU per record
/// by about a tenth for a few MiB more peak RSS (freed pages go back after
/// 300 ms: `.cargo/config.toml`). A library does not choose
/// the allocator of the program that embeds it: each binary declares
/// `#[global_allocator] static ALLOC: weft::Allocator = weft::Allocator;`.
#[cfg(not(target_env = "msvc"))]
pub use tikv_jemallocator::Jemalloc as Allocator;
