//! `DescribeApplication` and `ListApplications`: an application in the
//! shapes of `ApplicationDetail` and `ApplicationSummary`, its request as
//! updates changed it, its status and timestamps (epoch seconds).

use serde_json::{Value, json};

use super::{AppState, app_of};
use crate::analytics::App;
use crate::aws;
use crate::config::analytics::{AppFormat, AppStream, ApplicationConfig};
use crate::ingest::error::ApiError;

/// The one input's id.
pub const INPUT_ID: &str = "1.1";

/// The id of output `i` (in the order they were added).
pub fn output_id(i: usize) -> String {
    format!("1.{}", i + 2)
}

fn status(app: &App) -> String {
    app.status.state()
}

/// The API's prefix for the stream's kind (`KinesisStreams…Description`,
/// `KinesisFirehose…Description`) and the description itself.
fn stream_description(s: &AppStream) -> (&'static str, Value) {
    let role = aws::default_role_arn();
    match s {
        AppStream::Kinesis(n) => (
            "KinesisStreams",
            json!({ "ResourceARN": aws::kinesis_stream_arn(n), "RoleARN": role }),
        ),
        AppStream::Delivery(n) => (
            "KinesisFirehose",
            json!({ "ResourceARN": aws::delivery_stream_arn(n), "RoleARN": role }),
        ),
    }
}

fn record_format(f: &AppFormat) -> Value {
    match f {
        AppFormat::Json { row_path } => json!({
            "RecordFormatType": "JSON",
            "MappingParameters": { "JSONMappingParameters": { "RecordRowPath": row_path } },
        }),
        AppFormat::Csv {
            row_delimiter,
            column_delimiter,
        } => json!({
            "RecordFormatType": "CSV",
            "MappingParameters": { "CSVMappingParameters": {
                "RecordRowDelimiter": row_delimiter,
                "RecordColumnDelimiter": column_delimiter,
            }},
        }),
    }
}

fn input_description(c: &ApplicationConfig) -> Value {
    let (kind, stream) = stream_description(&c.input.stream);
    let columns: Vec<Value> = c
        .input
        .columns
        .iter()
        .map(|col| {
            let mut v = json!({ "Name": col.name, "SqlType": col.sql_type });
            if let Some(m) = &col.mapping {
                v["Mapping"] = json!(m);
            }
            v
        })
        .collect();
    let mut d = json!({
        "InputId": INPUT_ID,
        "NamePrefix": c.input.name_prefix,
        "InAppStreamNames": [format!("{}_001", c.input.name_prefix)],
        "InputSchema": {
            "RecordFormat": record_format(&c.input.format),
            "RecordEncoding": "UTF-8",
            "RecordColumns": columns,
        },
        "InputParallelism": { "Count": 1 },
        "InputStartingPositionConfiguration": { "InputStartingPosition": c.input.starting_position.api() },
    });
    d[format!("{kind}InputDescription")] = stream;
    d
}

fn output_descriptions(c: &ApplicationConfig, order: &[String]) -> Vec<Value> {
    order
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let o = c.outputs.get(name)?;
            let (kind, stream) = stream_description(&o.stream);
            let format = match o.format {
                AppFormat::Json { .. } => "JSON",
                AppFormat::Csv { .. } => "CSV",
            };
            let mut d = json!({
                "OutputId": output_id(i),
                "Name": name,
                "DestinationSchema": { "RecordFormatType": format },
            });
            d[format!("{kind}OutputDescription")] = stream;
            Some(d)
        })
        .collect()
}

/// The names of an application's outputs in the order they were added
/// (the request's `Outputs`; YAML's by name).
pub fn output_order(c: &ApplicationConfig, request: Option<&Value>) -> Vec<String> {
    match request
        .and_then(|r| r.get("Outputs"))
        .and_then(Value::as_array)
    {
        Some(list) => list
            .iter()
            .filter_map(|o| o.get("Name").and_then(Value::as_str).map(str::to_string))
            .collect(),
        None => c.outputs.keys().cloned().collect(),
    }
}

/// `ApplicationDetail` of `app`.
pub fn detail(name: &str, app: &App) -> Value {
    let r = app.record.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let order = output_order(&r.config, r.request.as_ref());
    json!({
        "ApplicationName": name,
        "ApplicationDescription": r.description,
        "ApplicationARN": aws::analytics_application_arn(name),
        "ApplicationStatus": status(app),
        "CreateTimestamp": r.created_ms as f64 / 1000.0,
        "LastUpdateTimestamp": r.updated_ms as f64 / 1000.0,
        "InputDescriptions": [input_description(&r.config)],
        "OutputDescriptions": output_descriptions(&r.config, &order),
        "ReferenceDataSourceDescriptions": [],
        "CloudWatchLoggingOptionDescriptions": [],
        "ApplicationCode": r.config.sql,
        "ApplicationVersionId": r.version,
    })
}

pub fn describe(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let (name, app) = app_of(state, req)?;
    Ok(json!({ "ApplicationDetail": detail(&name, &app) }))
}

pub fn list(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let limit = match req.get("Limit") {
        None | Some(Value::Null) => 50,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=50) => n as usize,
            _ => {
                return Err(ApiError::validation(&[format!(
                    "Value '{v}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 50"
                )]));
            }
        },
    };
    let after = req
        .get("ExclusiveStartApplicationName")
        .and_then(Value::as_str);
    let all = state.analytics.all();
    let mut page: Vec<Value> = all
        .iter()
        .filter(|(n, _)| after.is_none_or(|a| n.as_str() > a))
        .map(|(n, app)| {
            json!({
                "ApplicationName": n,
                "ApplicationARN": aws::analytics_application_arn(n),
                "ApplicationStatus": status(app),
            })
        })
        .collect();
    let more = page.len() > limit;
    page.truncate(limit);
    Ok(json!({ "ApplicationSummaries": page, "HasMoreApplications": more }))
}
