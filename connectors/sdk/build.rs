//! Writes `connector_bindings!` and `webhook_bindings!` with the absolute
//! path of this crate's WIT, so that a connector crate anywhere (a git or
//! path dependency) generates its bindings from the SDK's copy.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let wit = manifest
        .join("wit")
        .canonicalize()
        .expect("weft-sdk: the `wit` directory of the SDK is missing");
    println!("cargo:rerun-if-changed={}", wit.display());
    let connector = wit.join("v0.1.0");
    let webhooks = wit.join("webhooks-v0.1.0");
    let code = format!(
        r#"
/// Generates the bindings of one weft world (`"source-connector"`,
/// `"mapper-connector"` or `"destination-connector"`) in the calling crate:
/// its exports (the `exports` module and the `export!` macro), with every
/// import mapped onto this crate's bindings.
#[macro_export]
macro_rules! connector_bindings {{
    ($world:literal) => {{
        $crate::__private::wit_bindgen::generate!({{
            world: $world,
            path: {connector:?},
            runtime_path: "weft_sdk::__private::rt",
            with: {{
                "weft:connector/types@0.1.0": weft_sdk::types,
                "weft:connector/config@0.1.0": weft_sdk::config,
                "weft:connector/kv@0.1.0": weft_sdk::kv,
                "weft:connector/log@0.1.0": weft_sdk::log,
                "wasi:http/types@0.2.12": weft_sdk::wasi::http::types,
                "wasi:http/outgoing-handler@0.2.12": weft_sdk::wasi::http::outgoing_handler,
                "wasi:io/error@0.2.12": weft_sdk::wasi::io::error,
                "wasi:io/poll@0.2.12": weft_sdk::wasi::io::poll,
                "wasi:io/streams@0.2.12": weft_sdk::wasi::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": weft_sdk::wasi::clocks::monotonic_clock,
            }},
        }});
    }};
}}

/// Generates the bindings of the optional webhook-registration capability
/// (`weft:webhooks/registration`) in the calling module: call it in a module
/// of its own beside [`connector_bindings!`] and `export!` the source there.
#[macro_export]
macro_rules! webhook_bindings {{
    () => {{
        $crate::__private::wit_bindgen::generate!({{
            world: "webhook-registration",
            path: {webhooks:?},
            runtime_path: "weft_sdk::__private::rt",
        }});
    }};
}}
"#,
        connector = connector.display().to_string(),
        webhooks = webhooks.display().to_string(),
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bindings_macros.rs");
    std::fs::write(out, code).unwrap();
}
