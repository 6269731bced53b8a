//! The one place for generated bindings of the weft WIT contract.
//!
//! One `bindgen!` per world of `wit/v0.1.0`, and one for the optional
//! webhook-registration capability (`wit/webhooks-v0.1.0`). The source world's generated
//! import interfaces are reused by the other two, so that `Record`, `Error`
//! and the host traits exist once. Nothing outside `caps` and `connector`
//! names these paths; the rest of weft uses [`crate::model`].
//!
//! A later contract version gets its own `v0_2_0` module next to this one,
//! plus conversions of its types to the model, and this one stays, so that
//! components built against 0.1.0 keep working.

#![allow(missing_docs)]

/// `bindgen!` of `world` in the contract, with weft's settings (async
/// exports, a store whose data is `Send`, WASI's own bindings for the WASI
/// imports) and `with` for more.
macro_rules! contract_world {
    ($world:tt, { $($with:tt)* }) => {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: $world,
            exports: { default: async },
            require_store_data_send: true,
            with: {
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
                "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                $($with)*
            },
        });
    };
}

pub mod v0_1_0 {
    pub mod source {
        contract_world!("weft:connector/source-connector", {});
    }

    /// The bindings of a world that takes the source world's import
    /// interfaces instead of generating its own.
    macro_rules! sharing_source_imports {
        ($world:tt) => {
            contract_world!($world, {
                "weft:connector/types": super::source::weft::connector::types,
                "weft:connector/config": super::source::weft::connector::config,
                "weft:connector/kv": super::source::weft::connector::kv,
                "weft:connector/log": super::source::weft::connector::log,
            });
        };
    }

    pub mod mapper {
        sharing_source_imports!("weft:connector/mapper-connector");
    }

    pub mod destination {
        sharing_source_imports!("weft:connector/destination-connector");
    }

    pub use source::weft::connector::{config, kv, log, types};
}

/// The optional webhook-registration capability of sources
/// (`wit/webhooks-v0.1.0`), a package of its own beside the contract.
pub mod webhooks_v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/webhooks-v0.1.0",
        world: "weft:webhooks/webhook-registration",
        exports: { default: async },
        require_store_data_send: true,
    });
}
