//! The rooms of `host/src` and their order (issue 21): a room may name only
//! rooms below it. Every `crate::…` path outside comments is read; a path
//! into a higher room fails the test with the file, the line and both
//! rooms. A new module must be given its place in [`ROOMS`] first.
//!
//! `crate::Host` is the one name every room above the runtime may use: the
//! flows and the tenant store add `impl Host` blocks to it, and `host.rs`
//! assembles it from them.

use std::path::{Path, PathBuf};

/// Rooms, lowest first; a module path is placed by its longest prefix.
const ROOMS: &[(&str, u32)] = &[
    // Shared vocabulary and the contract the capabilities implement.
    ("model", 0),
    ("events", 0),
    ("runtime::bindings", 0),
    ("runtime::limits", 0),
    ("state", 1),
    ("metrics", 2),
    ("secrets", 2),
    ("caps", 3),
    ("config", 4),
    ("runtime", 5),
    ("flow", 6),
    ("tenants", 7),
    ("host", 8),
    ("subscriptions", 9),
    ("ops", 10),
    ("service", 11),
    ("scaffold", 12),
    ("testkit", 12),
    // The binary (`main.rs` and `cli/`): its `crate::` is itself.
    ("cli", 13),
    ("outln", 13),
];

fn rank(module: &str) -> Option<(&'static str, u32)> {
    ROOMS
        .iter()
        .filter(|(room, _)| module == *room || module.starts_with(&format!("{room}::")))
        .max_by_key(|(room, _)| room.len())
        .map(|(room, r)| (*room, *r))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `state/sled.rs` → `state::sled`; `flow/mod.rs` → `flow`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    parts.join("::")
}

/// Every `crate::a::b` named on a line (the first two segments).
fn paths(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        let segs: Vec<&str> = after[..end].split("::").filter(|s| !s.is_empty()).collect();
        out.push(segs.iter().take(2).copied().collect::<Vec<_>>().join("::"));
        rest = &after[end..];
    }
    out
}

#[test]
fn no_room_names_a_room_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = vec![];
    for file in files(&src) {
        let module = module_of(&src, &file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some((room, mine)) = rank(&module) else {
            wrong.push(format!(
                "{module}: not in ROOMS (give the new module its place)"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for target in paths(code) {
                if target == "Host" || target.starts_with("Host::") {
                    continue;
                }
                match rank(&target) {
                    Some((to, theirs)) if theirs > mine => wrong.push(format!(
                        "{}:{}: {room} names {to}, a room above it: {}",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        line.trim()
                    )),
                    Some(_) => {}
                    // `crate::Limits` and other re-exports at the root.
                    None if target.starts_with(char::is_uppercase) => {}
                    None => wrong.push(format!("{module}: names crate::{target}, not in ROOMS")),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_a_room_that_names_a_higher_one() {
    assert_eq!(
        paths("use crate::flow::lease::Leases; x crate::Host"),
        ["flow::lease", "Host"]
    );
    assert_eq!(
        module_of(Path::new("/s"), Path::new("/s/flow/mod.rs")),
        "flow"
    );
    let (_, state) = rank("state::sled").unwrap();
    let (_, service) = rank("service").unwrap();
    assert!(service > state);
    assert_eq!(rank("runtime::bindings").unwrap().1, 0);
    assert_eq!(rank("runtime::connector").unwrap().1, 5);
}
