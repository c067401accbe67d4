//! The KinesisAnalytics API's application (`CreateApplication` as
//! `UpdateApplication` and `AddApplicationOutput` changed it) → the same
//! `ApplicationConfig` YAML gives, through the same checks. A field that
//! is wrong is named by its API path.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{
    AppColumn, AppFormat, AppInput, AppOutput, AppStream, ApplicationConfig, SQL_BYTES_MAX,
    StartingPosition,
};
use crate::aws;

/// A field that is wrong: its API path and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn str_at<'a>(v: &'a Value, key: &str, at: &str) -> Result<Option<&'a str>, FieldError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{at}{key}"), "must be a string")),
    }
}

/// The stream an input or output names by ARN.
fn stream_of(v: &Value, at: &str, kinesis: &str, firehose: &str) -> Result<AppStream, FieldError> {
    let arn = |key: &str| -> Result<Option<String>, FieldError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(o) => str_at(o, "ResourceARN", &format!("{at}{key}."))?
                .map(str::to_string)
                .map(Some)
                .ok_or_else(|| bad(format!("{at}{key}.ResourceARN"), "is required")),
        }
    };
    match (arn(kinesis)?, arn(firehose)?) {
        (Some(a), None) => aws::kinesis_stream_from_arn(&a)
            .map(|n| AppStream::Kinesis(n.to_string()))
            .ok_or_else(|| {
                bad(
                    format!("{at}{kinesis}.ResourceARN"),
                    format!("`{a}` is not a Kinesis stream ARN"),
                )
            }),
        (None, Some(a)) => aws::delivery_stream_from_arn(&a)
            .map(|n| AppStream::Delivery(n.to_string()))
            .ok_or_else(|| {
                bad(
                    format!("{at}{firehose}.ResourceARN"),
                    format!("`{a}` is not a delivery stream ARN"),
                )
            }),
        _ => Err(bad(
            at.trim_end_matches('.'),
            format!("give exactly one of {kinesis} and {firehose}"),
        )),
    }
}

/// `RecordFormat` of a schema (input) or `DestinationSchema` (output).
fn format_of(v: Option<&Value>, at: &str) -> Result<AppFormat, FieldError> {
    let Some(v) = v else {
        return Ok(AppFormat::Json {
            row_path: "$".into(),
        });
    };
    let kind = str_at(v, "RecordFormatType", at)?.unwrap_or("JSON");
    let mapping = v.get("MappingParameters");
    match kind {
        "JSON" => Ok(AppFormat::Json {
            row_path: mapping
                .and_then(|m| m.get("JSONMappingParameters"))
                .and_then(|j| j.get("RecordRowPath"))
                .and_then(Value::as_str)
                .unwrap_or("$")
                .to_string(),
        }),
        "CSV" => {
            let csv = mapping.and_then(|m| m.get("CSVMappingParameters"));
            let get = |k: &str, d: &str| {
                csv.and_then(|c| c.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or(d)
                    .to_string()
            };
            let (row, col) = (
                get("RecordRowDelimiter", "\n"),
                get("RecordColumnDelimiter", ","),
            );
            if row.is_empty() || col.is_empty() {
                return Err(bad(
                    format!("{at}MappingParameters.CSVMappingParameters"),
                    "delimiters cannot be empty",
                ));
            }
            Ok(AppFormat::Csv {
                row_delimiter: row,
                column_delimiter: col,
            })
        }
        other => Err(bad(
            format!("{at}RecordFormatType"),
            format!("`{other}` is not JSON or CSV"),
        )),
    }
}

fn input(v: &Value) -> Result<AppInput, FieldError> {
    let at = "Inputs[0].";
    let stream = stream_of(v, at, "KinesisStreamsInput", "KinesisFirehoseInput")?;
    if v.get("InputProcessingConfiguration")
        .is_some_and(|p| !p.is_null())
    {
        return Err(bad(
            format!("{at}InputProcessingConfiguration"),
            "Lambda preprocessing is not supported; use a WebAssembly transform on a delivery stream",
        ));
    }
    if let Some(n) = v
        .get("InputParallelism")
        .and_then(|p| p.get("Count"))
        .and_then(Value::as_u64)
        && n != 1
    {
        return Err(bad(
            format!("{at}InputParallelism.Count"),
            "one in-application input stream is supported",
        ));
    }
    let name_prefix = str_at(v, "NamePrefix", at)?
        .unwrap_or("SOURCE_SQL_STREAM")
        .to_string();
    if name_prefix.is_empty() || name_prefix.len() > 32 {
        return Err(bad(format!("{at}NamePrefix"), "is 1 to 32 characters"));
    }
    let schema = v
        .get("InputSchema")
        .ok_or_else(|| bad(format!("{at}InputSchema"), "is required"))?;
    let format = format_of(
        schema.get("RecordFormat"),
        &format!("{at}InputSchema.RecordFormat."),
    )?;
    if let Some(enc) = str_at(schema, "RecordEncoding", at)?
        && enc != "UTF-8"
    {
        return Err(bad(
            format!("{at}InputSchema.RecordEncoding"),
            "only UTF-8 is supported",
        ));
    }
    let cols = schema
        .get("RecordColumns")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("{at}InputSchema.RecordColumns"), "is required"))?;
    let mut columns = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        let cat = format!("{at}InputSchema.RecordColumns[{i}].");
        columns.push(AppColumn {
            name: str_at(c, "Name", &cat)?
                .ok_or_else(|| bad(format!("{cat}Name"), "is required"))?
                .to_string(),
            sql_type: str_at(c, "SqlType", &cat)?
                .ok_or_else(|| bad(format!("{cat}SqlType"), "is required"))?
                .to_string(),
            mapping: str_at(c, "Mapping", &cat)?.map(str::to_string),
        });
    }
    if columns.is_empty() {
        return Err(bad(
            format!("{at}InputSchema.RecordColumns"),
            "has at least one column",
        ));
    }
    Ok(AppInput {
        stream,
        name_prefix,
        starting_position: StartingPosition::Now,
        format,
        columns,
    })
}

fn outputs(list: &[Value]) -> Result<BTreeMap<String, AppOutput>, FieldError> {
    if list.len() > 3 {
        return Err(bad("Outputs", "an application has at most 3 outputs"));
    }
    let mut out = BTreeMap::new();
    for (i, o) in list.iter().enumerate() {
        let at = format!("Outputs[{i}].");
        if o.get("LambdaOutput").is_some_and(|l| !l.is_null()) {
            return Err(bad(
                format!("{at}LambdaOutput"),
                "Lambda outputs are not supported; write to a delivery stream with an HTTP endpoint",
            ));
        }
        let name =
            str_at(o, "Name", &at)?.ok_or_else(|| bad(format!("{at}Name"), "is required"))?;
        let stream = stream_of(o, &at, "KinesisStreamsOutput", "KinesisFirehoseOutput")?;
        let format = format_of(
            o.get("DestinationSchema"),
            &format!("{at}DestinationSchema."),
        )?;
        let format = match format {
            AppFormat::Json { .. } => AppFormat::Json {
                row_path: "$".into(),
            },
            csv => csv,
        };
        if out
            .insert(
                name.to_string(),
                AppOutput {
                    stream,
                    format,
                    partition_key: None,
                },
            )
            .is_some()
        {
            return Err(bad(
                format!("{at}Name"),
                format!("{name} is written out twice"),
            ));
        }
    }
    Ok(out)
}

/// The application a saved (or new) request describes.
pub fn from_request(name: &str, req: &Value) -> Result<ApplicationConfig, FieldError> {
    // KDA's ApplicationName: 1 to 128 of [a-zA-Z0-9_.-].
    if !aws::valid_kinesis_stream_name(name) {
        return Err(bad(
            "ApplicationName",
            "is 1 to 128 characters of letters, digits, `_`, `.` and `-`",
        ));
    }
    let inputs = req
        .get("Inputs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let [first] = inputs.as_slice() else {
        return Err(bad(
            "Inputs",
            "an application has exactly one streaming input",
        ));
    };
    let sql = str_at(req, "ApplicationCode", "")?
        .unwrap_or("")
        .to_string();
    if sql.len() > SQL_BYTES_MAX {
        return Err(bad(
            "ApplicationCode",
            format!("is {} bytes; at most {SQL_BYTES_MAX}", sql.len()),
        ));
    }
    let outs = req
        .get("Outputs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(ApplicationConfig {
        name: name.to_string(),
        input: input(first)?,
        sql,
        outputs: outputs(&outs)?,
        max_out_of_order: Duration::from_secs(5),
        idle: Duration::from_secs(30),
        checkpoint_interval: Duration::from_secs(10),
        output_interval: Duration::from_secs(1),
    })
}

/// [`from_request`] for an application read back at start.
pub fn from_saved(name: &str, req: &Value) -> Result<ApplicationConfig, String> {
    from_request(name, req).map_err(|e| format!("{}: {}", e.field, e.message))
}
