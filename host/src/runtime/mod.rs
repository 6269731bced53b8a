//! The runtime: wasmtime's engine and compile cache ([`engine`]), loading,
//! identifying and calling connector components ([`connector`]), the
//! sandbox's limits ([`limits`]), the host's side of the WIT (`bindings`)
//! and the registry of connector versions ([`registry`]).
//!
//! It sits on the capabilities (`caps`, which it links into each instance)
//! and the state (for the registry's index); it knows nothing of flows,
//! tenants' configuration stores or the service.

pub(crate) mod bindings;
pub mod connector;
pub mod engine;
pub mod limits;
pub mod record;
pub mod registry;
