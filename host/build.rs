//! Rebuilds weft when a template of `weft new connector` changes: they are
//! compiled in (`include_dir!`), which stable Rust does not track by itself.

fn main() {
    println!("cargo:rerun-if-changed=templates");
}
