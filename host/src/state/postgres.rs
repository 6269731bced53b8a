//! [`StateStore`] and [`KvStore`] on PostgreSQL: the state of several
//! `weft serve` replicas in one database their operators already run
//! (`[state] backend = "postgres"`).
//!
//! **Blocking, bounded.** The store's traits are synchronous, as sled's
//! calls are (microseconds, no I/O wait worth yielding for). Here each call
//! is one round trip (a statement, or one transaction) run on the store's
//! own small tokio runtime ([`IO_THREADS`] threads, a pool of at most
//! [`POOL_SIZE`] connections), while the calling thread waits; a caller on
//! a multi-threaded tokio runtime waits inside
//! [`tokio::task::block_in_place`], so the runtime moves its other tasks to
//! another worker meanwhile. Making the traits `async` would rewrite every
//! caller of the state (the flows, the service, the CLI) for a backend
//! whose calls take a few hundred microseconds on a local network; the
//! bound is what keeps this honest: at most [`POOL_SIZE`] calls are in the
//! database at once, the rest queue for a connection.
//!
//! **Durable when it returns.** Every write commits before it returns
//! (`synchronous_commit` as the server has it), so [`StateStore::flush`]
//! and [`StateStore::inbox_sync`] have nothing left to do, and a webhook
//! delivery is durable when `inbox_append` returns. Connectors' kv writes
//! are the exception: they commit without waiting for the disk, and are
//! made durable before the connector's next request and with the page's
//! commit (see [`PgKv`]).
//!
//! **Shared, not cached.** Nothing a replica must agree on is kept in this
//! process: commit stamps, dead-letter counts, kv usage and webhook IDs
//! are rows. `commit_page` is one transaction that first bumps the scope's
//! stamp, which also serializes commits to one scope across replicas.
//!
//! The schema is created and migrated at open ([`MIGRATIONS`], in order,
//! each in its own transaction, under an advisory lock so that replicas
//! starting together do not race).

use super::*;
use crate::state::kv::{KvError, KvQuota, KvSpace, KvStore};
use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// Threads of the store's own runtime, which drive its connections.
pub const IO_THREADS: usize = 2;

/// Connections the store opens at most.
pub const POOL_SIZE: usize = 16;

/// How long one state call may take, connecting included.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long connecting may take unless the URL says (`connect_timeout`).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The advisory lock key migrations hold (`weft` in ASCII).
const MIGRATION_LOCK: i64 = 0x7765_6674;

/// The schema, one step a version. A step that has run is never changed:
/// a change is a new step.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE cursors (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, cursor TEXT NOT NULL,
    PRIMARY KEY (tenant, flow));
CREATE TABLE deliveries (
    tenant TEXT NOT NULL, scope TEXT NOT NULL, key TEXT COLLATE "C" NOT NULL,
    entry BYTEA NOT NULL,
    PRIMARY KEY (tenant, scope, key));
CREATE TABLE scope_stamps (
    tenant TEXT NOT NULL, scope TEXT NOT NULL, stamp BIGINT NOT NULL,
    PRIMARY KEY (tenant, scope));
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, flow TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL, record_key TEXT COLLATE "C" NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, flow);
CREATE TABLE runs (
    id TEXT COLLATE "C" PRIMARY KEY, tenant TEXT NOT NULL, flow TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX runs_by_flow ON runs (tenant, flow, id);
CREATE TABLE attention (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (tenant, flow));
CREATE TABLE fingerprints (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, fingerprint TEXT NOT NULL,
    PRIMARY KEY (tenant, flow));
CREATE TABLE connectors (
    name TEXT NOT NULL, version TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE docs (
    kind TEXT NOT NULL, id TEXT COLLATE "C" NOT NULL, value BYTEA NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE inbox (seq BIGSERIAL PRIMARY KEY, entry BYTEA NOT NULL);
CREATE TABLE webhook_ids (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, webhook_id TEXT NOT NULL,
    accepted_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, flow, webhook_id));
CREATE INDEX webhook_ids_by_age ON webhook_ids (accepted_ms);
CREATE TABLE kv (
    tenant TEXT NOT NULL, connector TEXT NOT NULL, key TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tenant, connector, key));
CREATE TABLE kv_usage (
    tenant TEXT NOT NULL, connector TEXT NOT NULL,
    bytes BIGINT NOT NULL, keys BIGINT NOT NULL,
    PRIMARY KEY (tenant, connector));
-- One round trip a kv write: the space's usage row is locked, the quota
-- checked against what the write replaces, then both written. Returns
-- NULL, or the usage the write would have made ('bytes' or 'keys', n).
CREATE FUNCTION weft_kv_set(p_tenant TEXT, p_connector TEXT, p_key TEXT,
        p_value BYTEA, p_cost BIGINT, p_max_bytes BIGINT, p_max_keys BIGINT,
        OUT refused TEXT, OUT would_be BIGINT) AS $$
DECLARE
    old_len BIGINT; u_bytes BIGINT; u_keys BIGINT; n_bytes BIGINT; n_keys BIGINT;
BEGIN
    INSERT INTO kv_usage VALUES (p_tenant, p_connector, 0, 0) ON CONFLICT DO NOTHING;
    SELECT bytes, keys INTO u_bytes, u_keys FROM kv_usage
        WHERE tenant = p_tenant AND connector = p_connector FOR UPDATE;
    SELECT octet_length(value) INTO old_len FROM kv
        WHERE tenant = p_tenant AND connector = p_connector AND key = p_key;
    IF old_len IS NULL THEN
        n_bytes := u_bytes + p_cost; n_keys := u_keys + 1;
    ELSE
        n_bytes := u_bytes + octet_length(p_value) - old_len; n_keys := u_keys;
    END IF;
    IF n_bytes > p_max_bytes THEN refused := 'bytes'; would_be := n_bytes; RETURN; END IF;
    IF n_keys > p_max_keys THEN refused := 'keys'; would_be := n_keys; RETURN; END IF;
    INSERT INTO kv VALUES (p_tenant, p_connector, p_key, p_value)
        ON CONFLICT (tenant, connector, key) DO UPDATE SET value = excluded.value;
    UPDATE kv_usage SET bytes = n_bytes, keys = n_keys
        WHERE tenant = p_tenant AND connector = p_connector;
END $$ LANGUAGE plpgsql;
CREATE FUNCTION weft_kv_delete(p_tenant TEXT, p_connector TEXT, p_key TEXT,
        p_fixed BIGINT) RETURNS VOID AS $$
DECLARE old_len BIGINT;
BEGIN
    DELETE FROM kv WHERE tenant = p_tenant AND connector = p_connector AND key = p_key
        RETURNING octet_length(value) INTO old_len;
    IF old_len IS NOT NULL THEN
        UPDATE kv_usage SET bytes = greatest(bytes - (p_fixed + old_len), 0),
            keys = greatest(keys - 1, 0)
            WHERE tenant = p_tenant AND connector = p_connector;
    END IF;
END $$ LANGUAGE plpgsql;
"#,
    ),
    (
        2,
        r#"
-- Replicas. Times are the database's (one clock for all replicas).
CREATE FUNCTION weft_now_ms() RETURNS BIGINT AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
$$ LANGUAGE SQL VOLATILE;
CREATE TABLE leases (
    tenant TEXT NOT NULL, name TEXT NOT NULL,
    replica TEXT NOT NULL, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, name));
CREATE INDEX leases_by_replica ON leases (replica);
CREATE TABLE scheduled_starts (
    tenant TEXT NOT NULL, flow TEXT NOT NULL, started_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, flow));
ALTER TABLE inbox ADD COLUMN claimed_by TEXT, ADD COLUMN claimed_until BIGINT;
CREATE TABLE docs_generation (id INT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO docs_generation VALUES (1, 0);
-- Request buckets every replica takes from: one round trip a request.
CREATE TABLE rate_buckets (
    tenant TEXT NOT NULL, origin TEXT NOT NULL,
    tokens DOUBLE PRECISION NOT NULL, at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, origin));
-- The wait in ms before the request may go (>= 0, the token taken), or
-- -1 - wait when the wait would be over p_max_wait_ms (nothing taken).
CREATE FUNCTION weft_take_token(p_tenant TEXT, p_origin TEXT,
        p_per_second DOUBLE PRECISION, p_burst DOUBLE PRECISION, p_max_wait_ms BIGINT)
        RETURNS BIGINT AS $$
DECLARE now_ms BIGINT := weft_now_ms(); t DOUBLE PRECISION; at BIGINT; wait BIGINT;
BEGIN
    INSERT INTO rate_buckets VALUES (p_tenant, p_origin, p_burst, now_ms) ON CONFLICT DO NOTHING;
    SELECT tokens, at_ms INTO t, at FROM rate_buckets
        WHERE tenant = p_tenant AND origin = p_origin FOR UPDATE;
    t := least(t + greatest(now_ms - at, 0) / 1000.0 * p_per_second, p_burst);
    IF t >= 1 THEN wait := 0;
    ELSE wait := ceil((1 - t) / greatest(p_per_second, 1e-9) * 1000);
    END IF;
    IF wait > p_max_wait_ms THEN
        UPDATE rate_buckets SET tokens = t, at_ms = now_ms
            WHERE tenant = p_tenant AND origin = p_origin;
        RETURN -1 - wait;
    END IF;
    UPDATE rate_buckets SET tokens = t - 1, at_ms = now_ms
        WHERE tenant = p_tenant AND origin = p_origin;
    RETURN wait;
END $$ LANGUAGE plpgsql;
"#,
    ),
];

/// How a process joins the database as a replica.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Its replica ID (default: the host name, the process ID and a random
    /// suffix).
    pub replica: Option<String>,
    /// How long its leases and inbox claims last unless renewed: a replica
    /// that dies is replaced within this time.
    pub lease: std::time::Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            replica: None,
            lease: std::time::Duration::from_secs(30),
        }
    }
}

/// The connection pool and the runtime that drives it, shared by the
/// state and its kv store.
struct Db {
    pool: Pool,
    /// `Some` until dropped (a runtime must not be dropped on a thread of
    /// another runtime: it is shut down in the background instead).
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Db {
    /// What `sql`, a `SELECT count(*)` with one parameter, counts for
    /// `param`.
    fn count(&self, sql: &'static str, param: String) -> anyhow::Result<usize> {
        self.run(move |c| async move {
            let n: i64 = scalar(&c, sql, &[&param]).await?;
            Ok(n as usize)
        })
    }

    /// Runs `f` with a connection on the store's runtime and waits for it.
    fn run<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let rt = self.rt.as_ref().expect("the runtime lives as long as Db");
        let task = rt.spawn(async move {
            // A database that stops answering (a partition, no reset)
            // fails the call instead of holding its thread for ever.
            tokio::time::timeout(CALL_TIMEOUT, async move {
                let client = pool
                    .get()
                    .await
                    .context("getting a connection to PostgreSQL")?;
                f(client).await
            })
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "PostgreSQL did not answer within {} s",
                    CALL_TIMEOUT.as_secs()
                )
            })?
        });
        let wait = move || futures::executor::block_on(task);
        let joined = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        joined.context("a PostgreSQL call panicked")?
    }
}

/// [`StateStore`] on PostgreSQL.
pub struct PgState {
    db: Arc<Db>,
    kv: Arc<PgKv>,
    /// This process's replica ID.
    replica: String,
    /// How long leases and inbox claims last unless renewed.
    lease: std::time::Duration,
    /// Whatever must live as long as the store (a test's server).
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// [`TokenBuckets`] on PostgreSQL (the `rate_buckets` table).
struct PgBuckets {
    db: Arc<Db>,
}

impl TokenBuckets for PgBuckets {
    fn take(
        &self,
        tenant: &str,
        origin: &str,
        per_second: f64,
        burst: u32,
        max_wait: std::time::Duration,
    ) -> anyhow::Result<Result<std::time::Duration, std::time::Duration>> {
        let (t, o) = (tenant.to_owned(), origin.to_owned());
        let (burst, max_wait) = (f64::from(burst), ms(max_wait.as_millis() as u64));
        let wait: i64 = self.db.run(move |c| async move {
            scalar(
                &c,
                "SELECT weft_take_token($1, $2, $3, $4, $5)",
                &[&t, &o, &per_second, &burst, &max_wait],
            )
            .await
        })?;
        let ms = |n: i64| std::time::Duration::from_millis(n.unsigned_abs());
        Ok(if wait >= 0 {
            Ok(ms(wait))
        } else {
            Err(ms(-1 - wait))
        })
    }
}

/// [`KvStore`] on PostgreSQL (the `kv` and `kv_usage` tables).
///
/// A write commits without waiting for the server's disk
/// (`synchronous_commit` off for its transaction): a connector writes a
/// few dozen keys a run (`acme-crm`'s contact index), and a disk sync each
/// made kv writes most of the server's time in a first sync of many small
/// tenants. What a connector wrote is durable before its next request
/// leaves ([`KvStore::flush`], through [`crate::caps::kv::WriteAhead`]) and
/// with the page's commit: both commit a write of their own synchronously,
/// and the server's log is flushed in order, so everything committed
/// before is on disk with them. A crash of weft loses nothing (the server
/// has committed); a crash of the server loses at most the writes after the
/// last such flush, as with sled's write-ahead.
pub struct PgKv {
    db: Arc<Db>,
}

/// The first column of the one row `sql` answers (prepared once per
/// connection and cached).
async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> anyhow::Result<T> {
    Ok(c.query_one(&c.prepare_cached(sql).await?, params)
        .await?
        .get(0))
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json<T: Serialize>(v: &T) -> anyhow::Result<String> {
    serde_json::to_string(v).context("encoding state")
}

fn unjson<T: for<'de> Deserialize<'de>>(v: &str) -> anyhow::Result<T> {
    serde_json::from_str(v).context("decoding state")
}

/// A URL with its password hidden, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(a URL that does not parse)".into(),
    }
}

impl PgState {
    /// Connects to `url` (`postgres://user:password@host:port/db`, with
    /// `?sslmode=require` for TLS checked against the web's root
    /// certificates), creates or migrates the schema, and checks that the
    /// database answers.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        Self::open_with(url, PgOptions::default())
    }

    /// [`PgState::open`] as the replica `options` describe.
    pub fn open_with(url: &str, options: PgOptions) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("the state URL {}", redact(url)))?;
        // Plans made for each execution: the tables start empty and grow
        // by thousands of rows a second in a first sync, and a plan cached
        // while one was empty (a page's `key = ANY($3)` filtering a whole
        // scope instead of looking the keys up) made each page's lookup
        // scan every entry: 84 ms a page, a first sync 7× slower.
        let session = match config.get_options() {
            Some(o) => format!("{o} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_owned(),
        };
        config.options(&session);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .thread_name("weft-postgres")
            .enable_all()
            .build()
            .context("starting the PostgreSQL runtime")?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => {
                Manager::from_config(config, tokio_postgres::NoTls, manager_config)
            }
            _ => {
                let roots = tokio_rustls::rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let tls = tokio_rustls::rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Manager::from_config(
                    config,
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                    manager_config,
                )
            }
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .context("building the PostgreSQL pool")?;
        let db = Arc::new(Db { pool, rt: Some(rt) });
        db.run(move |mut c| async move { migrate(&mut c).await })
            .with_context(|| format!("opening the state database {}", redact(url)))?;
        let replica = options.replica.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "weft".into());
            format!(
                "{host}-{}-{:04x}",
                std::process::id(),
                rand::random::<u16>()
            )
        });
        tracing::info!(replica, "state in PostgreSQL");
        Ok(PgState {
            kv: Arc::new(PgKv { db: db.clone() }),
            db,
            replica,
            lease: options.lease,
            _guard: None,
        })
    }

    /// Keeps `guard` alive as long as the store (a test's database server).
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }
}

/// Applies the steps of [`MIGRATIONS`] the database has not seen, under
/// the migration lock.
async fn migrate(c: &mut Object) -> anyhow::Result<()> {
    c.execute(
        &c.prepare_cached("SELECT pg_advisory_lock($1)").await?,
        &[&MIGRATION_LOCK],
    )
    .await?;
    let result = async {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS weft_migrations (
                version INT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let done: Vec<i32> = c
            .query(&c.prepare_cached("SELECT version FROM weft_migrations").await?, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(newer) = done
            .iter()
            .find(|v| !MIGRATIONS.iter().any(|(m, _)| m == *v))
        {
            anyhow::bail!(
                "the database has schema version {newer}, which this weft does not know: a newer weft wrote it"
            );
        }
        for (version, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            let tx = c.transaction().await?;
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("schema step {version}"))?;
            tx.execute(
                &tx.prepare_cached("INSERT INTO weft_migrations (version) VALUES ($1)").await?,
                &[version],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(version, "PostgreSQL schema step applied");
        }
        Ok(())
    }
    .await;
    c.execute(
        &c.prepare_cached("SELECT pg_advisory_unlock($1)").await?,
        &[&MIGRATION_LOCK],
    )
    .await?;
    result
}

/// Upserts a (tenant, flow) → text row of `table` (`cursors`, ...), or
/// deletes it when `value` is `None`.
async fn put_flow_text(
    c: &(impl tokio_postgres::GenericClient + Sync),
    table: &str,
    column: &str,
    tenant: &str,
    flow: &str,
    value: Option<&str>,
) -> anyhow::Result<()> {
    match value {
        Some(v) => {
            c.execute(
                &format!(
                    "INSERT INTO {table} (tenant, flow, {column}) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant, flow) DO UPDATE SET {column} = excluded.{column}"
                ),
                &[&tenant, &flow, &v],
            )
            .await?
        }
        None => {
            c.execute(
                &format!("DELETE FROM {table} WHERE tenant = $1 AND flow = $2"),
                &[&tenant, &flow],
            )
            .await?
        }
    };
    Ok(())
}

impl PgState {
    /// The JSON `body` of the row `sql` finds by ID (`$1`).
    fn body<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        id: &str,
    ) -> anyhow::Result<Option<T>> {
        let id = id.to_owned();
        self.db.run(move |c| async move {
            c.query_opt(&c.prepare_cached(sql).await?, &[&id])
                .await?
                .map(|r| unjson(r.get(0)))
                .transpose()
        })
    }

    /// The JSON `body` of the rows `sql` lists, filtered by tenant (`$1`)
    /// and flow (`$2`) when given, at most `limit` (`$3`).
    fn bodies<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        tenant: Option<&str>,
        flow: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<T>> {
        let (t, f) = (tenant.map(str::to_owned), flow.map(str::to_owned));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.run(move |c| async move {
            c.query(&c.prepare_cached(sql).await?, &[&t, &f, &limit])
                .await?
                .iter()
                .map(|r| unjson(r.get(0)))
                .collect()
        })
    }

    fn flow_text(
        &self,
        table: &'static str,
        column: &'static str,
        tenant: &str,
        flow: &str,
    ) -> anyhow::Result<Option<String>> {
        let (t, f) = (tenant.to_owned(), flow.to_owned());
        self.db.run(move |c| async move {
            let row = c
                .query_opt(
                    &format!("SELECT {column} FROM {table} WHERE tenant = $1 AND flow = $2"),
                    &[&t, &f],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn set_flow_text(
        &self,
        table: &'static str,
        column: &'static str,
        tenant: &str,
        flow: &str,
        value: Option<&str>,
    ) -> anyhow::Result<()> {
        let (t, f, v) = (tenant.to_owned(), flow.to_owned(), value.map(str::to_owned));
        self.db.run(move |c| async move {
            put_flow_text(&**c, table, column, &t, &f, v.as_deref()).await
        })
    }
}

impl StateStore for PgState {
    fn cursor(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        self.flow_text("cursors", "cursor", tenant, flow)
    }

    fn set_cursor(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()> {
        self.set_flow_text("cursors", "cursor", tenant, flow, cursor)
    }

    /// One transaction: the tenant's entries that name the flow lose its
    /// version, each scope touched gets a new stamp (a page read before
    /// the reset must not write back what it removed), then the cursor.
    fn reset_flow(&self, tenant: &str, flow: &str, cursor: Option<&str>) -> anyhow::Result<()> {
        let (t, f, cur) = (
            tenant.to_owned(),
            flow.to_owned(),
            cursor.map(str::to_owned),
        );
        self.db.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let rows = tx
                .query(
                    &tx.prepare_cached("SELECT scope, key, entry FROM deliveries WHERE tenant = $1 FOR UPDATE").await?,
                    &[&t],
                )
                .await?;
            let mut scopes = std::collections::BTreeSet::new();
            for r in rows {
                let (scope, key, entry): (String, String, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
                let mut d = Delivery::decode(&entry)?;
                let before = d.versions.len();
                d.versions.retain(|(name, _)| *name != f);
                if d.versions.len() != before {
                    tx.execute(
                        &tx.prepare_cached("UPDATE deliveries SET entry = $4 WHERE tenant = $1 AND scope = $2 AND key = $3").await?,
                        &[&t, &scope, &key, &d.encode()?],
                    )
                    .await?;
                    scopes.insert(scope);
                }
            }
            for scope in scopes {
                bump_stamp(&tx, &t, &scope).await?;
            }
            put_flow_text(&*tx, "cursors", "cursor", &t, &f, cur.as_deref()).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn delivery(&self, tenant: &str, scope: &str, key: &str) -> anyhow::Result<Delivery> {
        let (t, s, k) = (tenant.to_owned(), scope.to_owned(), key.to_owned());
        self.db.run(move |c| async move {
            let row = c
                .query_opt(
                    &c.prepare_cached("SELECT entry FROM deliveries WHERE tenant = $1 AND scope = $2 AND key = $3").await?,
                    &[&t, &s, &k],
                )
                .await?;
            match row {
                Some(r) => Delivery::decode(r.get(0)),
                None => Ok(Delivery::default()),
            }
        })
    }

    fn deliveries(
        &self,
        tenant: &str,
        scope: &str,
        keys: &[&str],
    ) -> anyhow::Result<Vec<Delivery>> {
        let (t, s) = (tenant.to_owned(), scope.to_owned());
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.db.run(move |c| async move {
            let mut found: std::collections::HashMap<String, Delivery> = Default::default();
            for r in c
                .query(
                    &c.prepare_cached("SELECT key, entry FROM deliveries WHERE tenant = $1 AND scope = $2 AND key = ANY($3)").await?,
                    &[&t, &s, &keys],
                )
                .await?
            {
                found.insert(r.get(0), Delivery::decode(r.get(1))?);
            }
            Ok(keys.iter().map(|k| found.get(k).cloned().unwrap_or_default()).collect())
        })
    }

    fn flow_fingerprint(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        self.flow_text("fingerprints", "fingerprint", tenant, flow)
    }

    fn set_flow_fingerprint(
        &self,
        tenant: &str,
        flow: &str,
        fingerprint: &str,
    ) -> anyhow::Result<()> {
        self.set_flow_text(
            "fingerprints",
            "fingerprint",
            tenant,
            flow,
            Some(fingerprint),
        )
    }

    fn commit_stamp(&self, tenant: &str, scope: &str) -> anyhow::Result<u64> {
        let (t, s) = (tenant.to_owned(), scope.to_owned());
        self.db.run(move |c| async move {
            let row = c
                .query_opt(
                    &c.prepare_cached(
                        "SELECT stamp FROM scope_stamps WHERE tenant = $1 AND scope = $2",
                    )
                    .await?,
                    &[&t, &s],
                )
                .await?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
        })
    }

    /// One transaction. Bumping the scope's stamp first locks its row, so
    /// commits to one scope (from any replica) take turns, and the entries
    /// read before the page are still the stored ones when the stamp had
    /// not moved: then they are written without being read again.
    fn commit_page(&self, tenant: &str, flow: &str, commit: &PageCommit) -> anyhow::Result<()> {
        let (t, f, commit) = (tenant.to_owned(), flow.to_owned(), commit.clone());
        let replica = self.replica.clone();
        self.db.run(move |mut c| async move {
            let tx = c.transaction().await?;
            // The fence first: the lease row is locked until this commits,
            // so no other replica takes it over in between.
            if let Some(fence) = &commit.fence {
                let held = tx
                    .query_opt(
                        &tx.prepare_cached(
                            "SELECT 1 FROM leases WHERE tenant = $1 AND name = $2 AND replica = $3
                               AND holder = $4 AND expires_ms >= weft_now_ms() FOR SHARE",
                        )
                        .await?,
                        &[&t, &fence.name, &replica, &fence.token],
                    )
                    .await?;
                if held.is_none() {
                    anyhow::bail!(
                        "the page is not committed: this replica's lease on {:?} ran out (a stall or a lost connection outlasted [state] lease_seconds) and another run may hold it now",
                        fence.name
                    );
                }
            }
            let stamp = bump_stamp(&tx, &t, &commit.scope).await?;
            let unchanged = commit.read_at == Some(stamp - 1);
            let any_dead: bool = scalar(&tx, "SELECT EXISTS (SELECT 1 FROM dead_letters WHERE tenant = $1)", &[&t]).await?;
            // Dead letters: repeats count attempts from what is stored.
            if !commit.dead_letters.is_empty() {
                let ids: Vec<&str> = commit.dead_letters.iter().map(|d| d.id.as_str()).collect();
                let mut stored: BTreeMap<String, DeadLetter> = BTreeMap::new();
                for r in tx
                    .query(
                        &tx.prepare_cached("SELECT id, body FROM dead_letters WHERE id = ANY($1) FOR UPDATE").await?,
                        &[&ids],
                    )
                    .await?
                {
                    stored.insert(r.get(0), unjson(r.get(1))?);
                }
                for src in &commit.dead_letters {
                    let mut d = src.clone();
                    if let Some(old) = stored.get(&d.id) {
                        d.attempts = old.attempts + d.attempts.max(1);
                        d.first_seen_ms = old.first_seen_ms;
                    }
                    tx.execute(
                        &tx.prepare_cached("INSERT INTO dead_letters (id, tenant, flow, first_seen_ms, record_key, body)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, flow = excluded.flow,
                           first_seen_ms = excluded.first_seen_ms, record_key = excluded.record_key,
                           body = excluded.body").await?,
                        &[&d.id, &d.tenant, &d.flow, &ms(d.first_seen_ms), &d.record.key, &json(&d)?],
                    )
                    .await?;
                    stored.insert(d.id.clone(), d);
                }
            }
            // Settled: the ones the commit names, and the records' own.
            if any_dead || !commit.dead_letters.is_empty() {
                let resolved: Vec<String> = commit
                    .resolved
                    .iter()
                    .cloned()
                    .chain(commit.records.iter().filter_map(|h| {
                        let kind = h.settles.as_deref()?;
                        Some(DeadLetter::id_for(&t, &commit.scope, kind, &h.key))
                    }))
                    .collect();
                if !resolved.is_empty() {
                    tx.execute(&tx.prepare_cached("DELETE FROM dead_letters WHERE id = ANY($1)").await?, &[&resolved])
                        .await?;
                }
            }
            // The records' entries, each from what was read before the page
            // or, when another commit came in between, from what is stored.
            let mut entries: BTreeMap<&str, Delivery> = BTreeMap::new();
            if !unchanged {
                let keys: Vec<&str> = commit.records.iter().map(|h| h.key.as_str()).collect();
                for r in tx
                    .query(
                        &tx.prepare_cached("SELECT key, entry FROM deliveries
                         WHERE tenant = $1 AND scope = $2 AND key = ANY($3) FOR UPDATE").await?,
                        &[&t, &commit.scope, &keys],
                    )
                    .await?
                {
                    let key: &str = r.get(0);
                    let h = commit.records.iter().find(|h| h.key == key);
                    if let Some(h) = h {
                        entries.insert(h.key.as_str(), Delivery::decode(r.get(1))?);
                    }
                }
            }
            let mut changed: BTreeMap<&str, Delivery> = BTreeMap::new();
            for h in &commit.records {
                let d = changed.entry(h.key.as_str()).or_insert_with(|| {
                    if unchanged {
                        h.before.clone()
                    } else {
                        entries.remove(h.key.as_str()).unwrap_or_default()
                    }
                });
                d.set_version(&f, h.version);
                if h.present.is_some() {
                    d.present = h.present;
                }
            }
            let before_of = |key: &str| -> Delivery {
                commit
                    .records
                    .iter()
                    .find(|h| h.key == key)
                    .map(|h| h.before.clone())
                    .unwrap_or_default()
            };
            let mut keys: Vec<&str> = Vec::new();
            let mut values: Vec<Vec<u8>> = Vec::new();
            for (key, d) in &changed {
                if unchanged && *d == before_of(key) {
                    continue;
                }
                keys.push(key);
                values.push(d.encode()?);
            }
            if !keys.is_empty() {
                tx.execute(
                    &tx.prepare_cached("INSERT INTO deliveries (tenant, scope, key, entry)
                     SELECT $1, $2, k, e FROM UNNEST($3::text[], $4::bytea[]) AS u (k, e)
                     ON CONFLICT (tenant, scope, key) DO UPDATE SET entry = excluded.entry").await?,
                    &[&t, &commit.scope, &keys, &values],
                )
                .await?;
            }
            if let Some(cur) = &commit.cursor {
                put_flow_text(&*tx, "cursors", "cursor", &t, &f, Some(cur)).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn note_sending(&self, tenant: &str, scope: &str, keys: &[&str]) -> anyhow::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let (t, s) = (tenant.to_owned(), scope.to_owned());
        let mut keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        keys.dedup();
        self.db.run(move |mut c| async move {
            let tx = c.transaction().await?;
            bump_stamp(&tx, &t, &s).await?;
            let mut stored: BTreeMap<String, Delivery> = BTreeMap::new();
            for r in tx
                .query(
                    &tx.prepare_cached(
                        "SELECT key, entry FROM deliveries
                         WHERE tenant = $1 AND scope = $2 AND key = ANY($3) FOR UPDATE",
                    )
                    .await?,
                    &[&t, &s, &keys],
                )
                .await?
            {
                stored.insert(r.get(0), Delivery::decode(r.get(1))?);
            }
            let (mut marked, mut values) = (Vec::new(), Vec::new());
            for k in &keys {
                let mut d = stored.remove(k).unwrap_or_default();
                if d.present != Some(true) {
                    d.present = Some(true);
                    marked.push(k.as_str());
                    values.push(d.encode()?);
                }
            }
            if !marked.is_empty() {
                tx.execute(
                    &tx.prepare_cached(
                        "INSERT INTO deliveries (tenant, scope, key, entry)
                         SELECT $1, $2, k, e FROM UNNEST($3::text[], $4::bytea[]) AS u (k, e)
                         ON CONFLICT (tenant, scope, key) DO UPDATE SET entry = excluded.entry",
                    )
                    .await?,
                    &[&t, &s, &marked, &values],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn dead_letter_count(&self, tenant: &str) -> anyhow::Result<usize> {
        let sql = "SELECT count(*) FROM dead_letters WHERE tenant = $1";
        self.db.count(sql, tenant.to_owned())
    }

    fn dead_letters(
        &self,
        tenant: Option<&str>,
        flow: Option<&str>,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        self.bodies(
            "SELECT body FROM dead_letters
             WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR flow = $2)
             ORDER BY first_seen_ms, record_key LIMIT $3",
            tenant,
            flow,
            usize::MAX,
        )
    }

    fn dead_letter(&self, id: &str) -> anyhow::Result<Option<DeadLetter>> {
        self.body("SELECT body FROM dead_letters WHERE id = $1", id)
    }

    fn remove_dead_letter(&self, id: &str) -> anyhow::Result<bool> {
        let id = id.to_owned();
        self.db.run(move |c| async move {
            Ok(c.execute(
                &c.prepare_cached("DELETE FROM dead_letters WHERE id = $1")
                    .await?,
                &[&id],
            )
            .await?
                > 0)
        })
    }

    fn save_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        let (id, t, f, body) = (
            run.id.clone(),
            run.tenant.clone(),
            run.flow.clone(),
            json(run)?,
        );
        self.db.run(move |c| async move {
            c.execute(
                &c.prepare_cached(
                    "INSERT INTO runs (id, tenant, flow, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                )
                .await?,
                &[&id, &t, &f, &body],
            )
            .await?;
            Ok(())
        })
    }

    fn runs(
        &self,
        tenant: Option<&str>,
        flow: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<RunRecord>> {
        self.bodies(
            "SELECT body FROM runs
             WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR flow = $2)
             ORDER BY id DESC LIMIT $3",
            tenant,
            flow,
            limit,
        )
    }

    fn run(&self, id: &str) -> anyhow::Result<Option<RunRecord>> {
        self.body("SELECT body FROM runs WHERE id = $1", id)
    }

    fn prune_runs(&self, keep: usize, before_ms: u64) -> anyhow::Result<usize> {
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        self.db.run(move |c| async move {
            let n = c
                .execute(
                    &c.prepare_cached(
                        "WITH finished AS (
                            SELECT id, (body::jsonb->>'started_ms')::bigint AS started,
                                   row_number() OVER (PARTITION BY tenant, flow ORDER BY id DESC) AS n
                            FROM runs WHERE body::jsonb->>'outcome' <> 'running')
                         DELETE FROM runs USING finished
                         WHERE runs.id = finished.id
                           AND (finished.n > $1 OR (finished.n > 1 AND finished.started < $2))",
                    )
                    .await?,
                    &[&keep, &before],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn set_attention(&self, tenant: &str, flow: &str, reason: Option<&str>) -> anyhow::Result<()> {
        self.set_flow_text("attention", "reason", tenant, flow, reason)
    }

    fn attention(&self, tenant: &str, flow: &str) -> anyhow::Result<Option<String>> {
        self.flow_text("attention", "reason", tenant, flow)
    }

    fn register_connector(&self, entry: &ConnectorEntry) -> anyhow::Result<()> {
        let (name, version, body) = (entry.name.clone(), entry.version.to_string(), json(entry)?);
        self.db.run(move |c| async move {
            c.execute(
                &c.prepare_cached(
                    "INSERT INTO connectors (name, version, body) VALUES ($1, $2, $3)
                 ON CONFLICT (name, version) DO UPDATE SET body = excluded.body",
                )
                .await?,
                &[&name, &version, &body],
            )
            .await?;
            Ok(())
        })
    }

    fn connectors(&self) -> anyhow::Result<Vec<ConnectorEntry>> {
        let mut out: Vec<ConnectorEntry> = self.db.run(move |c| async move {
            c.query(&c.prepare_cached("SELECT body FROM connectors").await?, &[])
                .await?
                .iter()
                .map(|r| unjson(r.get(0)))
                .collect::<anyhow::Result<_>>()
        })?;
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
        Ok(out)
    }

    fn kv(&self) -> Arc<dyn KvStore> {
        self.kv.clone()
    }

    fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn inbox_sync(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn doc_put(&self, kind: &str, id: &str, value: &[u8]) -> anyhow::Result<()> {
        let (k, i, v) = (kind.to_owned(), id.to_owned(), value.to_vec());
        self.db.run(move |c| async move {
            c.execute(
                &c.prepare_cached(
                    "WITH put AS (INSERT INTO docs (kind, id, value) VALUES ($1, $2, $3)
                   ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value)
                 UPDATE docs_generation SET n = n + 1 WHERE id = 1",
                )
                .await?,
                &[&k, &i, &v],
            )
            .await?;
            Ok(())
        })
    }

    fn doc_get(&self, kind: &str, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let (k, i) = (kind.to_owned(), id.to_owned());
        self.db.run(move |c| async move {
            Ok(c.query_opt(
                &c.prepare_cached("SELECT value FROM docs WHERE kind = $1 AND id = $2")
                    .await?,
                &[&k, &i],
            )
            .await?
            .map(|r| r.get(0)))
        })
    }

    fn doc_list(&self, kind: &str, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let (k, p) = (kind.to_owned(), prefix.to_owned());
        self.db.run(move |c| async move {
            Ok(c.query(
                &c.prepare_cached("SELECT id, value FROM docs WHERE kind = $1 AND starts_with(id, $2) ORDER BY id").await?,
                &[&k, &p],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn doc_delete(&self, kind: &str, id: &str) -> anyhow::Result<bool> {
        let (k, i) = (kind.to_owned(), id.to_owned());
        self.db.run(move |c| async move {
            let gone: bool = scalar(
                &c,
                "WITH gone AS (DELETE FROM docs WHERE kind = $1 AND id = $2 RETURNING 1),
                       bumped AS (UPDATE docs_generation SET n = n + 1
                         WHERE id = 1 AND EXISTS (SELECT 1 FROM gone))
                     SELECT EXISTS (SELECT 1 FROM gone)",
                &[&k, &i],
            )
            .await?;
            Ok(gone)
        })
    }

    /// One transaction: each delivery whose (tenant, flow, webhook ID) is
    /// new is remembered and queued; durable when this returns, whichever
    /// replica took it.
    fn inbox_append(&self, deliveries: &[InboxEntry]) -> anyhow::Result<Vec<Option<u64>>> {
        let deliveries = deliveries.to_vec();
        let (replica, lease_ms) = (self.replica.clone(), self.lease_ms());
        self.db.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let mut out = Vec::with_capacity(deliveries.len());
            for d in &deliveries {
                let fresh = tx
                    .execute(
                        &tx.prepare_cached(
                            "INSERT INTO webhook_ids (tenant, flow, webhook_id, accepted_ms)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        )
                        .await?,
                        &[&d.tenant, &d.flow, &d.webhook_id, &ms(d.received_ms)],
                    )
                    .await?
                    == 1;
                out.push(if fresh {
                    let seq: i64 = scalar(
                        &tx,
                        "INSERT INTO inbox (entry, claimed_by, claimed_until)
                             VALUES ($1, $2, weft_now_ms() + $3) RETURNING seq",
                        &[&d.encode(), &replica, &lease_ms],
                    )
                    .await?;
                    Some(seq as u64)
                } else {
                    None
                });
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// The deliveries this replica may process: its own, and those no
    /// live replica claims (claimed for it now).
    fn inbox_pending(&self) -> anyhow::Result<Vec<InboxEntry>> {
        self.claim_inbox(true)
    }

    fn inbox_adopt(&self) -> anyhow::Result<Vec<InboxEntry>> {
        self.claim_inbox(false)
    }

    fn inbox_done(&self, seqs: &[u64]) -> anyhow::Result<()> {
        let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        self.db.run(move |c| async move {
            c.execute(
                &c.prepare_cached("DELETE FROM inbox WHERE seq = ANY($1)")
                    .await?,
                &[&seqs],
            )
            .await?;
            Ok(())
        })
    }

    fn prune_webhook_ids(&self, before_ms: u64) -> anyhow::Result<usize> {
        let before = ms(before_ms);
        self.db.run(move |c| async move {
            Ok(c.execute(
                &c.prepare_cached("DELETE FROM webhook_ids WHERE accepted_ms < $1")
                    .await?,
                &[&before],
            )
            .await? as usize)
        })
    }

    fn replica(&self) -> Option<&str> {
        Some(&self.replica)
    }

    fn lease_time(&self) -> std::time::Duration {
        self.lease
    }

    fn try_lease(&self, tenant: &str, name: &str, holder: &str) -> anyhow::Result<bool> {
        let (t, n, h, r, ttl) = self.lease_args(tenant, name, holder);
        self.db.run(move |c| async move {
            Ok(c.query_opt(
                &c.prepare_cached(
                    "INSERT INTO leases (tenant, name, replica, holder, expires_ms)
                 VALUES ($1, $2, $3, $4, weft_now_ms() + $5)
                 ON CONFLICT (tenant, name) DO UPDATE SET replica = excluded.replica,
                   holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE leases.expires_ms < weft_now_ms()
                 RETURNING 1",
                )
                .await?,
                &[&t, &n, &r, &h, &ttl],
            )
            .await?
            .is_some())
        })
    }

    fn renew_lease(&self, tenant: &str, name: &str, holder: &str) -> anyhow::Result<bool> {
        let (t, n, h, r, ttl) = self.lease_args(tenant, name, holder);
        self.db.run(move |c| async move {
            Ok(c.execute(
                &c.prepare_cached(
                    "UPDATE leases SET expires_ms = weft_now_ms() + $5
                 WHERE tenant = $1 AND name = $2 AND replica = $3 AND holder = $4
                   AND expires_ms >= weft_now_ms()",
                )
                .await?,
                &[&t, &n, &r, &h, &ttl],
            )
            .await?
                == 1)
        })
    }

    fn release_lease(&self, tenant: &str, name: &str, holder: &str) -> anyhow::Result<()> {
        let (t, n, h, r, _) = self.lease_args(tenant, name, holder);
        self.db.run(move |c| async move {
            c.execute(
                &c.prepare_cached("DELETE FROM leases WHERE tenant = $1 AND name = $2 AND replica = $3 AND holder = $4").await?,
                &[&t, &n, &r, &h],
            )
            .await?;
            Ok(())
        })
    }

    fn lease_holder(&self, tenant: &str, name: &str) -> anyhow::Result<Option<(String, String)>> {
        let (t, n) = (tenant.to_owned(), name.to_owned());
        self.db.run(move |c| async move {
            Ok(c.query_opt(
                &c.prepare_cached(
                    "SELECT replica, holder FROM leases
                 WHERE tenant = $1 AND name = $2 AND expires_ms >= weft_now_ms()",
                )
                .await?,
                &[&t, &n],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn leases_held(&self) -> anyhow::Result<usize> {
        let sql = "SELECT count(*) FROM leases WHERE replica = $1 AND expires_ms >= weft_now_ms()";
        self.db.count(sql, self.replica.clone())
    }

    fn claim_scheduled_start(
        &self,
        tenant: &str,
        flow: &str,
        now_ms: u64,
        gap: std::time::Duration,
    ) -> anyhow::Result<bool> {
        let (t, f) = (tenant.to_owned(), flow.to_owned());
        let (now, gap) = (ms(now_ms), ms(gap.as_millis() as u64));
        self.db.run(move |c| async move {
            Ok(c.query_opt(
                &c.prepare_cached(
                    "INSERT INTO scheduled_starts (tenant, flow, started_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, flow) DO UPDATE SET started_ms = excluded.started_ms
                 WHERE scheduled_starts.started_ms <= $3 - $4
                 RETURNING 1",
                )
                .await?,
                &[&t, &f, &now, &gap],
            )
            .await?
            .is_some())
        })
    }

    fn export(&self, each: &mut dyn FnMut(StateItem) -> anyhow::Result<()>) -> anyhow::Result<()> {
        for item in self.db.run(|c| async move { export_all(&c).await })? {
            each(item)?;
        }
        Ok(())
    }

    /// One transaction into an empty database; requests pipelined on one
    /// connection. Inbox deliveries get new sequence numbers (in their
    /// order) and no claim; kv usage is counted from the entries.
    fn import(&self, items: Vec<StateItem>) -> anyhow::Result<()> {
        self.db.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let held: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM deliveries)
                       OR EXISTS (SELECT 1 FROM docs) OR EXISTS (SELECT 1 FROM connectors)
                       OR EXISTS (SELECT 1 FROM cursors) OR EXISTS (SELECT 1 FROM kv)",
                    &[],
                )
                .await?
                .get(0);
            anyhow::ensure!(
                !held,
                "the target database holds a state already: copy into an empty one"
            );
            let mut inbox: Vec<InboxEntry> = Vec::new();
            for chunk in items.chunks(500) {
                let mut writes = Vec::with_capacity(chunk.len());
                for item in chunk {
                    if let StateItem::Inbox(e) = item {
                        inbox.push((**e).clone());
                        continue;
                    }
                    writes.push(import_one(&tx, item));
                }
                futures::future::try_join_all(writes).await?;
            }
            inbox.sort_by_key(|e| e.seq);
            for e in &inbox {
                tx.execute("INSERT INTO inbox (entry) VALUES ($1)", &[&e.encode()])
                    .await?;
            }
            tx.execute(
                "INSERT INTO kv_usage (tenant, connector, bytes, keys)
                 SELECT tenant, connector,
                   sum(octet_length(tenant) + octet_length(connector) + 2 + octet_length(key)
                       + octet_length(value) + $1::BIGINT), count(*)
                 FROM kv GROUP BY tenant, connector",
                &[&(crate::state::kv::ENTRY_OVERHEAD as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn token_buckets(&self) -> Option<Arc<dyn TokenBuckets>> {
        Some(Arc::new(PgBuckets {
            db: self.db.clone(),
        }))
    }

    fn docs_generation(&self) -> anyhow::Result<u64> {
        self.db.run(move |c| async move {
            let n: i64 = scalar(&c, "SELECT n FROM docs_generation WHERE id = 1", &[]).await?;
            Ok(n as u64)
        })
    }
}

impl PgState {
    fn lease_ms(&self) -> i64 {
        ms(self.lease.as_millis() as u64)
    }

    fn lease_args(
        &self,
        tenant: &str,
        name: &str,
        holder: &str,
    ) -> (String, String, String, String, i64) {
        (
            tenant.to_owned(),
            name.to_owned(),
            holder.to_owned(),
            self.replica.clone(),
            self.lease_ms(),
        )
    }

    /// Renews this replica's inbox claims and claims the deliveries no live
    /// replica holds; returns those claimed now (with `own`, also those it
    /// held already: what a process that starts again resumes), in order.
    fn claim_inbox(&self, own: bool) -> anyhow::Result<Vec<InboxEntry>> {
        let (r, ttl) = (self.replica.clone(), self.lease_ms());
        self.db.run(move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE inbox SET claimed_until = weft_now_ms() + $2 WHERE claimed_by = $1",
                )
                .await?,
                &[&r, &ttl],
            )
            .await?;
            let rows = tx
                .query(
                    &tx.prepare_cached(
                        "UPDATE inbox SET claimed_by = $1, claimed_until = weft_now_ms() + $2
                     WHERE seq IN (
                       SELECT seq FROM inbox
                       WHERE claimed_by IS NULL OR claimed_until < weft_now_ms()
                         OR ($3 AND claimed_by = $1)
                       FOR UPDATE SKIP LOCKED)
                     RETURNING seq, entry",
                    )
                    .await?,
                    &[&r, &ttl, &own],
                )
                .await?;
            tx.commit().await?;
            let mut out: Vec<InboxEntry> = rows
                .iter()
                .map(|row| InboxEntry::decode(row.get::<_, i64>(0) as u64, row.get(1)))
                .collect::<anyhow::Result<_>>()?;
            out.sort_by_key(|e| e.seq);
            Ok(out)
        })
    }
}

/// Writes one exported item (not an inbox delivery) in `tx`.
async fn import_one(
    tx: &deadpool_postgres::Transaction<'_>,
    item: &StateItem,
) -> anyhow::Result<()> {
    type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    // Values made here (encoded, as JSON, as milliseconds) for the
    // parameters to borrow.
    let (text, bytes, millis, version): (String, Vec<u8>, i64, String);
    let (sql, params): (&str, Vec<Param>) = match item {
        StateItem::Cursor {
            tenant,
            flow,
            cursor,
        } => (
            "INSERT INTO cursors (tenant, flow, cursor) VALUES ($1, $2, $3)",
            vec![tenant, flow, cursor],
        ),
        StateItem::Delivery {
            tenant,
            scope,
            key,
            present,
            versions,
        } => {
            let entry = Delivery {
                present: *present,
                versions: versions.clone(),
            };
            bytes = entry.encode()?;
            (
                "INSERT INTO deliveries (tenant, scope, key, entry) VALUES ($1, $2, $3, $4)",
                vec![tenant, scope, key, &bytes],
            )
        }
        StateItem::DeadLetter(d) => {
            (text, millis) = (json(&**d)?, ms(d.first_seen_ms));
            (
                "INSERT INTO dead_letters (id, tenant, flow, first_seen_ms, record_key, body)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                vec![&d.id, &d.tenant, &d.flow, &millis, &d.record.key, &text],
            )
        }
        StateItem::Run(r) => {
            text = json(&**r)?;
            (
                "INSERT INTO runs (id, tenant, flow, body) VALUES ($1, $2, $3, $4)",
                vec![&r.id, &r.tenant, &r.flow, &text],
            )
        }
        StateItem::Attention {
            tenant,
            flow,
            reason,
        } => (
            "INSERT INTO attention (tenant, flow, reason) VALUES ($1, $2, $3)",
            vec![tenant, flow, reason],
        ),
        StateItem::Fingerprint {
            tenant,
            flow,
            fingerprint,
        } => (
            "INSERT INTO fingerprints (tenant, flow, fingerprint) VALUES ($1, $2, $3)",
            vec![tenant, flow, fingerprint],
        ),
        StateItem::Connector(e) => {
            (text, version) = (json(e)?, e.version.to_string());
            (
                "INSERT INTO connectors (name, version, body) VALUES ($1, $2, $3)",
                vec![&e.name, &version, &text],
            )
        }
        StateItem::Doc { kind, id, value } => (
            "INSERT INTO docs (kind, id, value) VALUES ($1, $2, $3)",
            vec![kind, id, value],
        ),
        StateItem::WebhookId {
            tenant,
            flow,
            webhook_id,
            accepted_ms,
        } => {
            millis = ms(*accepted_ms);
            (
                "INSERT INTO webhook_ids (tenant, flow, webhook_id, accepted_ms) VALUES ($1, $2, $3, $4)",
                vec![tenant, flow, webhook_id, &millis],
            )
        }
        StateItem::Kv {
            tenant,
            connector,
            key,
            value,
        } => (
            "INSERT INTO kv (tenant, connector, key, value) VALUES ($1, $2, $3, $4)",
            vec![tenant, connector, key, value],
        ),
        StateItem::Inbox(_) => anyhow::bail!("inbox deliveries are written in order, apart"),
    };
    tx.execute(sql, &params).await?;
    Ok(())
}

/// Every fact the database holds, as [`StateItem`]s.
async fn export_all(c: &Object) -> anyhow::Result<Vec<StateItem>> {
    let mut out = Vec::new();
    // (tenant, flow) → text tables.
    let flow_texts = |table: &'static str, column: &'static str| async move {
        let sql = format!("SELECT tenant, flow, {column} FROM {table}");
        let rows = c.query(sql.as_str(), &[]).await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    for (tenant, flow, cursor) in flow_texts("cursors", "cursor").await? {
        out.push(StateItem::Cursor {
            tenant,
            flow,
            cursor,
        });
    }
    for r in c
        .query("SELECT tenant, scope, key, entry FROM deliveries", &[])
        .await?
    {
        let d = Delivery::decode(r.get(3))?;
        out.push(StateItem::Delivery {
            tenant: r.get(0),
            scope: r.get(1),
            key: r.get(2),
            present: d.present,
            versions: d.versions,
        });
    }
    for r in c.query("SELECT body FROM dead_letters", &[]).await? {
        out.push(StateItem::DeadLetter(Box::new(unjson(r.get(0))?)));
    }
    for r in c.query("SELECT body FROM runs", &[]).await? {
        out.push(StateItem::Run(Box::new(unjson(r.get(0))?)));
    }
    for (tenant, flow, reason) in flow_texts("attention", "reason").await? {
        out.push(StateItem::Attention {
            tenant,
            flow,
            reason,
        });
    }
    for (tenant, flow, fingerprint) in flow_texts("fingerprints", "fingerprint").await? {
        out.push(StateItem::Fingerprint {
            tenant,
            flow,
            fingerprint,
        });
    }
    for r in c.query("SELECT body FROM connectors", &[]).await? {
        out.push(StateItem::Connector(unjson(r.get(0))?));
    }
    for r in c.query("SELECT kind, id, value FROM docs", &[]).await? {
        out.push(StateItem::Doc {
            kind: r.get(0),
            id: r.get(1),
            value: r.get(2),
        });
    }
    for r in c
        .query("SELECT seq, entry FROM inbox ORDER BY seq", &[])
        .await?
    {
        out.push(StateItem::Inbox(Box::new(InboxEntry::decode(
            r.get::<_, i64>(0) as u64,
            r.get(1),
        )?)));
    }
    for r in c
        .query(
            "SELECT tenant, flow, webhook_id, accepted_ms FROM webhook_ids",
            &[],
        )
        .await?
    {
        out.push(StateItem::WebhookId {
            tenant: r.get(0),
            flow: r.get(1),
            webhook_id: r.get(2),
            accepted_ms: r.get::<_, i64>(3) as u64,
        });
    }
    for r in c
        .query("SELECT tenant, connector, key, value FROM kv", &[])
        .await?
    {
        out.push(StateItem::Kv {
            tenant: r.get(0),
            connector: r.get(1),
            key: r.get(2),
            value: r.get(3),
        });
    }
    Ok(out)
}

/// Adds one to the scope's commit stamp (locking its row until the
/// transaction ends) and returns the new value.
async fn bump_stamp(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
    scope: &str,
) -> anyhow::Result<u64> {
    let stamp: i64 = scalar(
        tx,
        "INSERT INTO scope_stamps (tenant, scope, stamp) VALUES ($1, $2, 1)
             ON CONFLICT (tenant, scope) DO UPDATE SET stamp = scope_stamps.stamp + 1
             RETURNING stamp",
        &[&tenant, &scope],
    )
    .await?;
    Ok(stamp as u64)
}

/// A kv entry's (tenant, connector, key), owned, for a query's task.
fn owned_key(space: &KvSpace, key: &str) -> (String, String, String) {
    (
        space.tenant.clone(),
        space.connector.clone(),
        key.to_owned(),
    )
}

fn unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl KvStore for PgKv {
    fn get(&self, space: &KvSpace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (t, c, k) = owned_key(space, key);
        self.db
            .run(move |db| async move {
                Ok(db
                    .query_opt(
                        &db.prepare_cached("SELECT value FROM kv WHERE tenant = $1 AND connector = $2 AND key = $3").await?,
                        &[&t, &c, &k],
                    )
                    .await?
                    .map(|r| r.get(0)))
            })
            .map_err(|e| unavailable(format!("{e:#}")))
    }

    fn set(
        &self,
        space: &KvSpace,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        let cost = crate::state::kv::entry_cost(space, key, value.len());
        let ((t, c, k), v) = (owned_key(space, key), value.to_vec());
        let (max_bytes, max_keys) = (ms(quota.max_bytes), ms(quota.max_keys));
        let refused: Option<(String, i64)> = self
            .db
            .run(move |db| async move {
                let r = db
                    .query_one(
                        &db.prepare_cached(
                            "SELECT refused, would_be, set_config('synchronous_commit', 'off', true) \
                             FROM weft_kv_set($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .await?,
                        &[&t, &c, &k, &v, &ms(cost), &max_bytes, &max_keys],
                    )
                    .await?;
                Ok(r.get::<_, Option<String>>(0)
                    .map(|what| (what, r.get::<_, i64>(1))))
            })
            .map_err(|e| unavailable(format!("{e:#}")))?;
        match refused {
            None => Ok(()),
            Some((what, n)) => Err(crate::state::kv::quota_refusal(&what, n as u64, quota)),
        }
    }

    /// An update of the space's usage row that changes nothing still
    /// writes to the log: its synchronous commit flushes the log through
    /// every write committed before it. A space never written has nothing
    /// to flush.
    fn flush(&self, space: &KvSpace) -> Result<(), KvError> {
        let (t, c) = (space.tenant.clone(), space.connector.clone());
        self.db
            .run(move |db| async move {
                db.execute(
                    &db.prepare_cached(
                        "UPDATE kv_usage SET bytes = bytes WHERE tenant = $1 AND connector = $2",
                    )
                    .await?,
                    &[&t, &c],
                )
                .await?;
                Ok(())
            })
            .map_err(|e| unavailable(format!("{e:#}")))
    }

    fn delete(&self, space: &KvSpace, key: &str) -> Result<(), KvError> {
        let fixed = crate::state::kv::entry_cost(space, key, 0);
        let (t, c, k) = owned_key(space, key);
        self.db
            .run(move |db| async move {
                db.execute(
                    &db.prepare_cached(
                        "SELECT weft_kv_delete($1, $2, $3, $4), \
                         set_config('synchronous_commit', 'off', true)",
                    )
                    .await?,
                    &[&t, &c, &k, &ms(fixed)],
                )
                .await?;
                Ok(())
            })
            .map_err(|e| unavailable(format!("{e:#}")))
    }

    fn list_keys(
        &self,
        space: &KvSpace,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        let (t, c, p) = (
            space.tenant.clone(),
            space.connector.clone(),
            prefix.to_owned(),
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .run(move |db| async move {
                Ok(db
                    .query(
                        &db.prepare_cached(
                            "SELECT key FROM kv WHERE tenant = $1 AND connector = $2
                         AND starts_with(key, $3) ORDER BY key LIMIT $4",
                        )
                        .await?,
                        &[&t, &c, &p, &limit],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect())
            })
            .map_err(|e| unavailable(format!("{e:#}")))
    }

    fn usage(&self, space: &KvSpace) -> Result<u64, KvError> {
        let (t, c) = (space.tenant.clone(), space.connector.clone());
        self.db
            .run(move |db| async move {
                Ok(db
                    .query_opt(
                        &db.prepare_cached(
                            "SELECT bytes FROM kv_usage WHERE tenant = $1 AND connector = $2",
                        )
                        .await?,
                        &[&t, &c],
                    )
                    .await?
                    .map(|r| r.get::<_, i64>(0) as u64)
                    .unwrap_or(0))
            })
            .map_err(|e| unavailable(format!("{e:#}")))
    }
}

#[cfg(test)]
/// Two replicas (`a` and `b`) on one database, with leases and claims
/// of `lease` each; the server lives as long as `a`.
pub(crate) fn test_replicas(lease: std::time::Duration) -> (Arc<PgState>, Arc<PgState>) {
    let pg = weft_test_pg::Postgres::start().unwrap();
    let url = pg.create_database("weft").unwrap();
    let open = |name: &str| {
        PgState::open_with(
            &url,
            PgOptions {
                replica: Some(name.into()),
                lease,
            },
        )
        .unwrap()
    };
    let b = open("b");
    (Arc::new(open("a").with_guard(pg)), Arc::new(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_replicas as replicas;

    /// The webhook IDs of inbox entries, in order.
    fn webhook_ids(entries: Vec<InboxEntry>) -> Vec<String> {
        entries.into_iter().map(|e| e.webhook_id).collect()
    }

    /// A store on a database server of its own (nextest runs each test in
    /// a process of its own; the server stops when the store is dropped).
    fn fresh() -> PgState {
        let pg = weft_test_pg::Postgres::start().unwrap();
        let url = pg.create_database("weft").unwrap();
        PgState::open(&url).unwrap().with_guard(pg)
    }

    crate::state::behaviour::state_behaviour_tests!(fresh());

    /// Before: every kv write waited for the server's disk, a sync each (38
    /// a run for `acme-crm`'s contact index: most of the server's time in
    /// the tenants bench's first syncs). Now a write commits without
    /// waiting, and `flush` brings the log to disk through it.
    #[test]
    fn kv_writes_reach_the_disk_at_flush() {
        // The server's log writer would flush on its own every 200 ms.
        let pg =
            weft_test_pg::Postgres::start_with(&["-c", "fsync=off", "-c", "wal_writer_delay=10s"])
                .unwrap();
        let url = pg.create_database("weft").unwrap();
        let s = PgState::open(&url).unwrap().with_guard(pg);
        let kv = s.kv();
        let space = KvSpace {
            tenant: "t".into(),
            connector: "caldav".into(),
        };
        let quota = KvQuota {
            max_bytes: 1 << 20,
            max_keys: 100,
        };
        // Where the log is written to, and whether it is on disk that far.
        let written = || -> String {
            s.db.run(|c| async move {
                Ok(c.query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                    .await?
                    .get(0))
            })
            .unwrap()
        };
        let on_disk = |lsn: String| -> bool {
            s.db.run(|c| async move {
                Ok(c.query_one(
                    "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .await?
                .get(0))
            })
            .unwrap()
        };
        kv.set(&space, "at:apt_1", b"https://cal.example/ann/", &quota)
            .unwrap();
        let lsn = written();
        assert!(!on_disk(lsn.clone()), "the write waited for the disk");
        kv.flush(&space).unwrap();
        assert!(on_disk(lsn), "flush did not bring the write to disk");
        // And the same for a delete.
        kv.delete(&space, "at:apt_1").unwrap();
        let lsn = written();
        assert!(!on_disk(lsn.clone()), "the delete waited for the disk");
        kv.flush(&space).unwrap();
        assert!(on_disk(lsn));
        assert_eq!(kv.get(&space, "at:apt_1").unwrap(), None);
    }

    #[test]
    fn replicas_share_one_schema_made_once() {
        let (a, b) = replicas(std::time::Duration::from_secs(30));
        let versions: Vec<i32> =
            b.db.run(|c| async move {
                Ok(c.query(
                    &c.prepare_cached("SELECT version FROM weft_migrations ORDER BY version")
                        .await?,
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
            })
            .unwrap();
        assert_eq!(versions, [1, 2]);
        // What one writes, the other reads; documents move the generation.
        let g = b.docs_generation().unwrap();
        a.doc_put("tenant", "t1", b"{}").unwrap();
        assert_eq!(b.doc_get("tenant", "t1").unwrap(), Some(b"{}".to_vec()));
        assert!(b.docs_generation().unwrap() > g);
        let g = b.docs_generation().unwrap();
        assert!(!a.doc_delete("tenant", "nope").unwrap());
        assert_eq!(
            b.docs_generation().unwrap(),
            g,
            "nothing deleted, nothing changed"
        );
        assert!(a.doc_delete("tenant", "t1").unwrap());
        assert!(b.docs_generation().unwrap() > g);
    }

    #[test]
    fn a_lease_is_one_replicas_until_released_or_run_out() {
        let lease = std::time::Duration::from_millis(600);
        let (a, b) = replicas(lease);
        assert!(a.try_lease("t", "dest", "run1/x").unwrap());
        assert!(!b.try_lease("t", "dest", "run2/y").unwrap());
        assert!(b.try_lease("t", "other", "run3/z").unwrap());
        assert_eq!(
            b.lease_holder("t", "dest").unwrap(),
            Some(("a".into(), "run1/x".into()))
        );
        assert_eq!((a.leases_held().unwrap(), b.leases_held().unwrap()), (1, 1));
        // Released: the other takes it at once.
        a.release_lease("t", "dest", "run1/x").unwrap();
        assert!(b.try_lease("t", "dest", "run2/y").unwrap());
        // Not renewed: it runs out, and its old holder cannot renew it.
        std::thread::sleep(lease + std::time::Duration::from_millis(200));
        assert!(a.try_lease("t", "dest", "run4/w").unwrap());
        assert!(!b.renew_lease("t", "dest", "run2/y").unwrap());
        assert!(a.renew_lease("t", "dest", "run4/w").unwrap());
    }

    #[test]
    fn a_commit_after_its_lease_ran_out_is_refused_and_changes_nothing() {
        let lease = std::time::Duration::from_millis(600);
        let (a, b) = replicas(lease);
        let fence = |token: &str| {
            Some(crate::state::Fence {
                name: "dest".into(),
                token: token.into(),
            })
        };
        let commit = |cursor: &str, key: &str, token: &str| PageCommit {
            cursor: Some(cursor.into()),
            fence: fence(token),
            ..crate::state::behaviour::page("dest", &[(key, 1, Some(true))])
        };
        assert!(a.try_lease("t", "dest", "run1/x").unwrap());
        a.commit_page("t", "f", &commit("c1", "k1", "run1/x"))
            .unwrap();
        // Not renewed (a stall, a lost connection): it runs out, and
        // replica b's run takes it.
        std::thread::sleep(lease + std::time::Duration::from_millis(200));
        assert!(b.try_lease("t", "dest", "run2/y").unwrap());
        b.commit_page("t", "f", &commit("c2", "k2", "run2/y"))
            .unwrap();
        // Replica a's run wakes up and commits: refused, nothing moves.
        let e = a
            .commit_page("t", "f", &commit("c9", "k9", "run1/x"))
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("lease on \"dest\" ran out"),
            "{e:#}"
        );
        assert_eq!(b.cursor("t", "f").unwrap().as_deref(), Some("c2"));
        assert_eq!(b.delivery("t", "dest", "k9").unwrap(), Delivery::default());
        // Nor with the token of another replica's lease.
        assert!(
            a.commit_page("t", "f", &commit("c9", "k9", "run2/y"))
                .is_err()
        );
    }

    #[test]
    fn a_scheduled_start_is_claimed_once_per_half_schedule() {
        let (a, b) = replicas(std::time::Duration::from_secs(30));
        let gap = std::time::Duration::from_secs(150);
        assert!(a.claim_scheduled_start("t", "f", 1_000_000, gap).unwrap());
        assert!(!b.claim_scheduled_start("t", "f", 1_010_000, gap).unwrap());
        assert!(b.claim_scheduled_start("t", "g", 1_010_000, gap).unwrap());
        assert!(b.claim_scheduled_start("t", "f", 1_150_000, gap).unwrap());
    }

    #[test]
    fn a_stopped_replicas_webhook_deliveries_are_taken_over() {
        let lease = std::time::Duration::from_millis(600);
        let (a, b) = replicas(lease);
        let entry = |id: &str| InboxEntry {
            seq: 0,
            tenant: "t".into(),
            flow: "f".into(),
            webhook_id: id.into(),
            headers: vec![],
            body: id.as_bytes().to_vec(),
            received_ms: 1,
        };
        a.inbox_append(&[entry("w1"), entry("w2")]).unwrap();
        // The same delivery at the other replica is a repeat.
        assert_eq!(b.inbox_append(&[entry("w1")]).unwrap(), [None]);
        // `a` holds them: `b` gets nothing while `a` renews its claims.
        assert!(b.inbox_pending().unwrap().is_empty());
        std::thread::sleep(lease / 2);
        assert!(a.inbox_adopt().unwrap().is_empty(), "a renews, adopts none");
        std::thread::sleep(lease / 2 + std::time::Duration::from_millis(100));
        assert!(b.inbox_adopt().unwrap().is_empty(), "renewed by a");
        // `a` stops renewing: `b` takes both over, in order, once.
        std::thread::sleep(lease + std::time::Duration::from_millis(200));
        assert_eq!(webhook_ids(b.inbox_adopt().unwrap()), ["w1", "w2"]);
        assert!(b.inbox_adopt().unwrap().is_empty());
        assert!(a.inbox_adopt().unwrap().is_empty(), "they are b's now");
    }

    /// Two replicas take from one bucket: the burst is shared, then each
    /// token waits its turn at the shared rate; a wait over the limit takes
    /// nothing.
    #[test]
    fn replicas_share_each_request_bucket() {
        let (a, b) = replicas(std::time::Duration::from_secs(30));
        let (ba, bb) = (a.token_buckets().unwrap(), b.token_buckets().unwrap());
        let long = std::time::Duration::from_secs(10);
        for i in 0..4 {
            let bucket = if i % 2 == 0 { &ba } else { &bb };
            assert_eq!(
                bucket.take("t", "https://acme", 10.0, 4, long).unwrap(),
                Ok(std::time::Duration::ZERO)
            );
        }
        // The burst is spent by both together: the next waits about a
        // tenth of a second, whichever replica asks.
        let wait = bb
            .take("t", "https://acme", 10.0, 4, long)
            .unwrap()
            .unwrap();
        assert!(wait > std::time::Duration::from_millis(50), "{wait:?}");
        let refused = ba
            .take("t", "https://acme", 10.0, 4, std::time::Duration::ZERO)
            .unwrap();
        assert!(refused.is_err(), "{refused:?}");
        // Another tenant's bucket is its own.
        assert_eq!(
            ba.take("u", "https://acme", 10.0, 4, long).unwrap(),
            Ok(std::time::Duration::ZERO)
        );
    }

    /// A sled state with some of every fact copies into PostgreSQL whole:
    /// the comparison finds nothing missing, and the copy works as the
    /// original did (dead-letter counts, kv usage and quota, pending
    /// deliveries and remembered webhook IDs, runs, documents).
    #[test]
    fn a_sled_state_copies_into_postgres_whole() {
        use crate::state::SledState;
        use crate::state::behaviour::{dl, page};
        use crate::state::kv::{KvQuota, KvSpace};
        let sled = SledState::temporary().unwrap();
        sled.commit_page(
            "t",
            "f",
            &PageCommit {
                cursor: Some("c9".into()),
                dead_letters: vec![dl("b", 1, 100)],
                ..page("dest", &[("a", 5, Some(true)), ("b", 7, None)])
            },
        )
        .unwrap();
        sled.set_attention("t", "g", Some("api key rejected"))
            .unwrap();
        sled.set_flow_fingerprint("t", "f", "fp").unwrap();
        sled.doc_put("tenant", "t", b"{\"flows\":{}}").unwrap();
        let space = KvSpace {
            tenant: "t".into(),
            connector: "acme".into(),
        };
        let quota = KvQuota {
            max_bytes: 10_000,
            max_keys: 10,
        };
        let kv = sled.kv();
        kv.set(&space, "contact:1", b"Ada", &quota).unwrap();
        kv.set(&space, "contact:2", b"\x00\xffbinary", &quota)
            .unwrap();
        let entry = |id: &str| InboxEntry {
            seq: 0,
            tenant: "t".into(),
            flow: "f".into(),
            webhook_id: id.into(),
            headers: vec![("webhook-id".into(), id.into())],
            body: b"{}".to_vec(),
            received_ms: 5,
        };
        sled.inbox_append(&[entry("w1"), entry("w2")]).unwrap();
        sled.inbox_sync().unwrap();
        let done = sled.inbox_pending().unwrap()[0].seq;
        sled.inbox_done(&[done]).unwrap();
        let (pg, _) = test_replicas(std::time::Duration::from_secs(30));
        let report = crate::state::copy::copy_state(&sled, &*pg, vec![]).unwrap();
        assert!(report.differences.is_empty(), "{:#?}", report.differences);
        for kind in [
            "cursor",
            "delivery",
            "dead_letter",
            "attention",
            "fingerprint",
            "doc",
            "inbox",
            "webhook_id",
            "kv",
        ] {
            let (from, to) = report.counts[kind];
            assert!(from > 0 && from == to, "{kind}: {from} → {to}");
        }
        assert_eq!(pg.dead_letter_count("t").unwrap(), 1);
        assert_eq!(
            pg.kv().usage(&space).unwrap(),
            sled.kv().usage(&space).unwrap()
        );
        assert_eq!(webhook_ids(pg.inbox_pending().unwrap()), ["w2"]);
        assert_eq!(
            pg.inbox_append(&[entry("w1")]).unwrap(),
            [None],
            "w1 is remembered"
        );
        assert_eq!(pg.cursor("t", "f").unwrap().as_deref(), Some("c9"));
        // A second copy into the same database is refused: nothing doubles.
        let again = crate::state::copy::copy_state(&sled, &*pg, vec![]).unwrap_err();
        assert!(
            format!("{again:#}").contains("holds a state already"),
            "{again:#}"
        );
    }

    #[test]
    fn a_password_in_the_url_never_reaches_a_message() {
        let err = PgState::open("postgres://weft:hunter2@127.0.0.1:1/weft")
            .err()
            .expect("nothing listens on port 1");
        let text = format!("{err:#}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}
