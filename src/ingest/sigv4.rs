//! AWS Signature Version 4 verification for incoming requests.
//!
//! Rebuilds the canonical request from exactly the signed headers, hashes the
//! body itself (the Firehose and Kinesis SDKs send no
//! `x-amz-content-sha256`), checks the ±5-minute clock window that real
//! Firehose and Kinesis apply, and compares signatures in constant time.
//! Pure functions of the request: no I/O, no clock of its own.

use axum::http::{HeaderMap, Method};
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::AccessKey;

type HmacSha256 = Hmac<Sha256>;

/// Allowed difference between the request's date and ours.
pub const CLOCK_SKEW_SECS: i64 = 300;

fn missing_token() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
}

fn incomplete(msg: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "IncompleteSignatureException",
        msg,
    )
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "InvalidSignatureException",
        msg,
    )
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm")
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(format!(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. Authorization={value}"
        )));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = parts[..] else {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region and terminated by 'aws4_request'. Credential={credential}"
        )));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

fn trim_collapse(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut m = <HmacSha256 as hmac::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Verifies the request's SigV4 signature against `keys`. `now` is passed in
/// so tests can pin the clock.
pub fn verify<'k>(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    keys: &'k [AccessKey],
    now: DateTime<Utc>,
) -> Result<&'k AccessKey, ApiError> {
    let Some(auth_value) = headers.get("authorization") else {
        if query.contains("X-Amz-Signature=") {
            return Err(invalid(
                "query-string signatures are not supported; sign the Authorization header",
            ));
        }
        return Err(missing_token());
    };
    let auth_value = auth_value
        .to_str()
        .map_err(|_| incomplete("Authorization header is not ASCII"))?;
    let auth = parse_authorization(auth_value)?;
    let Some(key) = keys.iter().find(|k| k.access_key_id == auth.access_key_id) else {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    if !auth.signed_headers.contains(&"host") {
        return Err(invalid("'Host' must be a signed header"));
    }
    let amz_date = request_date(headers, &auth, now)?;
    let body_hash = hex::encode(Sha256::digest(body));
    if let Some(claimed) = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        && claimed != "UNSIGNED-PAYLOAD"
        && claimed != body_hash
    {
        return Err(invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let canonical_request = canonical_request(method, path, query, headers, &auth, &body_hash)?;
    let expected = expected_signature(&key.secret_access_key, &auth, amz_date, &canonical_request);
    if expected.as_bytes().ct_eq(auth.signature.as_bytes()).into() {
        Ok(key)
    } else {
        Err(invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    }
}

/// The request's `X-Amz-Date`, checked against the credential scope's date
/// and against `now` within [`CLOCK_SKEW_SECS`].
fn request_date<'h>(
    headers: &'h HeaderMap,
    auth: &Authorization<'_>,
    now: DateTime<Utc>,
) -> Result<&'h str, ApiError> {
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    let req_time = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            incomplete(format!(
                "X-Amz-Date {amz_date} is not in the form yyyyMMdd'T'HHmmss'Z'"
            ))
        })?
        .and_utc();
    if !amz_date.starts_with(auth.date) {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            &amz_date[..8.min(amz_date.len())]
        )));
    }
    let skew = (now - req_time).num_seconds();
    if skew > CLOCK_SKEW_SECS {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            (now - chrono::Duration::seconds(CLOCK_SKEW_SECS)).format("%Y%m%dT%H%M%SZ"),
            now.format("%Y%m%dT%H%M%SZ")
        )));
    }
    if skew < -CLOCK_SKEW_SECS {
        return Err(invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            (now + chrono::Duration::seconds(CLOCK_SKEW_SECS)).format("%Y%m%dT%H%M%SZ"),
            now.format("%Y%m%dT%H%M%SZ")
        )));
    }
    Ok(amz_date)
}

/// The canonical request, from exactly the signed headers; refuses a signed
/// header the request does not have.
fn canonical_request(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    auth: &Authorization<'_>,
    body_hash: &str,
) -> Result<String, ApiError> {
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| trim_collapse(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() {
            return Err(invalid(format!(
                "signed header '{name}' is missing from the request"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(body_hash);
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.as_str(),
        uri_encode(
            &percent_decode(if path.is_empty() { "/" } else { path }),
            false
        ),
        canonical_query(query),
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    ))
}

/// The signature, hex-encoded, that the secret key makes for this canonical
/// request.
fn expected_signature(
    secret: &str,
    auth: &Authorization<'_>,
    amz_date: &str,
    canonical_request: &str,
) -> String {
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

#[cfg(test)]
mod tests;
