//! Changing an application (`AddApplicationOutput`, `UpdateApplication`:
//! the saved request changed and validated again as a whole, under the
//! version check; a running application restarts on it from its
//! checkpoint) and `DiscoverInputSchema` (a schema inferred from a
//! stream's records, checked against them).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::describe::{INPUT_ID, output_id};
use super::{AppState, api_error, api_owned, app_of, field_error, save, string};
use crate::analytics::{App, schema};
use crate::aws;
use crate::config::analytics::StartingPosition;
use crate::config::analytics::api::from_request;
use crate::ingest::error::ApiError;
use crate::record::Record;

fn concurrent(message: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "ConcurrentModificationException",
        message,
    )
}

/// Applies `change` to the saved request of the application `req` names,
/// validates the result as a new application would be, saves it with the
/// next version, and restarts the application if it runs.
async fn change(
    state: &AppState,
    req: &Value,
    change: impl FnOnce(&mut Map<String, Value>) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    let (name, app) = app_of(state, req)?;
    api_owned(&name, &app)?;
    let version = req
        .get("CurrentApplicationVersionId")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::invalid_argument("CurrentApplicationVersionId is required"))?;
    let _g = state.analytics.admin.lock().await;
    let mut record = app.record.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if record.version != version {
        return Err(concurrent(format!(
            "Application {name}'s version is {}, not {version}",
            record.version
        )));
    }
    let mut request = record.request.clone().unwrap_or_else(|| json!({}));
    let Some(obj) = request.as_object_mut() else {
        return Err(api_error(crate::analytics::AppError::Io(
            "the saved request is not an object".into(),
        )));
    };
    change(obj)?;
    let config = from_request(&name, &request).map_err(field_error)?;
    state.analytics.check_streams(&config).map_err(api_error)?;
    crate::analytics::build(&config, state.analytics.groups_max()).map_err(api_error)?;
    record.config = config;
    record.request = Some(request);
    record.version += 1;
    record.updated_ms = chrono::Utc::now().timestamp_millis();
    save(state, &record)?;
    let running = app.is_running();
    *app.record.lock().unwrap_or_else(|p| p.into_inner()) = record;
    if running {
        restart(state, &app).await?;
    }
    Ok(json!({}))
}

async fn restart(state: &AppState, app: &Arc<App>) -> Result<(), ApiError> {
    state.analytics.stop(app).await;
    state
        .analytics
        .start(app, StartingPosition::LastStoppedPoint)
        .map_err(api_error)
}

pub async fn add_output(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let output = req
        .get("Output")
        .filter(|o| o.is_object())
        .cloned()
        .ok_or_else(|| ApiError::invalid_argument("Output is required"))?;
    change(state, req, move |r| {
        let outputs = r.entry("Outputs").or_insert_with(|| json!([]));
        match outputs.as_array_mut() {
            Some(list) => {
                list.push(output);
                Ok(())
            }
            None => Err(ApiError::invalid_argument("Outputs is not a list")),
        }
    })
    .await
}

/// An update's `KinesisStreams{side}Update` or `KinesisFirehose{side}Update`
/// (`side`: `Input` or `Output`) onto the saved input or output: the stream
/// it names replaces whichever it had.
fn move_stream(target: &mut Value, u: &Value, side: &str) {
    for kind in ["KinesisStreams", "KinesisFirehose"] {
        let Some(arn) = u
            .get(format!("{kind}{side}Update"))
            .and_then(|x| x.get("ResourceARNUpdate"))
        else {
            continue;
        };
        if let Some(o) = target.as_object_mut() {
            o.remove(&format!("KinesisStreams{side}"));
            o.remove(&format!("KinesisFirehose{side}"));
        }
        target[format!("{kind}{side}")] =
            json!({ "ResourceARN": arn, "RoleARN": aws::default_role_arn() });
    }
}

/// `InputUpdates[0]` onto the saved `Inputs[0]`.
fn update_input(input: &mut Value, u: &Value) -> Result<(), ApiError> {
    let id = u.get("InputId").and_then(Value::as_str).unwrap_or("");
    if id != INPUT_ID {
        return Err(ApiError::not_found(format!("no input has the Id {id}")));
    }
    if let Some(p) = u.get("NamePrefixUpdate") {
        input["NamePrefix"] = p.clone();
    }
    move_stream(input, u, "Input");
    if let Some(s) = u.get("InputSchemaUpdate") {
        for (update, field) in [
            ("RecordFormatUpdate", "RecordFormat"),
            ("RecordEncodingUpdate", "RecordEncoding"),
            ("RecordColumnUpdates", "RecordColumns"),
        ] {
            if let Some(v) = s.get(update) {
                input["InputSchema"][field] = v.clone();
            }
        }
    }
    if let Some(c) = u
        .get("InputParallelismUpdate")
        .and_then(|p| p.get("CountUpdate"))
    {
        input["InputParallelism"] = json!({ "Count": c });
    }
    Ok(())
}

/// `OutputUpdates` onto the saved `Outputs`, by OutputId.
fn update_outputs(outputs: &mut [Value], updates: &[Value]) -> Result<(), ApiError> {
    for u in updates {
        let id = u.get("OutputId").and_then(Value::as_str).unwrap_or("");
        let out = (0..outputs.len())
            .find(|i| output_id(*i) == id)
            .and_then(|i| outputs.get_mut(i))
            .ok_or_else(|| ApiError::not_found(format!("no output has the Id {id}")))?;
        if let Some(n) = u.get("NameUpdate") {
            out["Name"] = n.clone();
        }
        move_stream(out, u, "Output");
        if let Some(d) = u.get("DestinationSchemaUpdate") {
            out["DestinationSchema"] = d.clone();
        }
    }
    Ok(())
}

pub async fn update(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let u = req
        .get("ApplicationUpdate")
        .filter(|u| u.is_object())
        .cloned()
        .ok_or_else(|| ApiError::invalid_argument("ApplicationUpdate is required"))?;
    for unsupported in [
        "ReferenceDataSourceUpdates",
        "CloudWatchLoggingOptionUpdates",
    ] {
        if u.get(unsupported)
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
        {
            return Err(ApiError::invalid_argument(format!(
                "ApplicationUpdate.{unsupported}: not supported"
            )));
        }
    }
    change(state, req, move |r| {
        if let Some(code) = u.get("ApplicationCodeUpdate") {
            r.insert("ApplicationCode".into(), code.clone());
        }
        if let Some(inputs) = u.get("InputUpdates").and_then(Value::as_array) {
            let input = r
                .get_mut("Inputs")
                .and_then(|i| i.get_mut(0))
                .ok_or_else(|| ApiError::invalid_argument("the application has no input"))?;
            for i in inputs {
                update_input(input, i)?;
            }
        }
        if let Some(updates) = u.get("OutputUpdates").and_then(Value::as_array) {
            let outputs = r
                .get_mut("Outputs")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| ApiError::not_found("the application has no outputs"))?;
            update_outputs(outputs, updates)?;
        }
        Ok(())
    })
    .await
}

/// Records sampled for discovery, from the oldest or the newest.
const SAMPLES: usize = 100;

fn sample(log: &crate::log::StreamLog, newest: bool) -> Result<Vec<Record>, ApiError> {
    let mut out = Vec::new();
    let shards = log.shards();
    // An even share from each shard.
    let share = SAMPLES.div_ceil(shards.len().max(1));
    for shard in shards {
        let from = if newest {
            shard
                .durable_end()
                .saturating_sub(share as u64)
                .max(shard.oldest_offset())
        } else {
            shard.oldest_offset()
        };
        let mut reader = shard.reader(from);
        let got = reader
            .read(share, 4 << 20)
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        out.extend(got);
    }
    out.truncate(SAMPLES);
    Ok(out)
}

fn unable(message: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "UnableToDetectSchemaException",
        message,
    )
}

pub async fn discover(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let arn = string(req, "ResourceARN")?;
    let input = if let Some(n) = aws::kinesis_stream_from_arn(arn) {
        crate::analytics::runner::io::StreamRef::Kinesis(n.to_string())
    } else if let Some(n) = aws::delivery_stream_from_arn(arn) {
        crate::analytics::runner::io::StreamRef::Delivery(n.to_string())
    } else {
        return Err(ApiError::invalid_argument(format!(
            "ResourceARN: `{arn}` is not a Kinesis stream or delivery stream ARN"
        )));
    };
    let view = crate::analytics::runner::io::input_view(&state.registry, &input)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let newest = req
        .get("InputStartingPositionConfiguration")
        .and_then(|c| c.get("InputStartingPosition"))
        .and_then(Value::as_str)
        .is_none_or(|p| p != "TRIM_HORIZON");
    let log = view.log.clone();
    let records = tokio::task::spawn_blocking(move || sample(&log, newest))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))??;
    if records.is_empty() {
        return Err(unable("the stream has no records to sample"));
    }
    let raw: Vec<&[u8]> = records.iter().map(|r| r.data.as_ref()).collect();
    let inferred = schema::infer(&raw, None).map_err(|e| unable(e.to_string()))?;
    let mut decoder =
        crate::analytics::decode::Decoder::new(&inferred).map_err(|e| unable(e.to_string()))?;
    let (batch, _, rejects) = decoder.decode(&raw);
    if let Some(r) = rejects.first() {
        return Err(ApiError::invalid_argument(format!(
            "column {}: the discovered schema cannot map sampled record {}: {}",
            r.column.as_deref().unwrap_or("(the record)"),
            r.index,
            r.message
        )));
    }
    Ok(json!({
        "InputSchema": schema_json(&inferred),
        "ParsedInputRecords": parsed(&batch),
        "RawInputRecords": raw.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>(),
    }))
}

fn schema_json(s: &schema::InputSchema) -> Value {
    let format = match &s.format {
        schema::RecordFormat::Json { row_path } => json!({
            "RecordFormatType": "JSON",
            "MappingParameters": { "JSONMappingParameters": { "RecordRowPath": row_path } },
        }),
        schema::RecordFormat::Csv {
            row_delimiter,
            column_delimiter,
        } => json!({
            "RecordFormatType": "CSV",
            "MappingParameters": { "CSVMappingParameters": {
                "RecordRowDelimiter": row_delimiter, "RecordColumnDelimiter": column_delimiter,
            }},
        }),
    };
    let columns: Vec<Value> = s
        .columns
        .iter()
        .map(|c| {
            let mut v = json!({ "Name": c.name, "SqlType": c.sql_type.sql() });
            if let Some(m) = &c.mapping {
                v["Mapping"] = json!(m);
            }
            v
        })
        .collect();
    json!({ "RecordFormat": format, "RecordEncoding": "UTF-8", "RecordColumns": columns })
}

/// Each decoded row's values as text, as `ParsedInputRecords` lists them.
fn parsed(batch: &arrow_array::RecordBatch) -> Vec<Vec<Option<String>>> {
    let options = arrow_cast::display::FormatOptions::default();
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .filter_map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &options).ok())
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            formatters
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| (!c.is_null(i)).then(|| f.value(i).to_string()))
                .collect()
        })
        .collect()
}
