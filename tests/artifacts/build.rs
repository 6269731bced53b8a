//! Builds the connectors in `connectors/` and the test components in
//! `tests/components` for `wasm32-wasip2`, once,
//! into `target/guests` (a target directory of their own: a nested cargo on
//! the outer build's directory would wait for its lock forever), and writes a
//! constant with the path of each component, plus `ALL`, into
//! `$OUT_DIR/components.rs`.

use std::path::PathBuf;
use std::process::Command;

/// The arguments of `cargo` that build a guest workspace (release, for
/// `wasm32-wasip2`); the target directory follows them.
const GUEST_BUILD: [&str; 5] = [
    "build",
    "--release",
    "--target",
    "wasm32-wasip2",
    "--target-dir",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let components = root.join("tests/components");
    let connectors = root.join("connectors");
    let wit = root.join("wit");
    for dir in [&components, &connectors, &wit] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let target_dir = root.join("target/guests");
    for workspace in [&connectors, &components] {
        build_guests(workspace, &target_dir);
    }

    let out_dir = target_dir.join("wasm32-wasip2/release");
    let mut code = String::new();
    let mut all = Vec::new();
    for (konst, file) in [
        ("TEST_SOURCE", "test_source.wasm"),
        ("TEST_MAPPER", "test_mapper.wasm"),
        ("TEST_MAPPER_V2", "test_mapper_v2.wasm"),
        ("TEST_DESTINATION", "test_destination.wasm"),
        ("TEST_WRONG_WORLD", "test-wrong-world.wasm"),
        ("TEST_FUTURE_VERSION", "test_future_version.wasm"),
        ("ACME_CRM", "acme_crm.wasm"),
        ("ACME_CALENDAR", "acme_calendar.wasm"),
        ("ACME_CALENDAR_FIXED", "acme_calendar_fixed.wasm"),
        ("ACME_TOUCHPOINTS", "acme_touchpoints.wasm"),
        ("CALDAV", "caldav.wasm"),
        ("DASHBOARD", "dashboard.wasm"),
        ("TEST_HOSTILE", "test_hostile.wasm"),
        ("TEST_HOSTILE_START", "test_hostile_start.wasm"),
        ("TEST_HOSTILE_DESCRIBE", "test_hostile_describe.wasm"),
    ] {
        let path = out_dir.join(file);
        assert!(path.exists(), "{} was not built", path.display());
        code.push_str(&format!(
            "/// Path of `{file}`.\npub const {konst}: &str = {:?};\n",
            path.display().to_string()
        ));
        all.push(konst);
    }
    code.push_str(&format!(
        "/// Every test component, by constant name.\npub const ALL: &[(&str, &str)] = &[{}];\n",
        all.iter()
            .map(|k| format!("({k:?}, {k})"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    code.push_str(&format!(
        "/// The arguments of `cargo` that build the test components (a target\n/// directory follows them).\npub const GUEST_BUILD: &[&str] = &{GUEST_BUILD:?};\n"
    ));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("components.rs");
    std::fs::write(out, code).unwrap();
}

fn build_guests(workspace: &std::path::Path, target_dir: &std::path::Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args(GUEST_BUILD).arg(target_dir);
    // Do not leak the outer build's settings (clippy's wrapper, host flags)
    // into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo for the guest components");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed; is the target installed? run `rustup target add wasm32-wasip2`",
        workspace.display()
    );
}
