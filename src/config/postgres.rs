//! `type: postgres` destinations: the connection, the table, how records map
//! onto its columns, the pool and TLS.

use std::path::PathBuf;

use super::destination::reject_fields;
use super::raw::RawDestination;
use super::{ConfigError, err, range_check};

/// The PostgreSQL loader.
#[derive(Clone, Debug)]
pub struct PostgresDestination {
    pub connection: String,
    pub table: String,
    pub mapping: ColumnMapping,
    pub pool_max: usize,
    pub tls: PostgresTls,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnMapping {
    /// Each column from a JSON field (a path of keys).
    Columns(Vec<ColumnMap>),
    /// The whole record into one jsonb column.
    Jsonb(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMap {
    pub column: String,
    pub field: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresTls {
    Disable,
    Require { ca_file: Option<PathBuf> },
}

/// `[schema.]name`, each part a plain SQL identifier of at most 63 bytes.
pub(super) fn valid_sql_identifier(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let first = parts.next().is_some_and(ok);
    let rest: Vec<&str> = parts.collect();
    first && rest.len() <= 1 && rest.iter().all(|p| ok(p))
}

/// Validates a `postgres` destination.
pub(super) fn postgres_destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
) -> Option<PostgresDestination> {
    reject_fields(
        errors,
        path,
        "postgres",
        &[
            ("bucket", d.bucket.is_some()),
            ("path", d.path.is_some()),
            ("prefix", d.prefix.is_some()),
            ("error_output_prefix", d.error_output_prefix.is_some()),
            ("url", d.url.is_some()),
            ("access_key", d.access_key.is_some()),
            ("common_attributes", d.common_attributes.is_some()),
        ],
    );
    let (Some(connection), Some(table)) = (d.connection.clone(), d.table.clone()) else {
        if d.connection.is_none() {
            errors.push(err(
                format!("{path}.connection"),
                "missing: a postgres destination needs a connection string",
            ));
        }
        if d.table.is_none() {
            errors.push(err(
                format!("{path}.table"),
                "missing: a postgres destination needs a table",
            ));
        }
        return None;
    };
    if let Err(e) = connection.parse::<tokio_postgres::Config>() {
        errors.push(err(
            format!("{path}.connection"),
            format!("not a valid connection string: {e}"),
        ));
    }
    if !valid_sql_identifier(&table) {
        errors.push(err(
            format!("{path}.table"),
            format!("`{table}` is not a plain table name ([schema.]name of letters, digits, _)"),
        ));
    }
    let mapping = column_mapping(errors, path, d)?;
    let tls = tls(errors, path, d);
    Some(PostgresDestination {
        connection,
        table,
        mapping,
        pool_max: range_check(
            errors,
            &format!("{path}.pool_max"),
            d.pool_max.unwrap_or(4),
            1,
            64,
        ),
        tls,
    })
}

/// `columns` (JSON fields to columns) or `jsonb_column` (the whole record).
fn column_mapping(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
) -> Option<ColumnMapping> {
    Some(match (&d.columns, &d.jsonb_column) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(err(path, "give exactly one of `columns` (JSON fields to columns) or `jsonb_column` (the whole record)"));
            return None;
        }
        (None, Some(c)) => {
            if !valid_sql_identifier(c) || c.contains('.') {
                errors.push(err(
                    format!("{path}.jsonb_column"),
                    format!("`{c}` is not a plain column name"),
                ));
            }
            ColumnMapping::Jsonb(c.clone())
        }
        (Some(cols), None) => {
            if cols.is_empty() {
                errors.push(err(
                    format!("{path}.columns"),
                    "must list at least one column",
                ));
            }
            let mut out = Vec::new();
            for (i, c) in cols.iter().enumerate() {
                if !valid_sql_identifier(&c.column) || c.column.contains('.') {
                    errors.push(err(
                        format!("{path}.columns[{i}].column"),
                        format!("`{}` is not a plain column name", c.column),
                    ));
                }
                let field = c.field.clone().unwrap_or_else(|| c.column.clone());
                out.push(ColumnMap {
                    column: c.column.clone(),
                    field: field.split('.').map(String::from).collect(),
                });
            }
            ColumnMapping::Columns(out)
        }
    })
}

/// `tls`: off unless `mode: require`, optionally with a CA file.
fn tls(errors: &mut Vec<ConfigError>, path: &str, d: &RawDestination) -> PostgresTls {
    match &d.tls {
        None => PostgresTls::Disable,
        Some(t) => match t.mode.as_str() {
            "disable" => PostgresTls::Disable,
            "require" => PostgresTls::Require {
                ca_file: t.ca_file.as_ref().map(PathBuf::from),
            },
            other => {
                errors.push(err(
                    format!("{path}.tls.mode"),
                    format!("`{other}` is not a TLS mode (disable, require)"),
                ));
                PostgresTls::Disable
            }
        },
    }
}
