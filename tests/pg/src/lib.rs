//! A throwaway PostgreSQL for tests and benches: a cluster in a temporary
//! directory, listening on 127.0.0.1 on a port the OS picked (and on a
//! Unix socket in that directory), stopped and deleted when dropped.
//!
//! PostgreSQL 15 from Debian's packages (`make setup` installs it):
//! `/usr/lib/postgresql/15/bin`, or `$WEFT_PG_BIN`. `initdb` refuses to run
//! as root, so when the tests run as root (as CI does) every PostgreSQL
//! program runs as the `postgres` user (`runuser -u postgres --`), in a
//! directory handed to that user.
//!
//! `initdb` runs once per machine and PostgreSQL version into a template
//! beside the build (`target/tmp/pg-template-*`); each server starts from a
//! copy of it, which takes a tenth of the time.

use anyhow::{Context, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The user every PostgreSQL program runs as when the tests run as root.
const PG_USER: &str = "postgres";

/// The superuser of the test clusters (trust authentication on loopback).
pub const SUPERUSER: &str = "weft";

/// A running PostgreSQL.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    /// The server's options, for [`Postgres::restart`].
    options: String,
}

/// Where PostgreSQL's programs are.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("WEFT_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn is_root() -> bool {
    // `id -u` rather than libc: this crate has no unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs PostgreSQL's `program` (as `postgres` when we are root).
fn pg(bin: &Path, program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let exe = bin.join(program);
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_USER, "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    c.args(args);
    let out = c
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Hands `path` to the `postgres` user when we are root.
fn hand_over(path: &Path) -> anyhow::Result<()> {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", PG_USER])
            .arg(path)
            .status()?
            .success();
        anyhow::ensure!(ok, "chown {PG_USER} {}", path.display());
    }
    Ok(())
}

/// The template cluster, made by `initdb` the first time.
fn template(bin: &Path) -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp"));
    let name = format!(
        "pg-template-{}",
        bin.to_string_lossy()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let done = base.join(&name);
    if done.join("PG_VERSION").exists() {
        return Ok(done);
    }
    std::fs::create_dir_all(&base)?;
    // Made aside and renamed into place: processes racing here each make
    // one, and one rename wins.
    let work = tempfile::Builder::new()
        .prefix(".pg-template")
        .tempdir_in(&base)?;
    hand_over(work.path())?;
    let data = work.path().join("data");
    pg(
        bin,
        "initdb",
        &[
            "-D",
            &data.to_string_lossy(),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
    )?;
    match std::fs::rename(&data, &done) {
        Ok(()) => Ok(done),
        Err(_) if done.join("PG_VERSION").exists() => Ok(done),
        Err(e) => Err(e).context("placing the template cluster"),
    }
}

impl Postgres {
    /// Starts a cluster with `fsync` off (tests lose nothing to a crash of
    /// the machine that matters).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&["-c", "fsync=off", "-c", "synchronous_commit=off"])
    }

    /// Starts a cluster with PostgreSQL's durable defaults (benches).
    pub fn start_durable() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// A durable cluster for a bench, with `pg_stat_statements` loaded when
    /// `WEFT_BENCH_PG_STATS` is set (then the `bool` is true and
    /// [`Self::top_statements`] can say where the server's time went).
    pub fn for_bench() -> anyhow::Result<(Self, bool)> {
        let stats = std::env::var_os("WEFT_BENCH_PG_STATS").is_some();
        let pg = if stats {
            Self::start_with(&["-c", "shared_preload_libraries=pg_stat_statements"])
        } else {
            Self::start_durable()
        }?;
        Ok((pg, stats))
    }

    /// Starts a cluster with extra server settings (`["-c", "name=value"]`).
    pub fn start_with(settings: &[&str]) -> anyhow::Result<Self> {
        let bin = bin_dir();
        if !bin.join("initdb").exists() {
            bail!(
                "PostgreSQL not found in {}: run `make setup` (installs Debian's postgresql), or set WEFT_PG_BIN",
                bin.display()
            );
        }
        let template = template(&bin)?;
        let dir = tempfile::Builder::new().prefix("weft-pg").tempdir()?;
        let data = dir.path().join("data");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&data)
            .status()?
            .success();
        anyhow::ensure!(ok, "copying the template cluster");
        hand_over(dir.path())?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            dir.path().display()
        );
        for s in settings {
            options.push(' ');
            options.push_str(s);
        }
        let pg = Postgres {
            dir,
            port,
            bin,
            options,
        };
        pg.restart()?;
        Ok(pg)
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port
    /// and data.
    pub fn restart(&self) -> anyhow::Result<()> {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &self.options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .with_context(|| format!("starting PostgreSQL; its log: {}", self.log()))?;
        Ok(())
    }

    /// Stops the server at once (`-m immediate`: as if it crashed).
    pub fn stop(&self) -> anyhow::Result<()> {
        let data = self.dir.path().join("data");
        pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )?;
        Ok(())
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        self.client("createdb", &[name])?;
        Ok(self.url(name))
    }

    /// Runs client `program` against this server as the superuser.
    fn client(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER];
        all.extend_from_slice(args);
        pg(&self.bin, program, &all)
    }

    /// CPU time the server has used so far (user + system): the postmaster
    /// with its ended children, and the backends alive now (Linux `/proc`,
    /// clock ticks of 10 ms). For benches: weft's own CPU does not show
    /// what its queries cost.
    pub fn cpu(&self) -> std::time::Duration {
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        else {
            return std::time::Duration::ZERO;
        };
        // (ppid, utime + stime, cutime + cstime) of a process.
        let stat = |pid: &str| -> Option<(u32, u64, u64)> {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let f: Vec<&str> = text.rsplit(')').next()?.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            Some((n(1) as u32, n(11) + n(12), n(13) + n(14)))
        };
        let mut ticks = stat(&postmaster.to_string()).map_or(0, |(_, own, ended)| own + ended);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.chars().all(|c| c.is_ascii_digit())
                && let Some((ppid, own, _)) = stat(&name)
                && ppid == postmaster
            {
                ticks += own;
            }
        }
        std::time::Duration::from_millis(ticks * 10)
    }

    /// The `n` statements that took the most of the server's time in
    /// database `db`, as `psql` prints them (calls, milliseconds, the
    /// query's start). Needs a server started with
    /// `shared_preload_libraries=pg_stat_statements` ([`Self::start_with`]).
    pub fn top_statements(&self, db: &str, n: usize) -> anyhow::Result<String> {
        self.psql(
            db,
            &format!(
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
                 SELECT calls, round(total_exec_time) AS ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query \
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT {n}"
            ),
        )
    }

    /// Runs `sql` in database `db` with `psql` and returns what it printed.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = self.client("psql", &["-d", db, "-c", sql])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
