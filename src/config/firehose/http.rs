//! `HttpEndpointDestinationConfiguration`: a delivery stream into an HTTP
//! endpoint in Firehose's request format, as the same stream's `type: http`
//! in YAML. `S3Configuration` names the bucket records that cannot be
//! delivered go to (and all records with `S3BackupMode: AllData`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::super::destination::Destination;
use super::super::http::HttpDestination;
use super::super::{Config, Source, StreamConfig};
use super::{RequestError, api_stream, bounds, failed_output, invalid, retry_options};

const KIND: &str = "HttpEndpointDestinationConfiguration";

fn null(field: &str) -> RequestError {
    RequestError::Validation(vec![format!(
        "Value null at '{field}' failed to satisfy constraint: Member must not be null"
    )])
}

/// A stream from a request with an `HttpEndpointDestinationConfiguration`.
pub(super) fn stream(
    name: &str,
    d: &Value,
    source: Source,
    cfg: &Config,
) -> Result<StreamConfig, RequestError> {
    let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let endpoint = d
        .get("EndpointConfiguration")
        .ok_or_else(|| null("httpEndpointDestinationConfiguration.endpointConfiguration"))?;
    let url = str_at(endpoint, "Url")
        .ok_or_else(|| null("httpEndpointDestinationConfiguration.endpointConfiguration.url"))?;
    if !url.starts_with("https://") && !url.starts_with("http://") || url.len() > 1000 {
        return Err(invalid(format!(
            "EndpointConfiguration.Url {url} must be an http:// or https:// URL of at most 1000 characters"
        )));
    }
    let request = d.get("RequestConfiguration");
    let gzip = match request
        .and_then(|r| str_at(r, "ContentEncoding"))
        .as_deref()
    {
        None | Some("NONE") => false,
        Some("GZIP") => true,
        Some(other) => {
            return Err(invalid(format!(
                "RequestConfiguration.ContentEncoding {other} is not one of NONE, GZIP"
            )));
        }
    };
    let mut common_attributes = BTreeMap::new();
    let attrs = request
        .and_then(|r| r.get("CommonAttributes"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for a in attrs {
        let (Some(k), Some(v)) = (str_at(a, "AttributeName"), str_at(a, "AttributeValue")) else {
            return Err(invalid(
                "RequestConfiguration.CommonAttributes entries need AttributeName and AttributeValue",
            ));
        };
        common_attributes.insert(k, v);
    }
    if common_attributes.len() > 50 {
        return Err(invalid("RequestConfiguration.CommonAttributes: at most 50"));
    }
    let bounds = bounds(KIND, d, None)?;
    let retry_secs = retry_options(d, 300)?;
    let s3 = d
        .get("S3Configuration")
        .ok_or_else(|| null("httpEndpointDestinationConfiguration.s3Configuration"))?;
    let error_prefix = s3.get("ErrorOutputPrefix").and_then(Value::as_str);
    let (errors_to, backup) = failed_output(
        s3,
        ("S3Configuration.ErrorOutputPrefix", error_prefix),
        d.get("S3BackupMode").and_then(Value::as_str),
        cfg,
    )?;
    let destination = Destination::Http(HttpDestination {
        url,
        access_key: str_at(endpoint, "AccessKey"),
        common_attributes,
        gzip,
        timeout: Duration::from_secs(180),
        records_per_request_max: 10_000,
    });
    Ok(StreamConfig {
        backup,
        ..api_stream(name, source, &bounds, retry_secs, errors_to, destination)
    })
}
