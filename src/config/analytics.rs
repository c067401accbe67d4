//! `analytics`: SQL applications over streams, and their bounds. This
//! checks the shape (one input, known formats, bounds in range); column
//! types and the SQL itself are checked when the applications are planned,
//! before the daemon serves, with errors naming the same YAML paths.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, err, range_check};

pub mod api;

/// `analytics` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalytics {
    pub applications_max: Option<usize>,
    pub groups_max: Option<usize>,
    #[serde(default)]
    pub applications: BTreeMap<String, RawApplication>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApplication {
    pub input: RawInput,
    pub sql: String,
    #[serde(default)]
    pub outputs: BTreeMap<String, RawOutput>,
    pub event_time: Option<RawEventTime>,
    pub checkpoint_interval_secs: Option<u64>,
    pub output_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    pub kinesis_stream: Option<String>,
    pub delivery_stream: Option<String>,
    pub name_prefix: Option<String>,
    pub starting_position: Option<String>,
    pub format: Option<String>,
    pub row_path: Option<String>,
    pub row_delimiter: Option<String>,
    pub column_delimiter: Option<String>,
    pub columns: Vec<RawColumn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
    pub mapping: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub kinesis_stream: Option<String>,
    pub delivery_stream: Option<String>,
    pub format: Option<String>,
    pub row_delimiter: Option<String>,
    pub column_delimiter: Option<String>,
    pub partition_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventTime {
    pub max_out_of_order_secs: Option<f64>,
    pub idle_secs: Option<u64>,
}

/// A stream an application reads or writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppStream {
    Kinesis(String),
    Delivery(String),
}

/// Records as JSON objects or CSV lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppFormat {
    Json {
        row_path: String,
    },
    Csv {
        row_delimiter: String,
        column_delimiter: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppColumn {
    pub name: String,
    /// As written: `VARCHAR(8)`, `DOUBLE`, `TIMESTAMP`, …
    pub sql_type: String,
    pub mapping: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartingPosition {
    Now,
    TrimHorizon,
    LastStoppedPoint,
}

impl StartingPosition {
    pub fn parse(s: &str) -> Option<StartingPosition> {
        Some(match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "NOW" => StartingPosition::Now,
            "TRIM_HORIZON" => StartingPosition::TrimHorizon,
            "LAST_STOPPED_POINT" => StartingPosition::LastStoppedPoint,
            _ => return None,
        })
    }

    pub fn api(&self) -> &'static str {
        match self {
            StartingPosition::Now => "NOW",
            StartingPosition::TrimHorizon => "TRIM_HORIZON",
            StartingPosition::LastStoppedPoint => "LAST_STOPPED_POINT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppInput {
    pub stream: AppStream,
    /// The in-application stream is `<prefix>_001`.
    pub name_prefix: String,
    pub starting_position: StartingPosition,
    pub format: AppFormat,
    pub columns: Vec<AppColumn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppOutput {
    pub stream: AppStream,
    pub format: AppFormat,
    pub partition_key: Option<String>,
}

/// One application, from YAML or the API.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplicationConfig {
    pub name: String,
    pub input: AppInput,
    pub sql: String,
    /// In-application stream name → where its rows go.
    pub outputs: BTreeMap<String, AppOutput>,
    pub max_out_of_order: Duration,
    pub idle: Duration,
    pub checkpoint_interval: Duration,
    pub output_interval: Duration,
}

/// Bounds of every application.
#[derive(Clone, Debug)]
pub struct AnalyticsOptions {
    /// Applications at once, YAML and API together.
    pub applications_max: usize,
    /// Open groups (windows × keys) per windowed pump; a row that would
    /// open one more goes to `error_stream` (`State_limit`).
    pub groups_max: usize,
    pub applications: BTreeMap<String, ApplicationConfig>,
}

impl Default for AnalyticsOptions {
    fn default() -> Self {
        AnalyticsOptions {
            applications_max: 50,
            groups_max: 100_000,
            applications: BTreeMap::new(),
        }
    }
}

/// Longest SQL an application may have (KDA's 100 KB).
pub const SQL_BYTES_MAX: usize = 102_400;

fn stream_of(
    errors: &mut Vec<ConfigError>,
    path: &str,
    kinesis: Option<String>,
    delivery: Option<String>,
) -> Option<AppStream> {
    match (kinesis, delivery) {
        (Some(k), None) => Some(AppStream::Kinesis(k)),
        (None, Some(d)) => Some(AppStream::Delivery(d)),
        _ => {
            errors.push(err(
                path,
                "give exactly one of kinesis_stream and delivery_stream",
            ));
            None
        }
    }
}

pub(crate) fn format_of(
    errors: &mut Vec<ConfigError>,
    path: &str,
    format: Option<&str>,
    row_path: Option<String>,
    row_delimiter: Option<String>,
    column_delimiter: Option<String>,
) -> AppFormat {
    match format.unwrap_or("json").to_ascii_lowercase().as_str() {
        "json" => AppFormat::Json {
            row_path: row_path.unwrap_or_else(|| "$".into()),
        },
        "csv" => {
            let row = row_delimiter.unwrap_or_else(|| "\n".into());
            let col = column_delimiter.unwrap_or_else(|| ",".into());
            if row.is_empty() || col.is_empty() {
                errors.push(err(path, "CSV delimiters cannot be empty"));
            }
            AppFormat::Csv {
                row_delimiter: row,
                column_delimiter: col,
            }
        }
        other => {
            errors.push(err(
                format!("{path}.format"),
                format!("`{other}` is not json or csv"),
            ));
            AppFormat::Json {
                row_path: "$".into(),
            }
        }
    }
}

fn input(errors: &mut Vec<ConfigError>, path: &str, r: RawInput) -> Option<AppInput> {
    let stream = stream_of(
        errors,
        &format!("{path}.input"),
        r.kinesis_stream,
        r.delivery_stream,
    );
    let starting_position = match r.starting_position.as_deref() {
        None => StartingPosition::Now,
        Some(s) => StartingPosition::parse(s).unwrap_or_else(|| {
            errors.push(err(
                format!("{path}.input.starting_position"),
                format!("`{s}` is not now, trim_horizon or last_stopped_point"),
            ));
            StartingPosition::Now
        }),
    };
    let format = format_of(
        errors,
        &format!("{path}.input"),
        r.format.as_deref(),
        r.row_path,
        r.row_delimiter,
        r.column_delimiter,
    );
    if r.columns.is_empty() {
        errors.push(err(
            format!("{path}.input.columns"),
            "an input has at least one column",
        ));
    }
    let name_prefix = r.name_prefix.unwrap_or_else(|| "SOURCE_SQL_STREAM".into());
    Some(AppInput {
        stream: stream?,
        name_prefix,
        starting_position,
        format,
        columns: r
            .columns
            .into_iter()
            .map(|c| AppColumn {
                name: c.name,
                sql_type: c.sql_type,
                mapping: c.mapping,
            })
            .collect(),
    })
}

fn application(
    errors: &mut Vec<ConfigError>,
    name: &str,
    r: RawApplication,
) -> Option<ApplicationConfig> {
    let path = format!("analytics.applications.{name}");
    if !crate::aws::valid_delivery_stream_name(name) {
        errors.push(err(
            &path,
            "an application name is 1 to 64 characters of letters, digits, `_`, `.` and `-`",
        ));
    }
    if r.sql.len() > SQL_BYTES_MAX {
        errors.push(err(
            format!("{path}.sql"),
            format!("is {} bytes; at most {SQL_BYTES_MAX}", r.sql.len()),
        ));
    }
    if r.outputs.len() > 3 {
        errors.push(err(
            format!("{path}.outputs"),
            "an application has at most 3 outputs",
        ));
    }
    let mut outputs = BTreeMap::new();
    for (stream, o) in r.outputs {
        let at = format!("{path}.outputs.{stream}");
        let format = format_of(
            errors,
            &at,
            o.format.as_deref(),
            None,
            o.row_delimiter,
            o.column_delimiter,
        );
        if let Some(s) = stream_of(errors, &at, o.kinesis_stream, o.delivery_stream) {
            outputs.insert(
                stream,
                AppOutput {
                    stream: s,
                    format,
                    partition_key: o.partition_key,
                },
            );
        }
    }
    let et = r.event_time.unwrap_or(RawEventTime {
        max_out_of_order_secs: None,
        idle_secs: None,
    });
    let delay = et.max_out_of_order_secs.unwrap_or(5.0);
    if !(0.0..=86_400.0).contains(&delay) {
        errors.push(err(
            format!("{path}.event_time.max_out_of_order_secs"),
            format!("{delay} is out of range (0 to 86400)"),
        ));
    }
    let idle = range_check(
        errors,
        &format!("{path}.event_time.idle_secs"),
        et.idle_secs.unwrap_or(30),
        1,
        86_400,
    );
    let checkpoint = range_check(
        errors,
        &format!("{path}.checkpoint_interval_secs"),
        r.checkpoint_interval_secs.unwrap_or(10),
        1,
        3600,
    );
    let output = range_check(
        errors,
        &format!("{path}.output_interval_ms"),
        r.output_interval_ms.unwrap_or(1000),
        10,
        60_000,
    );
    let input = input(errors, &path, r.input)?;
    Some(ApplicationConfig {
        name: name.to_string(),
        input,
        sql: r.sql,
        outputs,
        max_out_of_order: Duration::from_secs_f64(delay.clamp(0.0, 86_400.0)),
        idle: Duration::from_secs(idle),
        checkpoint_interval: Duration::from_secs(checkpoint),
        output_interval: Duration::from_millis(output),
    })
}

/// Validates `analytics`.
pub(super) fn analytics(
    errors: &mut Vec<ConfigError>,
    r: RawAnalytics,
    clustered: bool,
) -> AnalyticsOptions {
    let d = AnalyticsOptions::default();
    let applications_max = range_check(
        errors,
        "analytics.applications_max",
        r.applications_max.unwrap_or(d.applications_max),
        1,
        10_000,
    );
    let groups_max = range_check(
        errors,
        "analytics.groups_max",
        r.groups_max.unwrap_or(d.groups_max),
        1,
        100_000_000,
    );
    if clustered && !r.applications.is_empty() {
        errors.push(err(
            "analytics.applications",
            "SQL applications run on a single node; cluster mode does not run them yet",
        ));
    }
    if r.applications.len() > applications_max {
        errors.push(err(
            "analytics.applications",
            format!(
                "{} applications; analytics.applications_max is {applications_max}",
                r.applications.len()
            ),
        ));
    }
    let applications = r
        .applications
        .into_iter()
        .filter_map(|(name, a)| application(errors, &name, a).map(|c| (name, c)))
        .collect();
    AnalyticsOptions {
        applications_max,
        groups_max,
        applications,
    }
}
