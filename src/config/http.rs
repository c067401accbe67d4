//! `type: http` destinations: Firehose's HTTP endpoint delivery (the
//! endpoint's URL, access key, common attributes, content encoding, timeout).

use std::collections::BTreeMap;
use std::time::Duration;

use super::destination::reject_fields;
use super::raw::RawDestination;
use super::{ConfigError, err, range_check};

/// Firehose's HTTP endpoint delivery.
#[derive(Clone, Debug)]
pub struct HttpDestination {
    pub url: String,
    pub access_key: Option<String>,
    pub common_attributes: BTreeMap<String, String>,
    pub gzip: bool,
    pub timeout: Duration,
    pub records_per_request_max: usize,
}

/// Validates an `http` destination.
pub(super) fn http_destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
) -> Option<HttpDestination> {
    reject_fields(
        errors,
        path,
        "http",
        &[
            ("bucket", d.bucket.is_some()),
            ("path", d.path.is_some()),
            ("prefix", d.prefix.is_some()),
            ("error_output_prefix", d.error_output_prefix.is_some()),
            ("connection", d.connection.is_some()),
            ("table", d.table.is_some()),
            ("columns", d.columns.is_some()),
            ("jsonb_column", d.jsonb_column.is_some()),
        ],
    );
    let Some(url) = d.url.clone() else {
        errors.push(err(
            format!("{path}.url"),
            "missing: an http destination needs a url",
        ));
        return None;
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        errors.push(err(
            format!("{path}.url"),
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    let gzip = match d.content_encoding.as_deref().unwrap_or("none") {
        "none" => false,
        "gzip" => true,
        other => {
            errors.push(err(
                format!("{path}.content_encoding"),
                format!("`{other}` is not an encoding (none, gzip)"),
            ));
            false
        }
    };
    let attrs = d.common_attributes.clone().unwrap_or_default();
    if attrs.len() > 50 {
        errors.push(err(
            format!("{path}.common_attributes"),
            "at most 50 attributes",
        ));
    }
    if let Some(k) = &d.access_key
        && k.len() > 4096
    {
        errors.push(err(format!("{path}.access_key"), "at most 4096 bytes"));
    }
    Some(HttpDestination {
        url,
        access_key: d.access_key.clone(),
        common_attributes: attrs,
        gzip,
        timeout: Duration::from_secs(range_check(
            errors,
            &format!("{path}.timeout_secs"),
            d.timeout_secs.unwrap_or(180),
            1,
            900,
        )),
        records_per_request_max: range_check(
            errors,
            &format!("{path}.records_per_request_max"),
            d.records_per_request_max.unwrap_or(10_000),
            1,
            10_000,
        ),
    })
}
