//! `weft new connector`: writes a connector skeleton that builds, passes its
//! own tests and loads in the host as it is, in Rust, Python or JavaScript,
//! for one world (source, mapper or destination). The templates live in
//! `host/templates/<lang>/` and are compiled into the binary.

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
    /// Parses `--sdk`: a URL (`https://`, `ssh://`, `git@`) or a directory.
    pub fn parse(s: &str) -> Self {
        if s.starts_with("https://") || s.starts_with("ssh://") || s.starts_with("git@") {
            SdkSource::Git(s.to_owned())
        } else {
            SdkSource::Path(PathBuf::from(s))
        }
    }

    /// The SDK of `lang` in the checkout this binary was built from, when
    /// that checkout is still there.
    pub fn from_checkout(lang: Lang) -> Option<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../connectors")
            .join(match lang {
                Lang::Rust => "sdk",
                Lang::Python => "sdk-python",
                Lang::Js => "sdk-js",
            });
        dir.canonicalize().ok().map(SdkSource::Path)
    }
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
            assert!(app.contains("name=\"my-thing\""), "{app}");
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
            assert!(index.contains("name: 'my-thing'"), "{index}");
            for f in ["logic.js", "logic.test.js", "build.mjs", "README.md"] {
                assert!(js.join(f).exists(), "{f}");
            }
        }
        assert!(placeholders("if __name__ == \"__main__\": __NAME__").contains(&"__NAME__"));
    }
}
