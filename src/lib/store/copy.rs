//! Copying a whole database to a fresh one of either backend (`moocctl db copy`): every table in
//! key order, in batches, ids kept, sequences moved past the copied ids, and row counts verified.
//! For the day a deployment moves from SQLite to PostgreSQL (or back).

use serde::Serialize;
use sqlx::Row;

use super::{Backend, Result, Store, StoreError};

/// Column kinds: every column of the schema is one of these.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
}

use Kind::{Bool, Int, Text};

/// The tables copied, in an order that keeps references meaningful, with their columns. `key` is an
/// integer primary key to page by, or `None` for small tables read in one go. Leases are not copied:
/// they belong to running processes.
/// A table: name, integer key to page by (if any), columns.
type Table = (
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, Kind)],
);

const TABLES: &[Table] = &[
    ("meta", None, &[("key", Text), ("value", Text)]),
    (
        "consumers",
        None,
        &[
            ("key", Text),
            ("secret", Text),
            ("name", Text),
            ("enabled", Bool),
            ("created_at", Int),
        ],
    ),
    (
        "admins",
        None,
        &[
            ("identity", Text),
            ("name", Text),
            ("role", Text),
            ("created_at", Int),
            ("created_by", Text),
        ],
    ),
    (
        "pools",
        None,
        &[
            ("name", Text),
            ("warm", Int),
            ("max", Int),
            ("updated_at", Int),
            ("updated_by", Text),
        ],
    ),
    (
        "hosts",
        None,
        &[
            ("name", Text),
            ("up", Bool),
            ("error", Text),
            ("checked_at", Int),
            ("changed_at", Int),
        ],
    ),
    (
        "users",
        Some("id"),
        &[
            ("id", Int),
            ("consumer_key", Text),
            ("user_id", Text),
            ("name", Text),
            ("email", Text),
            ("first_seen", Int),
            ("last_seen", Int),
        ],
    ),
    (
        "volumes",
        None,
        &[
            ("name", Text),
            ("pool", Text),
            ("host", Text),
            ("user_id", Int),
            ("created_at", Int),
            ("claimed_at", Int),
        ],
    ),
    (
        "containers",
        Some("id"),
        &[
            ("id", Int),
            ("name", Text),
            ("pool", Text),
            ("host", Text),
            ("docker_id", Text),
            ("port", Int),
            ("token", Text),
            ("volume", Text),
            ("state", Text),
            ("user_id", Int),
            ("created_at", Int),
            ("updated_at", Int),
            ("ready_at", Int),
            ("assigned_at", Int),
            ("last_activity", Int),
            ("error", Text),
            ("owner", Text),
        ],
    ),
    (
        "sessions",
        Some("id"),
        &[
            ("id", Int),
            ("at", Int),
            ("user_id", Int),
            ("consumer_key", Text),
            ("context_id", Text),
            ("resource_link_id", Text),
            ("roles", Text),
            ("remote_addr", Text),
            ("pool", Text),
            ("outcome", Text),
            ("container_id", Int),
        ],
    ),
    (
        "nonces",
        None,
        &[("consumer_key", Text), ("nonce", Text), ("ts", Int)],
    ),
    (
        "events",
        Some("id"),
        &[
            ("id", Int),
            ("at", Int),
            ("level", Text),
            ("kind", Text),
            ("actor", Text),
            ("message", Text),
        ],
    ),
    (
        "audit",
        Some("id"),
        &[
            ("id", Int),
            ("at", Int),
            ("actor", Text),
            ("command", Text),
            ("outcome", Text),
        ],
    ),
];

/// Rows read per page and written per statement.
const PAGE: i64 = 2000;
const ROWS_PER_INSERT: usize = 100;

#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

/// One table's counts after a copy.
#[derive(Debug, Clone, Serialize)]
pub struct TableCopy {
    pub table: String,
    pub source_rows: i64,
    pub target_rows: i64,
}

/// Why a copy did not happen or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the target database is not empty: table {table} has {rows} row(s); copy only into a fresh database"
    )]
    TargetNotEmpty { table: String, rows: i64 },
    #[error("table {table}: {source_rows} row(s) in the source but {target_rows} in the target")]
    Mismatch {
        table: String,
        source_rows: i64,
        target_rows: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
    // Built only from the constant table and column names above, never from input.
    sqlx::AssertSqlSafe(s)
}

impl Store {
    async fn count(&self, table: &str) -> Result<i64> {
        let q = sql(format!("SELECT COUNT(*) FROM {table}"));
        Ok(match &self.backend {
            Backend::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await?,
            Backend::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await?,
        })
    }

    /// One page of a table: rows with `key > after` (or every row when the table has no key).
    async fn read_page(
        &self,
        table: &str,
        key: Option<&str>,
        cols: &[(&str, Kind)],
        after: i64,
    ) -> Result<Vec<Vec<Value>>> {
        let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
        let q = match key {
            Some(k) => format!(
                "SELECT {} FROM {table} WHERE {k} > $1 ORDER BY {k} LIMIT {PAGE}",
                names.join(", ")
            ),
            None => format!("SELECT {} FROM {table} WHERE $1 = $1", names.join(", ")),
        };
        macro_rules! read {
            ($pool:expr) => {{
                let rows = sqlx::query(sql(q)).bind(after).fetch_all($pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut values = Vec::with_capacity(cols.len());
                    for (i, (_, kind)) in cols.iter().enumerate() {
                        values.push(match kind {
                            Int => Value::Int(row.try_get(i)?),
                            Text => Value::Text(row.try_get(i)?),
                            Bool => Value::Bool(row.try_get(i)?),
                        });
                    }
                    out.push(values);
                }
                out
            }};
        }
        Ok(match &self.backend {
            Backend::Sqlite(p) => read!(p),
            Backend::Postgres(p) => read!(p),
        })
    }

    /// Writes rows in multi-row INSERTs inside one transaction.
    async fn write_rows(
        &self,
        table: &str,
        cols: &[(&str, Kind)],
        rows: &[Vec<Value>],
    ) -> Result<()> {
        let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
        macro_rules! write {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    let mut text = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
                    let mut n = 0;
                    for (r, _) in chunk.iter().enumerate() {
                        if r > 0 {
                            text.push_str(", ");
                        }
                        text.push('(');
                        for c in 0..cols.len() {
                            n += 1;
                            if c > 0 {
                                text.push_str(", ");
                            }
                            text.push_str(&format!("${n}"));
                        }
                        text.push(')');
                    }
                    let mut q = sqlx::query(sql(text));
                    for row in chunk {
                        for v in row {
                            q = match v {
                                Value::Int(x) => q.bind(*x),
                                Value::Text(x) => q.bind(x.clone()),
                                Value::Bool(x) => q.bind(*x),
                            };
                        }
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.backend {
            Backend::Sqlite(p) => write!(p),
            Backend::Postgres(p) => write!(p),
        }
        Ok(())
    }

    /// Copies every table into `target`, which must be empty (freshly migrated), then verifies the
    /// row counts. `progress` is told each table and the rows copied so far.
    pub async fn copy_to(
        &self,
        target: &Store,
        progress: impl Fn(&str, i64),
    ) -> Result<Vec<TableCopy>, CopyError> {
        for (table, _, _) in TABLES {
            let rows = target.count(table).await?;
            if rows > 0 {
                return Err(CopyError::TargetNotEmpty {
                    table: (*table).to_owned(),
                    rows,
                });
            }
        }
        let mut report = Vec::new();
        for (table, key, cols) in TABLES {
            let mut after = i64::MIN;
            let mut copied = 0i64;
            loop {
                let page = self.read_page(table, *key, cols, after).await?;
                if page.is_empty() {
                    break;
                }
                target.write_rows(table, cols, &page).await?;
                copied += page.len() as i64;
                progress(table, copied);
                match key {
                    Some(_) => {
                        after = match page.last().and_then(|r| r.first()) {
                            Some(Value::Int(Some(id))) => *id,
                            _ => break,
                        };
                    }
                    None => break,
                }
            }
            if let (Some(k), Backend::Postgres(p)) = (key, &target.backend) {
                // The copied ids were explicit: move the sequence past them.
                sqlx::query(sql(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{k}'), COALESCE(MAX({k}), 1), MAX({k}) IS NOT NULL) FROM {table}"
                )))
                .execute(p)
                .await
                .map_err(StoreError::from)?;
            }
            let source_rows = self.count(table).await?;
            let target_rows = target.count(table).await?;
            if source_rows != target_rows {
                return Err(CopyError::Mismatch {
                    table: (*table).to_owned(),
                    source_rows,
                    target_rows,
                });
            }
            report.push(TableCopy {
                table: (*table).to_owned(),
                source_rows,
                target_rows,
            });
        }
        Ok(report)
    }
}
