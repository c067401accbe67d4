//! `RedshiftDestinationConfiguration`: a delivery stream into PostgreSQL.
//!
//! Firehose's one relational destination is Amazon Redshift, which speaks
//! PostgreSQL's wire protocol; Hydrant reads its configuration as the same
//! stream's YAML `type: postgres` destination would be written:
//!
//! | Firehose field | YAML key |
//! |---|---|
//! | `ClusterJDBCURL` `jdbc:postgresql://HOST:PORT/DB?sslmode=require` | `connection` (host, port, dbname) and `tls.mode` |
//! | `Username`, `Password` | `connection`'s user and password |
//! | `CopyCommand.DataTableName` | `table` |
//! | `CopyCommand.DataTableColumns` `a,b,c` with `CopyOptions` `json 'auto'` (or none) | `columns`, each from the JSON field of its name |
//! | `CopyCommand.DataTableColumns` `doc` with `CopyOptions` `json 'noshred'` | `jsonb_column: doc` |
//! | `RetryOptions.DurationInSeconds` (default 3600) | `retry_duration_secs` |
//! | `S3Configuration` (bucket, `ErrorOutputPrefix`, `BufferingHints`) | `error_output` and `buffering` |
//! | `S3BackupMode: Enabled` with `S3BackupConfiguration` | `backup: { mode: all }` |
//!
//! The built [`RawDestination`] goes through YAML's own validation, so a
//! stream the API accepts is one the configuration file accepts.

use serde_json::{Value, json};

use super::super::destination::{Backup, Destination};
use super::super::postgres::{postgres_destination, valid_sql_identifier};
use super::super::raw::RawDestination;
use super::super::{Config, ConfigError, Source, StreamConfig};
use super::{
    RequestError, api_stream, bounds, enabled, failed_output, invalid, refused, retry_options,
};

const KIND: &str = "RedshiftDestinationConfiguration";

fn null(field: &str) -> RequestError {
    RequestError::Validation(vec![format!(
        "Value null at 'redshiftDestinationConfiguration.{field}' failed to satisfy constraint: Member must not be null"
    )])
}

/// The parts of a `jdbc:postgresql://HOST[:PORT]/DB[?k=v&...]` URL (or
/// `jdbc:redshift://`, port 5439 by default).
#[derive(Debug, PartialEq, Eq)]
struct JdbcUrl {
    host: String,
    port: u16,
    database: String,
    tls: bool,
}

fn jdbc_url(url: &str) -> Result<JdbcUrl, RequestError> {
    let bad = |why: &str| {
        invalid(format!(
            "ClusterJDBCURL {url} {why}: expected jdbc:postgresql://HOST:PORT/DATABASE (or jdbc:redshift://)"
        ))
    };
    let (rest, default_port) = if let Some(r) = url.strip_prefix("jdbc:postgresql://") {
        (r, 5432)
    } else if let Some(r) = url.strip_prefix("jdbc:redshift://") {
        (r, 5439)
    } else {
        return Err(bad("has an unknown scheme"));
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest
        .split_once('/')
        .ok_or_else(|| bad("names no database"))?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| bad(&format!("has port `{p}`, not a number up to 65535")))?,
        ),
        None => (authority, default_port),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !host_ok {
        return Err(bad(&format!("has host `{host}`")));
    }
    let db_ok = !database.is_empty()
        && database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '-'));
    if !db_ok {
        return Err(bad(&format!("has database `{database}`")));
    }
    let mut tls = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", "require" | "verify-ca" | "verify-full")) | Some(("ssl", "true")) => {
                tls = true
            }
            Some(("sslmode", "disable" | "prefer" | "allow")) | Some(("ssl", "false")) => {}
            _ => {
                return Err(bad(&format!(
                    "has parameter `{pair}` (sslmode and ssl are taken)"
                )));
            }
        }
    }
    Ok(JdbcUrl {
        host: host.to_string(),
        port,
        database: database.to_string(),
        tls,
    })
}

/// A libpq connection string value, quoted.
fn quoted(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The YAML mapping of `CopyCommand`: `columns` from `DataTableColumns`
/// with `json 'auto'`, or `jsonb_column` with `json 'noshred'`.
fn copy_mapping(copy: &Value) -> Result<(String, Value), RequestError> {
    let table = copy
        .get("DataTableName")
        .and_then(Value::as_str)
        .ok_or_else(|| null("copyCommand.dataTableName"))?;
    if !valid_sql_identifier(table) {
        return Err(invalid(format!(
            "CopyCommand.DataTableName `{table}` is not a plain table name ([schema.]name of letters, digits, _)"
        )));
    }
    let columns: Vec<&str> = copy
        .get("DataTableColumns")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if columns.is_empty() {
        return Err(invalid(
            "CopyCommand.DataTableColumns is required: the columns each record's JSON fields of the same names are loaded into",
        ));
    }
    if let Some(c) = columns
        .iter()
        .find(|c| !valid_sql_identifier(c) || c.contains('.'))
    {
        return Err(invalid(format!(
            "CopyCommand.DataTableColumns: `{c}` is not a plain column name"
        )));
    }
    let options = copy
        .get("CopyOptions")
        .and_then(Value::as_str)
        .unwrap_or("");
    let words: Vec<String> = options
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mapping = match words.as_slice() {
        [] | ["json", "'auto'"] | ["format", "as", "json", "'auto'"] => {
            json!({ "columns": columns.iter().map(|c| json!({ "column": c })).collect::<Vec<_>>() })
        }
        ["json", "'noshred'"] | ["format", "as", "json", "'noshred'"] => {
            let [column] = columns.as_slice() else {
                return Err(invalid(
                    "CopyCommand: json 'noshred' loads each whole record into one column; DataTableColumns must name exactly one (a jsonb column)",
                ));
            };
            json!({ "jsonb_column": column })
        }
        _ => {
            return Err(invalid(format!(
                "CopyCommand.CopyOptions `{options}` is not supported: Hydrant loads JSON records with json 'auto' (a column per field) or json 'noshred' (the whole record into one jsonb column)"
            )));
        }
    };
    Ok((table.to_string(), mapping))
}

/// What the API cannot give: refused rather than ignored.
fn unsupported(d: &Value) -> Result<(), RequestError> {
    if enabled(d, "SecretsManagerConfiguration") {
        return Err(invalid(
            "SecretsManagerConfiguration is not supported by Hydrant; give Username and Password",
        ));
    }
    if enabled(d, "ProcessingConfiguration") {
        return Err(invalid(
            "ProcessingConfiguration (Lambda processors) is not supported for this destination; declare a WASM transform in YAML",
        ));
    }
    let compression = d
        .get("S3Configuration")
        .and_then(|s| s.get("CompressionFormat"))
        .and_then(Value::as_str)
        .unwrap_or("UNCOMPRESSED");
    if !matches!(compression, "UNCOMPRESSED" | "GZIP") {
        return Err(invalid(format!(
            "S3Configuration.CompressionFormat {compression} is not allowed for a Redshift destination (UNCOMPRESSED, GZIP)"
        )));
    }
    Ok(())
}

/// `S3BackupMode: Enabled`: every source record also into the
/// `S3BackupConfiguration`'s bucket.
fn backup(d: &Value, cfg: &Config) -> Result<Option<Backup>, RequestError> {
    match d
        .get("S3BackupMode")
        .and_then(Value::as_str)
        .unwrap_or("Disabled")
    {
        "Disabled" => Ok(None),
        "Enabled" => {
            let b = d
                .get("S3BackupConfiguration")
                .ok_or_else(|| invalid("S3BackupMode Enabled needs an S3BackupConfiguration"))?;
            let prefix = b.get("ErrorOutputPrefix").and_then(Value::as_str);
            Ok(failed_output(
                b,
                ("S3BackupConfiguration.ErrorOutputPrefix", prefix),
                Some("AllData"),
                cfg,
            )?
            .1)
        }
        other => Err(invalid(format!(
            "S3BackupMode {other} is not one of Disabled, Enabled"
        ))),
    }
}

/// A stream from a request with a `RedshiftDestinationConfiguration`.
pub(super) fn stream(
    name: &str,
    d: &Value,
    source: Source,
    cfg: &Config,
) -> Result<StreamConfig, RequestError> {
    let str_at = |k: &str| d.get(k).and_then(Value::as_str);
    let url = str_at("ClusterJDBCURL").ok_or_else(|| null("clusterJDBCURL"))?;
    let copy = d.get("CopyCommand").ok_or_else(|| null("copyCommand"))?;
    let s3 = d
        .get("S3Configuration")
        .ok_or_else(|| null("s3Configuration"))?;
    unsupported(d)?;
    let jdbc = jdbc_url(url)?;
    let user = str_at("Username").ok_or_else(|| {
        invalid("Username is required (SecretsManagerConfiguration is not supported)")
    })?;
    let mut connection = format!(
        "host={} port={} dbname={} user={}",
        quoted(&jdbc.host),
        jdbc.port,
        quoted(&jdbc.database),
        quoted(user)
    );
    if let Some(p) = str_at("Password") {
        connection.push_str(&format!(" password={}", quoted(p)));
    }
    let (table, mapping) = copy_mapping(copy)?;
    let mut raw = json!({ "type": "postgres", "connection": connection, "table": table });
    if let (Some(o), Value::Object(m)) = (raw.as_object_mut(), mapping) {
        o.extend(m);
        if jdbc.tls {
            o.insert("tls".into(), json!({ "mode": "require" }));
        }
    }
    let raw: RawDestination =
        serde_json::from_value(raw).map_err(|e| invalid(format!("{KIND}: {e}")))?;
    let mut errors: Vec<ConfigError> = Vec::new();
    let pg = postgres_destination(&mut errors, KIND, &raw);
    let pg = match pg {
        Some(pg) if errors.is_empty() => pg,
        _ => return Err(refused(errors)),
    };
    let retry_secs = retry_options(d, 3600)?;
    let bounds = bounds("RedshiftDestinationConfiguration.S3Configuration", s3, None)?;
    let error_prefix = s3.get("ErrorOutputPrefix").and_then(Value::as_str);
    let (errors_to, _) = failed_output(
        s3,
        ("S3Configuration.ErrorOutputPrefix", error_prefix),
        None,
        cfg,
    )?;
    let backup = backup(d, cfg)?;
    Ok(StreamConfig {
        backup,
        ..api_stream(
            name,
            source,
            &bounds,
            retry_secs,
            errors_to,
            Destination::Postgres(pg),
        )
    })
}

/// A YAML `type: postgres` destination as Firehose's Redshift fields: the
/// JDBC URL without credentials, the user, the table and its columns.
pub fn describe_yaml(pg: &super::super::PostgresDestination) -> Value {
    use super::super::ColumnMapping;
    let parsed = pg.connection.parse::<tokio_postgres::Config>().ok();
    let host = parsed
        .as_ref()
        .and_then(|c| {
            c.get_hosts().first().map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
        })
        .unwrap_or_else(|| "localhost".into());
    let port = parsed
        .as_ref()
        .and_then(|c| c.get_ports().first().copied())
        .unwrap_or(5432);
    let db = parsed
        .as_ref()
        .and_then(|c| c.get_dbname().map(str::to_string))
        .unwrap_or_default();
    let user = parsed
        .as_ref()
        .and_then(|c| c.get_user().map(str::to_string));
    let ssl = match pg.tls {
        super::super::PostgresTls::Disable => "",
        super::super::PostgresTls::Require { .. } => "?sslmode=require",
    };
    let (columns, options) = match &pg.mapping {
        ColumnMapping::Columns(cols) => (
            cols.iter()
                .map(|c| c.column.as_str())
                .collect::<Vec<_>>()
                .join(","),
            "json 'auto'",
        ),
        ColumnMapping::Jsonb(c) => (c.clone(), "json 'noshred'"),
    };
    let mut d = json!({
        "ClusterJDBCURL": format!("jdbc:postgresql://{host}:{port}/{db}{ssl}"),
        "CopyCommand": { "DataTableName": pg.table, "DataTableColumns": columns, "CopyOptions": options },
    });
    if let (Some(o), Some(u)) = (d.as_object_mut(), user) {
        o.insert("Username".into(), json!(u));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls_are_read_with_their_defaults_and_refused_when_malformed() {
        assert_eq!(
            jdbc_url("jdbc:postgresql://127.0.0.1:5433/hydrant?sslmode=require").ok(),
            Some(JdbcUrl {
                host: "127.0.0.1".into(),
                port: 5433,
                database: "hydrant".into(),
                tls: true
            })
        );
        let r = jdbc_url("jdbc:redshift://c.abc.us-east-1.redshift.amazonaws.com/dev").ok();
        assert_eq!(r.map(|u| (u.port, u.tls)), Some((5439, false)));
        for bad in [
            "postgresql://h:5432/db",
            "jdbc:postgresql://h:99999/db",
            "jdbc:postgresql://h:5432",
            "jdbc:postgresql://h:5432/db?user=x",
            "jdbc:postgresql://h;drop:5432/db",
        ] {
            let e = jdbc_url(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("ClusterJDBCURL"), "{bad}: {e}");
        }
    }

    #[test]
    fn copy_commands_map_to_columns_or_one_jsonb_column() {
        let (t, m) =
            copy_mapping(&json!({"DataTableName": "s.events", "DataTableColumns": "id, n"}))
                .unwrap_or_default();
        assert_eq!(t, "s.events");
        assert_eq!(m, json!({"columns": [{"column": "id"}, {"column": "n"}]}));
        let (_, m) = copy_mapping(&json!({"DataTableName": "e", "DataTableColumns": "doc", "CopyOptions": "FORMAT AS JSON 'noshred'"}))
            .unwrap_or_default();
        assert_eq!(m, json!({"jsonb_column": "doc"}));
        for (copy, field) in [
            (json!({"DataTableName": "e"}), "DataTableColumns"),
            (
                json!({"DataTableName": "e;drop", "DataTableColumns": "a"}),
                "DataTableName",
            ),
            (
                json!({"DataTableName": "e", "DataTableColumns": "a", "CopyOptions": "csv"}),
                "CopyOptions",
            ),
            (
                json!({"DataTableName": "e", "DataTableColumns": "a,b", "CopyOptions": "json 'noshred'"}),
                "exactly one",
            ),
        ] {
            let e = copy_mapping(&copy)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(field), "{copy}: {e}");
        }
    }

    #[test]
    fn connection_values_are_quoted_for_libpq() {
        let c = format!(
            "host=h user={} password={}",
            quoted("o'neil"),
            quoted(r"a\b c")
        );
        let parsed = c.parse::<tokio_postgres::Config>();
        assert_eq!(
            parsed.as_ref().ok().and_then(|p| p.get_user()),
            Some("o'neil")
        );
        assert_eq!(
            parsed
                .ok()
                .and_then(|p| p.get_password().map(<[u8]>::to_vec)),
            Some(br"a\b c".to_vec())
        );
    }
}
