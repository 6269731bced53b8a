//! `weft new connector`: the skeleton of each world, written outside the
//! repository with the SDK the `weft` binary carries (`weft sdk path`, the
//! default), a copy of it, or a `file://` git URL of this repository, builds for
//! `wasm32-wasip2`, passes its own `cargo test`, is a weft component for
//! `weft connectors inspect`, and runs in a flow. The same for the Python
//! skeletons (`python3 -m unittest`, `sh build.sh` with the componentize-py of
//! `make guests-python`) and the JavaScript ones (`node --test`,
//! `node build.mjs` with the componentize-js of `make guests-js`), against
//! the same local servers.

use crate::common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use weft::Host;
use weft::state::RunOutcome;
use weft_test_artifacts as artifacts;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

/// A cargo for the skeleton, without the outer build's settings.
fn cargo(dir: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(dir);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(var);
    }
    c
}

fn check(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes, tests and builds the skeleton of `world`; returns the component.
fn skeleton(parent: &Path, world: &str, sdk: Option<&str>) -> PathBuf {
    let name = format!("my-{world}");
    let dir = parent.join(&name);
    let mut new = sdk_weft(parent);
    new.args([
        "new",
        "connector",
        &name,
        "--world",
        world,
        "--lang",
        "rust",
    ])
    .arg("--dir")
    .arg(&dir);
    if let Some(sdk) = sdk {
        new.args(["--sdk", sdk]);
    }
    check(&mut new, "weft new connector");
    // The skeleton's own tests, natively (the target directory `make test`
    // uses for the connectors' unit tests, so dependencies are built once).
    let out = check(
        cargo(&dir)
            .args(["test", "--target-dir"])
            .arg(repo().join("target/guests-host")),
        "cargo test of the skeleton",
    );
    assert!(!out.contains(" 0 passed"), "the skeleton has tests: {out}");
    // The component, built as the test components are and beside them
    // (same dependencies).
    let target = repo().join("target/guests");
    check(
        cargo(&dir).args(artifacts::GUEST_BUILD).arg(&target),
        "cargo build of the skeleton",
    );
    let wasm = target.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    ));
    let shown: Value = serde_json::from_str(&check(
        weft().args(["connectors", "inspect"]).arg(&wasm),
        "weft connectors inspect",
    ))
    .unwrap();
    assert_eq!(shown["describe"]["name"], name.as_str(), "{shown}");
    assert_eq!(shown["world"], world, "{shown}");
    wasm
}

async fn run(h: &Host) -> weft::state::RunRecord {
    let r = run_manual(h, "sync").await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    r
}

/// The bodies a recording server was sent with `PUT`, by path.
fn puts(server: &TestServer) -> Vec<(String, Value)> {
    server
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .map(|s| (s.path, serde_json::from_slice(&s.body).unwrap()))
        .collect()
}

/// `weft` with its SDKs written under `parent` (not the user's data
/// directory).
fn sdk_weft(parent: &Path) -> Command {
    let mut c = weft();
    c.env("WEFT_SDK_HOME", parent.join("sdk-home"));
    c
}

/// `weft sdk path --lang lang`.
fn sdk_path(parent: &Path, lang: &str) -> PathBuf {
    let out = check(
        sdk_weft(parent).args(["sdk", "path", "--lang", lang]),
        "weft sdk path",
    );
    PathBuf::from(out.trim())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let kind = e.file_type().unwrap();
        assert!(!kind.is_symlink(), "{} is a link", e.path().display());
        if kind.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The three skeletons with the Rust SDK from three places: the one the
/// binary carries (the default), a copy of it elsewhere (self-contained:
/// no workspace inheritance, no link into the tree, the WIT inside), and a
/// `file://` git URL of this repository.
#[tokio::test(flavor = "multi_thread")]
async fn each_world_s_skeleton_builds_tests_loads_and_runs_in_a_flow() {
    let parent = tempfile::tempdir().unwrap();
    let source = skeleton(parent.path(), "source", None);
    let sdk = sdk_path(parent.path(), "rust");
    assert!(
        sdk.starts_with(parent.path().join("sdk-home")),
        "{}",
        sdk.display()
    );
    let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap();
    assert!(!manifest.contains(".workspace"), "{manifest}");
    assert!(sdk.join("wit/v0.1.0/worlds.wit").is_file());
    let copy = parent.path().join("elsewhere/weft-sdk");
    copy_dir(&sdk, &copy);
    let mapper = skeleton(parent.path(), "mapper", Some(copy.to_str().unwrap()));
    let url = format!("file://{}", repo().display());
    let destination = skeleton(parent.path(), "destination", Some(&url));
    let data = parent.path().join("data");
    skeletons_run_in_flows(&data, &source, &mapper, &destination).await;
}

/// Writes the skeleton of `world` in `lang` with `weft new connector`, with
/// the SDK the binary carries; returns its name and folder.
fn new_skeleton(parent: &Path, world: &str, lang: &str) -> (String, PathBuf) {
    let name = format!("my-{world}");
    let dir = parent.join(&name);
    check(
        sdk_weft(parent)
            .args(["new", "connector", &name, "--world", world, "--lang", lang])
            .arg("--dir")
            .arg(&dir),
        "weft new connector",
    );
    (name, dir)
}

/// `weft connectors inspect` of a skeleton's component, with a configuration
/// whose `data_dir` is `data`: the large component is compiled once, into
/// the cache that the flows' host (same `data_dir`) then finds.
fn inspect(wasm: &Path, name: &str, world: &str, data: &Path) {
    let config = data.with_extension("toml");
    std::fs::write(&config, format!("data_dir = {data:?}\n")).unwrap();
    let shown: Value = serde_json::from_str(&check(
        weft()
            .args(["connectors", "inspect"])
            .arg(wasm)
            .env("WEFT_CONFIG", &config),
        "weft connectors inspect",
    ))
    .unwrap();
    assert_eq!(shown["describe"]["name"], name, "{shown}");
    assert_eq!(shown["describe"]["version"], "0.1.0", "{shown}");
    assert_eq!(shown["world"], world, "{shown}");
}

/// `path` of the checkout, which `by` installs: it must be there.
fn installed(path: &str, by: &str) -> PathBuf {
    let path = repo().join(path);
    assert!(
        path.exists(),
        "{} is missing: run `{by}` first",
        path.display()
    );
    path
}

/// Writes, tests and builds the Python skeleton of `world`; returns the
/// component.
fn python_skeleton(parent: &Path, world: &str, data: &Path) -> PathBuf {
    let cpy = installed(".venv/bin/componentize-py", "make guests-python");
    let (name, dir) = new_skeleton(parent, world, "python");
    // The logic's own tests, natively (unittest reports on stderr).
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 -m unittest: {report}");
    assert!(
        report.contains("\nOK") && !report.contains("Ran 0 tests"),
        "the skeleton has tests: {report}"
    );
    // build.sh as it is, with the pinned componentize-py an author installs.
    check(
        Command::new("sh")
            .arg("build.sh")
            .env("COMPONENTIZE_PY", &cpy)
            .current_dir(&dir),
        "sh build.sh",
    );
    let wasm = dir.join(format!("target/{name}.wasm"));
    inspect(&wasm, &name, world, data);
    wasm
}

/// Writes, tests and builds the JavaScript skeleton of `world`; returns the
/// component.
fn js_skeleton(parent: &Path, world: &str, data: &Path) -> PathBuf {
    installed(
        "js/node_modules/@bytecodealliance/componentize-js",
        "make guests-js",
    );
    // The SDK the binary carries packs as an npm package.
    check(
        Command::new("npm")
            .args(["pack", "--dry-run"])
            .current_dir(sdk_path(parent, "js")),
        "npm pack of the JS SDK",
    );
    let (name, dir) = new_skeleton(parent, world, "js");
    // What `npm install` puts there (package.json pins componentize-js):
    // the checkout's, installed by `make guests-js`.
    std::os::unix::fs::symlink(repo().join("js/node_modules"), dir.join("node_modules")).unwrap();
    let out = check(
        Command::new("node").arg("--test").current_dir(&dir),
        "node --test",
    );
    assert!(
        out.contains("# fail 0") && !out.contains("# pass 0"),
        "the skeleton has tests: {out}"
    );
    check(
        Command::new("node").arg("build.mjs").current_dir(&dir),
        "node build.mjs",
    );
    let wasm = dir.join(format!("target/{name}.wasm"));
    inspect(&wasm, &name, world, data);
    wasm
}

/// A `weft.toml` with the data directory `data` and one flow, tenant
/// `acme`'s `sync`, of `stages`.
fn sync_flow(data: &Path, stages: &str) -> String {
    format!(
        "data_dir = {data:?}\nprivate_hosts = [\"127.0.0.1\"]\n\n[tenants.acme.flows.sync]\n{stages}\n"
    )
}

/// The flows of the Rust test, with the components of another language:
/// source → mapper → destination against a paged API and a sink, then the
/// destination behind the test source. Every host uses `data` (where
/// `inspect` compiled the components already).
async fn skeletons_run_in_flows(data: &Path, source: &Path, mapper: &Path, destination: &Path) {
    let api = TestServer::start(|s, _| {
        let page = if s.path.contains("cursor=p2") {
            json!({ "items": [{"id": 3, "updated_at": "2026-01-03T00:00:00Z", "title": "c"}], "next": null })
        } else {
            json!({ "items": [
                {"id": 1, "updated_at": "2026-01-01T00:00:00Z", "title": "a"},
                {"id": 2, "updated_at": "2026-01-02T00:00:00Z", "title": "b"}
            ], "next": "p2" })
        };
        Reply::ok(page.to_string()).header("content-type", "application/json")
    })
    .await;
    let sink = TestServer::start(|_, _| Reply::new(201, "")).await;
    let stages = format!(
        r#"source = {{ connector = "my-source@0.1.0", stream = "items", config = {{ base_url = "{api}" }}, http = {{ allow = ["{api}"] }} }}
mappers = [{{ connector = "my-mapper@0.1.0", config = {{ field = "title" }} }}]
destination = {{ connector = "my-destination@0.1.0", config = {{ base_url = "{sink}/things" }}, http = {{ allow = ["{sink}"] }} }}"#,
        api = api.origin(),
        sink = sink.origin(),
    );
    let h = host_with(&sync_flow(data, &stages), &[source, mapper, destination]).await;
    let r = run(&h).await;
    assert_eq!(r.emitted, 3);
    let mut got = puts(&sink);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "/things/1".to_string(),
                json!({"id": 1, "updated_at": "2026-01-01T00:00:00Z", "title": "A"})
            ),
            (
                "/things/2".to_string(),
                json!({"id": 2, "updated_at": "2026-01-02T00:00:00Z", "title": "B"})
            ),
            (
                "/things/3".to_string(),
                json!({"id": 3, "updated_at": "2026-01-03T00:00:00Z", "title": "C"})
            ),
        ]
    );
    let asked: Vec<String> = api.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(asked, ["/items?limit=100", "/items?limit=100&cursor=p2"]);
    drop(h);

    // The destination skeleton behind the test source, alone (a new state,
    // the same compile cache).
    let sink2 = TestServer::start(|_, _| Reply::new(201, "")).await;
    let stages = format!(
        r#"source = {{ connector = "test-source@^1", stream = "numbers", config = {{ total = 5, page_size = 5 }} }}
destination = {{ connector = "my-destination@0.1.0", config = {{ base_url = "{sink}" }}, http = {{ allow = ["{sink}"] }} }}"#,
        sink = sink2.origin(),
    );
    let components = [artifacts::TEST_SOURCE.as_ref(), destination];
    let h = host_with(&sync_flow(data, &stages), &components).await;
    run(&h).await;
    assert_eq!(puts(&sink2).len(), 5);
}

/// The skeleton of each world, written, tested and built by `skeleton`
/// (parent folder, world, data directory), in [`skeletons_run_in_flows`].
async fn each_world_s_skeleton_runs_in_flows(skeleton: fn(&Path, &str, &Path) -> PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let [source, mapper, destination] =
        ["source", "mapper", "destination"].map(|world| skeleton(parent.path(), world, &data));
    skeletons_run_in_flows(&data, &source, &mapper, &destination).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_world_s_python_skeleton_tests_builds_loads_and_runs_in_a_flow() {
    each_world_s_skeleton_runs_in_flows(python_skeleton).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_world_s_js_skeleton_tests_builds_loads_and_runs_in_a_flow() {
    each_world_s_skeleton_runs_in_flows(js_skeleton).await;
}

/// Issue 20, item 6: `weft new connector` required `--world` though the
/// README calls the skeleton a mapper, and `weft connectors add` in a
/// folder without `weft.toml` failed (`reading weft.toml: No such file`)
/// where the default data directory would serve. Now the world defaults to
/// `mapper`, and without a `weft.toml` (and no `--config`) the defaults are
/// used, with the state in `.weft`.
#[test]
fn a_mapper_by_default_and_no_weft_toml_needed() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft()
        .current_dir(dir.path())
        .args(["new", "connector", "plain", "--lang", "rust", "--sdk"])
        .arg(repo().join("connectors/sdk"))
        .env_remove("WEFT_CONFIG")
        .output()
        .unwrap();
    assert_success(&out);
    let lib = std::fs::read_to_string(dir.path().join("plain/src/lib.rs")).unwrap();
    assert!(lib.contains("mapper-connector"), "{lib}");
    let add = weft()
        .current_dir(dir.path())
        .args(["connectors", "add", artifacts::TEST_SOURCE])
        .env_remove("WEFT_CONFIG")
        .output()
        .unwrap();
    assert_success(&add);
    assert!(dir.path().join(".weft").is_dir());
    let list = weft()
        .current_dir(dir.path())
        .args(["connectors", "list"])
        .env_remove("WEFT_CONFIG")
        .output()
        .unwrap();
    assert_success(&list);
    assert!(String::from_utf8_lossy(&list.stdout).contains("test-source@"));
    // An explicit --config that does not exist is still an error.
    let missing = weft()
        .current_dir(dir.path())
        .args(["--config", "nope.toml", "connectors", "list"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
}
