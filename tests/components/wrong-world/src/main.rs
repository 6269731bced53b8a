//! A valid component that is not a weft connector: a `wasi:cli` command.
//! `weft connectors inspect` must say so instead of failing obscurely.

fn main() {
    println!("I am a command, not a connector");
}
