//! `weft new connector`: writes a connector skeleton that builds, passes its
//! own tests and loads in the host as it is, in Rust, Python or JavaScript,
//! for one world (source, mapper or destination). The templates live in
//! `host/templates/<lang>/` and are compiled into the binary.
//!
//! `weft sdk path`: the binary carries its three SDKs too (the Rust crate,
//! the Python package, the JavaScript module, each with the WIT inside it)
//! and writes them, once per build, into a per-user data directory, which
//! is where the skeletons point unless `--sdk` says otherwise.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The world the connector implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    /// Pulls pages of changes (and takes webhooks).
    Source,
    /// Reshapes records.
    Mapper,
    /// Delivers records.
    Destination,
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::Source => "source",
            World::Mapper => "mapper",
            World::Destination => "destination",
        }
    }
}

/// The language of the skeleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on `weft-sdk`, built with cargo.
    Rust,
    /// A Python package on the Python SDK, built with componentize-py.
    Python,
    /// A JavaScript module on the JS SDK, built with componentize-js.
    Js,
}

/// Where the skeleton finds the language's SDK: a directory, or for Rust
/// also a git URL (`weft-sdk = { git = … }`).
#[derive(Debug, Clone)]
pub enum SdkSource {
    /// A local directory.
    Path(PathBuf),
    /// A git repository holding `connectors/sdk` (Rust only).
    Git(String),
}

impl SdkSource {
    /// Parses `--sdk`: a git URL (`https://`, `ssh://`, `git://`, `file://`,
    /// `git@`) or a directory.
    pub fn parse(s: &str) -> Self {
        if ["https://", "http://", "ssh://", "git://", "file://", "git@"]
            .iter()
            .any(|p| s.starts_with(p))
        {
            SdkSource::Git(s.to_owned())
        } else {
            SdkSource::Path(PathBuf::from(s))
        }
    }
}

/// The SDKs and the WIT, compiled in (see [`install_sdk`]).
static SDK_RUST: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../connectors/sdk");
static SDK_PYTHON: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../connectors/sdk-python");
static SDK_JS: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../connectors/sdk-js");
static WIT: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../wit");

/// Where `weft sdk path` writes the SDKs: `WEFT_SDK_HOME`, else
/// `$XDG_DATA_HOME/weft/sdk`, else `~/.local/share/weft/sdk`.
pub fn sdk_home() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("WEFT_SDK_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("weft/sdk"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither WEFT_SDK_HOME, XDG_DATA_HOME nor HOME is set: set WEFT_SDK_HOME")?;
    Ok(PathBuf::from(home).join(".local/share/weft/sdk"))
}

/// The files of `lang`'s SDK as this binary carries them: the SDK's own
/// files (no caches, no link to the WIT) and the WIT under `wit/`.
fn sdk_files(lang: Lang) -> Vec<(PathBuf, &'static [u8])> {
    let sdk = match lang {
        Lang::Rust => &SDK_RUST,
        Lang::Python => &SDK_PYTHON,
        Lang::Js => &SDK_JS,
    };
    let mut out = Vec::new();
    let mut stack = vec![(sdk, PathBuf::new()), (&WIT, PathBuf::from("wit"))];
    while let Some((d, prefix)) = stack.pop() {
        for f in d.files() {
            let rel = f.path().strip_prefix(d.path()).expect("under its dir");
            out.push((prefix.join(rel), f.contents()));
        }
        for sub in d.dirs() {
            let name = sub.path().file_name().unwrap_or_default();
            let skip = ["__pycache__", "node_modules", "target"].map(std::ffi::OsStr::new);
            // The checkout's `wit` link is replaced by the WIT itself.
            if skip.contains(&name) || (prefix.as_os_str().is_empty() && name == "wit") {
                continue;
            }
            stack.push((sub, prefix.join(name)));
        }
    }
    out.sort();
    out
}

/// Writes `lang`'s SDK of this build under [`sdk_home`] (once: a directory
/// named by weft's version and a digest of the files is never rewritten)
/// and returns its path.
pub fn install_sdk(lang: Lang) -> anyhow::Result<PathBuf> {
    install_sdk_in(&sdk_home()?, lang)
}

/// [`install_sdk`] under `home`.
pub fn install_sdk_in(home: &Path, lang: Lang) -> anyhow::Result<PathBuf> {
    use sha2::Digest as _;
    let files = sdk_files(lang);
    let mut digest = sha2::Sha256::new();
    for (path, bytes) in &files {
        digest.update(path.to_string_lossy().as_bytes());
        digest.update([0]);
        digest.update(bytes);
    }
    let digest = hex::encode(digest.finalize());
    let dir = home
        .join(format!("{}-{}", env!("CARGO_PKG_VERSION"), &digest[..12]))
        .join(lang.sdk_dir());
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    // Written beside, then renamed: a reader never sees half an SDK.
    let parent = dir.parent().expect("a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)
        .with_context(|| format!("writing under {}", parent.display()))?;
    for (rel, bytes) in &files {
        let path = tmp.path().join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(tmp.path().join(".complete"), b"")?;
    let tmp = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another weft wrote it meanwhile.
        if !dir.join(".complete").exists() {
            return Err(e).with_context(|| format!("moving the SDK into {}", dir.display()));
        }
    }
    Ok(dir)
}

/// Every template, compiled in: `host/templates/{lang}/common/` for every
/// world, then `host/templates/{lang}/{world}/` (a `.tmpl` suffix is
/// dropped: it keeps tools from taking a template for a manifest).
static TEMPLATES: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/templates");

impl Lang {
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The SDK's directory name, as in weft's `connectors/`.
    fn sdk_dir(self) -> &'static str {
        match self {
            Lang::Rust => "sdk",
            Lang::Python => "sdk-python",
            Lang::Js => "sdk-js",
        }
    }
}

/// The files of one skeleton: path relative to the skeleton, and text.
fn templates(lang: Lang, world: World) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for part in ["common", world.name()] {
        let base = format!("{}/{part}", lang.dir());
        let Some(dir) = TEMPLATES.get_dir(&base) else {
            continue;
        };
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            stack.extend(d.dirs());
            for f in d.files() {
                let rel = f
                    .path()
                    .strip_prefix(&base)
                    .expect("under its base")
                    .to_string_lossy()
                    .into_owned();
                let rel = rel.strip_suffix(".tmpl").map(str::to_owned).unwrap_or(rel);
                out.push((rel, f.contents_utf8().expect("templates are UTF-8")));
            }
        }
    }
    out
}

/// Checks a connector name: lowercase ASCII letters, digits and `-`,
/// starting with a letter (it becomes the crate or package name and the
/// `name` of `describe`).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "connector name {name:?}: use lowercase letters, digits and `-`, starting with a letter (e.g. `crm-contacts`)"
        );
    }
    Ok(())
}

/// Writes the skeleton of `name` into `dir` (created; it must not exist or
/// be empty: nothing is overwritten) and returns the files written.
pub fn new_connector(
    dir: &Path,
    name: &str,
    world: World,
    lang: Lang,
    sdk: &SdkSource,
) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; weft new writes only into a new or empty directory",
            dir.display()
        );
    }
    let files = templates(lang, world);
    if files.is_empty() {
        bail!("no {lang:?} templates in this build of weft");
    }
    let sdk_dep = match (lang, sdk) {
        (Lang::Rust, SdkSource::Path(p)) => {
            let p = p
                .canonicalize()
                .with_context(|| format!("the SDK directory {}", p.display()))?;
            if !p.join("Cargo.toml").exists() {
                bail!(
                    "{} is not the Rust SDK (no Cargo.toml); pass --sdk with the path of weft's connectors/sdk or a git URL of weft",
                    p.display()
                );
            }
            format!("{{ path = {:?} }}", p.display().to_string())
        }
        (Lang::Rust, SdkSource::Git(url)) => format!("{{ git = {url:?} }}"),
        (_, SdkSource::Path(p)) => p
            .canonicalize()
            .with_context(|| format!("the SDK directory {}", p.display()))?
            .display()
            .to_string(),
        (_, SdkSource::Git(_)) => {
            bail!("--sdk for {lang:?} is a directory (the SDK is not fetched from git)")
        }
    };
    let crate_name = name.replace('-', "_");
    let mut written = Vec::new();
    for (rel, text) in files {
        let text = text
            .replace("__NAME__", name)
            .replace("__CRATE__", &crate_name)
            .replace("__WORLD__", world.name())
            .replace("__SDK_DEP__", &sdk_dep)
            .replace("__SDK_DIR__", &sdk_dep);
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {

    #[test]
    fn git_urls_of_every_scheme_file_included_are_git() {
        for url in [
            "file:///srv/weft",
            "https://x/weft.git",
            "ssh://git@x/weft",
            "git@x:weft",
        ] {
            assert!(matches!(SdkSource::parse(url), SdkSource::Git(_)), "{url}");
        }
        assert!(matches!(
            SdkSource::parse("/srv/weft/sdk"),
            SdkSource::Path(_)
        ));
    }

    #[test]
    fn each_sdk_is_written_once_self_contained_with_its_wit() {
        let home = tempfile::tempdir().unwrap();
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = install_sdk_in(home.path(), lang).unwrap();
            assert!(dir.join("wit/v0.1.0/worlds.wit").is_file(), "{lang:?}");
            assert!(dir.join("wit/webhooks-v0.1.0").is_dir(), "{lang:?}");
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let kind = e.file_type().unwrap();
                    assert!(!kind.is_symlink(), "{}", e.path().display());
                    assert_ne!(e.file_name(), "__pycache__");
                    if kind.is_dir() {
                        stack.push(e.path());
                    }
                }
            }
            // Once: the second call finds it.
            let marker = dir.join("touched");
            std::fs::write(&marker, "").unwrap();
            assert_eq!(install_sdk_in(home.path(), lang).unwrap(), dir);
            assert!(marker.exists());
        }
        let rust = install_sdk_in(home.path(), Lang::Rust).unwrap();
        let manifest = std::fs::read_to_string(rust.join("Cargo.toml")).unwrap();
        assert!(!manifest.contains(".workspace"), "{manifest}");
        assert!(
            install_sdk_in(home.path(), Lang::Python)
                .unwrap()
                .join("pyproject.toml")
                .is_file()
        );
        let js = install_sdk_in(home.path(), Lang::Js).unwrap();
        assert!(js.join("package.json").is_file());
    }
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["crm", "crm-contacts", "a1"] {
            check_name(good).unwrap();
        }
        for bad in ["", "Crm", "1crm", "crm_x", "crm-", "crm x", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_with_files_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let sdk = SdkSource::Git("https://example.com/weft.git".into());
        let e = new_connector(dir.path(), "x", World::Mapper, Lang::Rust, &sdk).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn the_rust_skeleton_names_the_crate_and_the_sdk() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("my-mapper");
        let sdk = SdkSource::Git("https://example.com/weft.git".into());
        new_connector(&out, "my-mapper", World::Mapper, Lang::Rust, &sdk).unwrap();
        let manifest = std::fs::read_to_string(out.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-mapper\""));
        assert!(manifest.contains("weft-sdk = { git = \"https://example.com/weft.git\" }"));
        assert!(manifest.contains("crate-type = [\"cdylib\"]"));
        let lib = std::fs::read_to_string(out.join("src/lib.rs")).unwrap();
        assert!(lib.contains("connector_bindings!(\"mapper-connector\")"));
        assert!(!lib.contains("__"), "every placeholder is filled");
    }

    /// The `__WORD__` placeholders left in `text` (Python's `__name__` is
    /// lowercase, so it is not one).
    fn placeholders(text: &str) -> Vec<&str> {
        text.match_indices("__")
            .filter_map(|(i, _)| {
                let rest = &text[i + 2..];
                let end = rest.find("__")?;
                let word = &rest[..end];
                (!word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                    .then(|| &text[i..i + end + 4])
            })
            .collect()
    }

    #[test]
    fn the_python_and_js_skeletons_name_the_connector_and_the_sdk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sdk")).unwrap();
        let sdk_dir = dir.path().join("sdk").canonicalize().unwrap();
        let sdk = SdkSource::Path(sdk_dir.clone());
        let sdk_text = sdk_dir.display().to_string();
        for world in [World::Source, World::Mapper, World::Destination] {
            let w = world.name();
            let py = dir.path().join(format!("py-{w}"));
            let files = new_connector(&py, "my-thing", world, Lang::Python, &sdk).unwrap();
            for f in &files {
                let text = std::fs::read_to_string(f).unwrap();
                assert_eq!(placeholders(&text), [] as [&str; 0], "{}", f.display());
            }
            let app = std::fs::read_to_string(py.join("app.py")).unwrap();
            assert!(
                app.starts_with(&format!("# world: {w}-connector\n")),
                "{app}"
            );
            // describe names it: `connector_info("my-thing", VERSION, …)`.
            assert!(app.contains("\"my-thing\", VERSION"), "{app}");
            for f in ["logic.py", "test_logic.py", "README.md"] {
                assert!(py.join(f).exists(), "{f}");
            }
            let build = std::fs::read_to_string(py.join("build.sh")).unwrap();
            assert!(build.contains(&format!("sdk=\"{sdk_text}\"")), "{build}");

            let js = dir.path().join(format!("js-{w}"));
            let files = new_connector(&js, "my-thing", world, Lang::Js, &sdk).unwrap();
            for f in &files {
                let text = std::fs::read_to_string(f).unwrap();
                assert_eq!(placeholders(&text), [] as [&str; 0], "{}", f.display());
            }
            let pkg: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(js.join("package.json")).unwrap())
                    .unwrap();
            assert_eq!(pkg["name"], "my-thing");
            assert_eq!(pkg["weft"]["world"], format!("{w}-connector"));
            let index = std::fs::read_to_string(js.join("index.js")).unwrap();
            assert!(
                index.contains(&format!("from '{sdk_text}/index.js'")),
                "{index}"
            );
            assert!(index.contains("connectorInfo('my-thing'"), "{index}");
            for f in ["logic.js", "logic.test.js", "build.mjs", "README.md"] {
                assert!(js.join(f).exists(), "{f}");
            }
        }
        assert!(placeholders("if __name__ == \"__main__\": __NAME__").contains(&"__NAME__"));
    }
}
