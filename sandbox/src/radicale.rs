//! Starts a real CalDAV server, Radicale, on a free loopback port with its
//! own temporary storage, and stops it when dropped. Radicale is installed
//! (pinned) into the project's virtualenv `.venv` by `make setup`; set
//! `WEFT_RADICALE` to use another executable.
//!
//! [`Radicale::start`] runs it without authentication (anyone may read and
//! write); [`Radicale::start_with_basic_auth`] requires HTTP Basic against an
//! htpasswd file with the given users, and lets any of them read and write
//! every collection (a service account writing users' calendars).

use anyhow::{Context, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Radicale.
pub struct Radicale {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The Radicale executable: `$WEFT_RADICALE`, or `.venv/bin/radicale` in the
/// repository.
pub fn executable() -> PathBuf {
    if let Ok(p) = std::env::var("WEFT_RADICALE") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/radicale")
}

impl Radicale {
    /// Radicale with no authentication.
    pub fn start() -> anyhow::Result<Self> {
        Self::spawn(None)
    }

    /// Radicale requiring HTTP Basic for `users` (name, password).
    pub fn start_with_basic_auth(users: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::spawn(Some(users))
    }

    fn spawn(users: Option<&[(&str, &str)]>) -> anyhow::Result<Self> {
        let exe = executable();
        if !exe.exists() {
            bail!(
                "{} not found: run `make setup` to install Radicale into .venv",
                exe.display()
            );
        }
        let dir = tempfile::tempdir()?;
        // Ask the OS for a free port, then hand it to Radicale.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let storage = dir.path().join("collections");
        let auth = match users {
            None => {
                // Everyone (including anonymous) may read and write everything.
                let rights = dir.path().join("rights");
                std::fs::write(
                    &rights,
                    "[all]\nuser: .*\ncollection: .*\npermissions: RrWw\n",
                )?;
                format!(
                    "[auth]\ntype = none\n[rights]\ntype = from_file\nfile = {}\n",
                    rights.display()
                )
            }
            Some(users) => {
                let htpasswd = dir.path().join("htpasswd");
                let lines: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
                std::fs::write(&htpasswd, lines)?;
                format!(
                    "[auth]\ntype = htpasswd\nhtpasswd_filename = {}\nhtpasswd_encryption = plain\n[rights]\ntype = authenticated\n",
                    htpasswd.display()
                )
            }
        };
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n[storage]\nfilesystem_folder = {}\n{auth}[logging]\nlevel = warning\n",
                storage.display()
            ),
        )?;
        let log = dir.path().join("radicale.log");
        let child = Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut r = Radicale {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = r.child.try_wait()? {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!("Radicale exited at start ({status}): {}", tail.join(" | "));
            }
            if Instant::now() > deadline {
                bail!("Radicale did not listen on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(r)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
