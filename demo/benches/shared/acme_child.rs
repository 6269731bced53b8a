//! The Acme sandbox in a child process of a bench (the bench's own binary
//! with `WEFT_BENCH_ROLE=acme`), so that the CPU and memory the bench
//! measures are weft's alone. A bench that includes it includes
//! `proc_stat.rs` beside it too.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weft_sandbox::acme::{AcmeConfig, AcmeSandbox};

/// The child's side: serves `config` on a free port, prints the address,
/// and serves until its stdin closes.
pub fn serve(config: AcmeConfig) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let acme = AcmeSandbox::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        println!("{}", acme.addr());
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
        })
        .await
        .unwrap();
    });
}

/// The bench's side: the child, and the root URL it serves.
pub struct Acme {
    pub child: Child,
    pub root: String,
}

impl Acme {
    /// Starts the child and waits for its address.
    pub fn start() -> Acme {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("WEFT_BENCH_ROLE", "acme")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Acme {
            child,
            root: format!("http://{}", line.trim()),
        }
    }

    /// The child's CPU so far (user + system).
    #[allow(dead_code)] // not every bench reads it
    pub fn cpu(&self) -> Duration {
        super::proc_stat::proc_cpu(
            &std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default(),
        )
    }
}

impl Drop for Acme {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
