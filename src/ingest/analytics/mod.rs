//! The Kinesis Data Analytics API (`X-Amz-Target:
//! KinesisAnalytics_20150814.<Op>`, AWS JSON 1.1): SQL applications made,
//! described, started, stopped, changed and deleted, in the shapes of
//! botocore's `kinesisanalytics` model. Validation is the config layer's
//! (`config::analytics::api`) and planning the analytics module's, so an
//! application the API accepts is one YAML would; this module only maps
//! requests and errors.

mod describe;
mod update;

use std::sync::Arc;

use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::analytics::store::{self, AppRecord};
use crate::analytics::{App, AppError, Origin};
use crate::aws;
use crate::config::analytics::StartingPosition;
use crate::config::analytics::api::{FieldError, from_request};

/// The request's operation, answered.
pub async fn call(state: &AppState, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::serialization(format!("cannot parse the request body as JSON: {e}"))
        })?
    };
    dispatch(state, op, &req).await
}

/// Answers `op` for the parsed request. The fuzz target's entry.
pub async fn dispatch(state: &AppState, op: &str, req: &Value) -> Result<Value, ApiError> {
    match op {
        "CreateApplication" => create(state, req).await,
        "DescribeApplication" => describe::describe(state, req),
        "ListApplications" => describe::list(state, req),
        "StartApplication" => start(state, req).await,
        "StopApplication" => stop(state, req).await,
        "DeleteApplication" => delete(state, req).await,
        "AddApplicationOutput" => update::add_output(state, req).await,
        "UpdateApplication" => update::update(state, req).await,
        "DiscoverInputSchema" => update::discover(state, req).await,
        other => Err(ApiError::unknown_operation(format!(
            "KinesisAnalytics_20150814.{other} is not an operation Hydrant implements"
        ))),
    }
}

/// An analytics error as the API answers it.
pub(super) fn api_error(e: AppError) -> ApiError {
    match e {
        AppError::Code(m) => ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "CodeValidationException",
            m,
        ),
        AppError::Invalid { field, message } => {
            ApiError::invalid_argument(format!("{field}: {message}"))
        }
        AppError::NotFound(m) => ApiError::not_found(m),
        AppError::InUse(m) => ApiError::in_use(m),
        AppError::Limit(m) => ApiError::limit_exceeded(m),
        AppError::Io(m) => ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailureException",
            m,
        ),
    }
}

pub(super) fn field_error(e: FieldError) -> ApiError {
    ApiError::invalid_argument(format!("{}: {}", e.field, e.message))
}

/// A string field; `missing` names it when it is required and absent.
pub(super) fn string<'a>(req: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    match req.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::serialization(format!(
            "'{field}' must be a string"
        ))),
        None => Err(ApiError::invalid_argument(format!("{field} is required"))),
    }
}

/// The application a request names.
pub(super) fn app_of(state: &AppState, req: &Value) -> Result<(String, Arc<App>), ApiError> {
    let name = string(req, "ApplicationName")?;
    let app = state.analytics.get(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "Application {name} not found under account {}.",
            aws::ACCOUNT
        ))
    })?;
    Ok((name.to_string(), app))
}

/// Refuses changing a YAML application through the API.
pub(super) fn api_owned(name: &str, app: &App) -> Result<(), ApiError> {
    if app.origin == Origin::Yaml {
        return Err(ApiError::invalid_argument(format!(
            "Application {name} is defined in the config file; change it there"
        )));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Saves an API application's record. Blocking, briefly.
pub(super) fn save(state: &AppState, record: &AppRecord) -> Result<(), ApiError> {
    store::save(&state.analytics.app_dir(&record.config.name), record)
        .map_err(|e| api_error(AppError::Io(e.to_string())))
}

async fn create(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let name = string(req, "ApplicationName")?.to_string();
    let _g = state.analytics.admin.lock().await;
    if state.analytics.get(&name).is_some() {
        return Err(ApiError::in_use(format!(
            "Application {name} already exists."
        )));
    }
    let max = state.registry.config.analytics.applications_max;
    if state.analytics.all().len() >= max {
        return Err(ApiError::limit_exceeded(format!(
            "there are {max} applications already (analytics.applications_max)"
        )));
    }
    let description = req
        .get("ApplicationDescription")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if description.len() > 1024 {
        return Err(ApiError::invalid_argument(
            "ApplicationDescription: is at most 1024 characters",
        ));
    }
    let config = from_request(&name, req).map_err(field_error)?;
    state.analytics.check_streams(&config).map_err(api_error)?;
    crate::analytics::build(&config, state.analytics.groups_max()).map_err(api_error)?;
    let mut saved = req.clone();
    if let Some(o) = saved.as_object_mut() {
        o.remove("Tags");
    }
    let now = now_ms();
    let record = AppRecord {
        config,
        description,
        version: 1,
        created_ms: now,
        updated_ms: now,
        request: Some(saved),
        running: false,
    };
    save(state, &record)?;
    state.analytics.insert(Origin::Api, record);
    Ok(json!({ "ApplicationSummary": {
        "ApplicationName": name,
        "ApplicationARN": aws::analytics_application_arn(&name),
        "ApplicationStatus": "READY",
    }}))
}

fn starting_position(req: &Value) -> Result<StartingPosition, ApiError> {
    let configs = req
        .get("InputConfigurations")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid_argument("InputConfigurations is required"))?;
    let [one] = configs.as_slice() else {
        return Err(ApiError::invalid_argument(
            "InputConfigurations: an application has one input (Id 1.1)",
        ));
    };
    if let Some(id) = one.get("Id").and_then(Value::as_str)
        && id != describe::INPUT_ID
    {
        return Err(ApiError::not_found(format!("no input has the Id {id}")));
    }
    let pos = one
        .get("InputStartingPositionConfiguration")
        .and_then(|c| c.get("InputStartingPosition"))
        .and_then(Value::as_str)
        .unwrap_or("NOW");
    StartingPosition::parse(pos).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "InputStartingPosition: `{pos}` is not NOW, TRIM_HORIZON or LAST_STOPPED_POINT"
        ))
    })
}

async fn start(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let (name, app) = app_of(state, req)?;
    let at = starting_position(req)?;
    let _g = state.analytics.admin.lock().await;
    if app.is_running() {
        return Err(ApiError::in_use(format!(
            "Application {name} is running; stop it first."
        )));
    }
    state.analytics.start(&app, at).map_err(api_error)?;
    set_running(state, &app, true)?;
    Ok(json!({}))
}

/// Records whether an API application runs (it starts again with the
/// daemon if it does).
fn set_running(state: &AppState, app: &App, running: bool) -> Result<(), ApiError> {
    if app.origin == Origin::Yaml {
        return Ok(());
    }
    let record = {
        let mut r = app.record.lock().unwrap_or_else(|p| p.into_inner());
        r.running = running;
        r.clone()
    };
    save(state, &record)
}

async fn stop(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let (_, app) = app_of(state, req)?;
    let _g = state.analytics.admin.lock().await;
    state.analytics.stop(&app).await;
    set_running(state, &app, false)?;
    Ok(json!({}))
}

async fn delete(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let (name, app) = app_of(state, req)?;
    api_owned(&name, &app)?;
    let created = app
        .record
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .created_ms;
    match req.get("CreateTimestamp").and_then(Value::as_f64) {
        Some(t) if (t * 1000.0).round() as i64 / 1000 == created / 1000 => {}
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "CreateTimestamp does not match the application's creation time",
            ));
        }
        None => return Err(ApiError::invalid_argument("CreateTimestamp is required")),
    }
    let _g = state.analytics.admin.lock().await;
    state.analytics.stop(&app).await;
    state.analytics.forget(&name).map_err(api_error)?;
    Ok(json!({}))
}
