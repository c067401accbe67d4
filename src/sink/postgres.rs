//! The PostgreSQL loader: `COPY` into a table, exactly once.
//!
//! Each delivery is one transaction that takes an advisory lock on (log,
//! table, shard), loads the batch's records and
//! records their offsets in `hydrant_loads` (log id, target table, shard,
//! first, last). A
//! retried or replayed batch first reads which of its offsets are already
//! loaded and skips them, so a record is in the table once even when a crash
//! re-cuts batches differently. If the bulk `COPY` fails on data (a value of
//! the wrong type, a constraint), the batch is loaded row by row under
//! savepoints: good rows are kept and each bad row is reported as rejected,
//! with PostgreSQL's reason, for the error output.
//!
//! The user records of a KPL aggregate (read from a Kinesis stream) share
//! its offset, and delivery never splits them between two batches. Their
//! offset is recorded only if every one of them loaded: one refused is
//! refused again when the batch is replayed (after a crash or a reload,
//! before the checkpoint passed it), at the price of its siblings' rows
//! loading again then.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::SinkExt;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;

use super::{Batch, Delivered, Sink, SinkError};
use crate::config::{ColumnMapping, PostgresDestination, PostgresTls};
use crate::record::Record;

/// The table where Hydrant records what it loaded.
pub const LOADS_TABLE: &str = "hydrant_loads";

pub struct PostgresSink {
    pool: Pool,
    cfg: PostgresDestination,
    table: String,
    columns: String,
    ready: OnceCell<()>,
    describe: String,
}

fn permanent(message: String) -> SinkError {
    SinkError {
        message,
        retryable: false,
    }
}

fn transient(message: String) -> SinkError {
    SinkError {
        message,
        retryable: true,
    }
}

/// `"schema"."table"` from `schema.table`.
fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(".")
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, SinkError> {
    let path = ca_file.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let pem = std::fs::read(path)
        .map_err(|e| permanent(format!("cannot read CA file {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert =
            cert.map_err(|e| permanent(format!("bad certificate in {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| permanent(format!("bad certificate in {}: {e}", path.display())))?;
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| permanent(format!("tls: {e}")))
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

impl PostgresSink {
    pub fn new(cfg: &PostgresDestination) -> Result<PostgresSink, SinkError> {
        let mut pg: tokio_postgres::Config = cfg
            .connection
            .parse()
            .map_err(|e| permanent(format!("invalid connection string: {e}")))?;
        pg.connect_timeout(std::time::Duration::from_secs(10));
        let mgr_cfg = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match &cfg.tls {
            PostgresTls::Disable => Manager::from_config(pg, tokio_postgres::NoTls, mgr_cfg),
            PostgresTls::Require { ca_file } => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls =
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca_file.as_deref())?);
                Manager::from_config(pg, tls, mgr_cfg)
            }
        };
        let pool = Pool::builder(mgr)
            .max_size(cfg.pool_max)
            .build()
            .map_err(|e| permanent(format!("cannot build the connection pool: {e}")))?;
        let columns = match &cfg.mapping {
            ColumnMapping::Columns(cols) => cols
                .iter()
                .map(|c| quote_ident(&c.column))
                .collect::<Vec<_>>()
                .join(", "),
            ColumnMapping::Jsonb(c) => quote_ident(c),
        };
        Ok(PostgresSink {
            pool,
            table: quote_ident(&cfg.table),
            columns,
            cfg: cfg.clone(),
            ready: OnceCell::new(),
            describe: format!("postgres table {}", cfg.table),
        })
    }
}

/// One record as the text fields of a COPY row (None = NULL), or why it
/// cannot be loaded.
fn to_row(mapping: &ColumnMapping, data: &[u8]) -> Result<(Vec<Option<String>>, Value), String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| format!("record is not JSON: {e}"))?;
    match mapping {
        ColumnMapping::Jsonb(col) => {
            let text = v.to_string();
            if text.contains("\\u0000") {
                return Err(
                    "record contains a NUL character, which PostgreSQL cannot store".into(),
                );
            }
            Ok((vec![Some(text)], serde_json::json!({ col: v })))
        }
        ColumnMapping::Columns(cols) => {
            if !v.is_object() {
                return Err("record is not a JSON object".into());
            }
            let mut fields = Vec::with_capacity(cols.len());
            let mut obj = serde_json::Map::new();
            for c in cols {
                let mut cur = Some(&v);
                for k in &c.field {
                    cur = cur.and_then(|x| x.get(k));
                }
                let cell = match cur {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                };
                if cell.as_deref().is_some_and(|s| s.contains('\0')) {
                    return Err(format!(
                        "field {} contains a NUL character, which PostgreSQL cannot store",
                        c.field.join(".")
                    ));
                }
                obj.insert(c.column.clone(), cur.cloned().unwrap_or(Value::Null));
                fields.push(cell);
            }
            Ok((fields, Value::Object(obj)))
        }
    }
}

/// Appends a row in COPY's text format.
fn push_copy_row(out: &mut Vec<u8>, fields: &[Option<String>]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match f {
            None => out.extend_from_slice(b"\\N"),
            Some(s) => {
                for b in s.bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

/// Errors that are the data's fault (class 22 data exception, class 23
/// integrity violation): retrying the same rows cannot help.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let code = c.code();
        code.starts_with("22")
            || code.starts_with("23")
            || *c == SqlState::INVALID_TEXT_REPRESENTATION
    })
}

fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{}: {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            m
        }
        None => e.to_string(),
    }
}

/// Contiguous runs of offsets (ascending, an offset perhaps repeated), for
/// `hydrant_loads`.
fn runs(offsets: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &o in offsets {
        match out.last_mut() {
            Some((_, last)) if *last == o || *last + 1 == o => *last = o,
            _ => out.push((o, o)),
        }
    }
    out
}

impl PostgresSink {
    async fn ensure_loads_table(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<(), SinkError> {
        self.ready
            .get_or_try_init(|| async {
                client
                    .batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (
                            log_id text NOT NULL, target text NOT NULL, stream text NOT NULL,
                            shard integer NOT NULL,
                            first_offset bigint NOT NULL, last_offset bigint NOT NULL,
                            loaded_at timestamptz NOT NULL DEFAULT now(),
                            PRIMARY KEY (log_id, target, shard, first_offset))"
                    ))
                    .await
                    .map_err(|e| {
                        transient(format!("cannot create {LOADS_TABLE}: {}", db_message(&e)))
                    })
            })
            .await
            .map(|_| ())
    }
}

/// A record to load: its index in the batch, the record, its COPY fields and
/// the JSON object that loads it as one row.
type Row<'a> = (usize, &'a Record, Vec<Option<String>>, Value);

impl PostgresSink {
    /// Takes the load lock of (log, table, shard) and returns the offset
    /// runs of the batch that are already loaded.
    async fn lock_and_read_loaded(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch<'_>,
        shard: i32,
    ) -> Result<Vec<(u64, u64)>, SinkError> {
        // One load at a time per (log, table, shard): a transaction of a
        // killed process may still be committing on the server when its
        // successor starts, and under READ COMMITTED the successor must not
        // read the ledger until that transaction has ended.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1), $2)",
            &[
                &format!("hydrant/{}/{}", batch.log_id, self.cfg.table),
                &shard,
            ],
        )
        .await
        .map_err(|e| transient(db_message(&e)))?;
        let loaded = tx
            .query(
                &format!("SELECT first_offset, last_offset FROM {LOADS_TABLE} WHERE log_id = $1 AND target = $2 AND shard = $3 AND last_offset >= $4 AND first_offset <= $5"),
                &[&batch.log_id, &self.cfg.table, &shard, &(batch.first_offset as i64), &(batch.last_offset as i64)],
            )
            .await
            .map_err(|e| transient(db_message(&e)))?;
        let done: Vec<(u64, u64)> = loaded
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
            .collect();
        Ok(done)
    }

    /// Loads `rows` with one `COPY` under a savepoint. False when PostgreSQL
    /// refused the data: the savepoint is rolled back and nothing is loaded.
    async fn copy_rows(
        &self,
        tx: &mut deadpool_postgres::Transaction<'_>,
        rows: &[Row<'_>],
    ) -> Result<bool, SinkError> {
        let mut copy = Vec::new();
        for (_, _, fields, _) in rows {
            push_copy_row(&mut copy, fields);
        }
        let bulk = {
            let sp = tx
                .savepoint("hydrant_bulk")
                .await
                .map_err(|e| transient(db_message(&e)))?;
            let res: Result<u64, tokio_postgres::Error> = async {
                let sink = sp
                    .copy_in::<_, Bytes>(&format!(
                        "COPY {} ({}) FROM STDIN",
                        self.table, self.columns
                    ))
                    .await?;
                futures::pin_mut!(sink);
                sink.send(Bytes::from(copy)).await?;
                sink.finish().await
            }
            .await;
            match res {
                Ok(_) => {
                    sp.commit().await.map_err(|e| transient(db_message(&e)))?;
                    true
                }
                Err(e) if is_data_error(&e) => {
                    sp.rollback().await.map_err(|e| transient(db_message(&e)))?;
                    false
                }
                Err(e) => {
                    return Err(transient(format!(
                        "COPY into {} failed: {}",
                        self.cfg.table,
                        db_message(&e)
                    )));
                }
            }
        };
        Ok(bulk)
    }

    /// Loads `rows` one at a time, each under a savepoint: the offset of each
    /// loaded row goes to `loaded_offsets`, each row PostgreSQL refuses to
    /// `rejected` with its reason.
    async fn insert_rows(
        &self,
        tx: &mut deadpool_postgres::Transaction<'_>,
        rows: &[Row<'_>],
        loaded_offsets: &mut Vec<u64>,
        rejected: &mut Vec<(usize, String)>,
    ) -> Result<(), SinkError> {
        let insert = format!(
            "INSERT INTO {t} ({c}) SELECT {c} FROM json_populate_record(NULL::{t}, $1::text::json)",
            t = self.table,
            c = self.columns
        );
        let stmt = tx
            .prepare(&insert)
            .await
            .map_err(|e| transient(db_message(&e)))?;
        for (i, r, _, obj) in rows {
            let sp = tx
                .savepoint("hydrant_row")
                .await
                .map_err(|e| transient(db_message(&e)))?;
            match sp.execute(&stmt, &[&obj.to_string()]).await {
                Ok(_) => {
                    sp.commit().await.map_err(|e| transient(db_message(&e)))?;
                    loaded_offsets.push(r.offset);
                }
                Err(e) if is_data_error(&e) => {
                    sp.rollback().await.map_err(|e| transient(db_message(&e)))?;
                    rejected.push((
                        *i,
                        format!("PostgreSQL refused the row: {}", db_message(&e)),
                    ));
                }
                Err(e) => return Err(transient(db_message(&e))),
            }
        }
        Ok(())
    }

    /// Records the loaded offsets in `hydrant_loads`, one row per run.
    async fn record_loads(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        batch: &Batch<'_>,
        shard: i32,
        loaded_offsets: &[u64],
    ) -> Result<(), SinkError> {
        for (first, last) in runs(loaded_offsets) {
            tx.execute(
                &format!("INSERT INTO {LOADS_TABLE} (log_id, target, stream, shard, first_offset, last_offset) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&batch.log_id, &self.cfg.table, &batch.stream, &shard, &(first as i64), &(last as i64)],
            )
            .await
            .map_err(|e| transient(db_message(&e)))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn deliver(&self, batch: &Batch<'_>) -> Result<Delivered, SinkError> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| transient(format!("cannot connect to PostgreSQL: {e}")))?;
        self.ensure_loads_table(&client).await?;
        let mut tx = client
            .transaction()
            .await
            .map_err(|e| transient(db_message(&e)))?;
        let shard = batch.shard as i32;
        let done = self.lock_and_read_loaded(&tx, batch, shard).await?;
        let is_done = |o: u64| done.iter().any(|(f, l)| *f <= o && o <= *l);

        let mut rejected = Vec::new();
        let mut rows: Vec<Row<'_>> = Vec::new();
        for (i, r) in batch.records.iter().enumerate() {
            if is_done(r.offset) {
                continue;
            }
            match to_row(&self.cfg.mapping, &r.data) {
                Ok((fields, obj)) => rows.push((i, r, fields, obj)),
                Err(why) => rejected.push((i, why)),
            }
        }
        let mut loaded_offsets: Vec<u64> = Vec::new();
        if !rows.is_empty() {
            let bulk = self.copy_rows(&mut tx, &rows).await?;
            if bulk {
                loaded_offsets.extend(rows.iter().map(|(_, r, _, _)| r.offset));
            } else {
                // Find the bad rows one by one; keep the good ones.
                self.insert_rows(&mut tx, &rows, &mut loaded_offsets, &mut rejected)
                    .await?;
            }
        }
        if !rejected.is_empty() {
            let refused: std::collections::HashSet<u64> = rejected
                .iter()
                .filter_map(|(i, _)| batch.records.get(*i))
                .map(|r| r.offset)
                .collect();
            loaded_offsets.retain(|o| !refused.contains(o));
        }
        self.record_loads(&tx, batch, shard, &loaded_offsets)
            .await?;
        tx.commit()
            .await
            .map_err(|e| transient(format!("commit failed: {}", db_message(&e))))?;
        rejected.sort_by_key(|(i, _)| *i);
        Ok(Delivered {
            rejected,
            ..Delivered::default()
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests;
