//! `application/x-amz-cbor-1.1`, the encoding the AWS SDKs for Java (and so
//! the KCL, Flink and Spark connectors) send Kinesis requests in by default.
//!
//! A CBOR request is turned into the JSON value the JSON protocol would have
//! sent, so one set of handlers serves both: byte strings become base64
//! strings, and timestamps (tag 1 around epoch *milliseconds*, as the AWS
//! SDKs write them) become epoch seconds. A reply goes the other way: the
//! members that are blobs in the Kinesis model (`Data`) become byte strings,
//! and its timestamps become tag 1 around epoch milliseconds.
//!
//! The two paths that carry records skip the value: a `PutRecords` body of
//! the shape the SDK sends is read straight into its records, and the
//! `PutRecords` and `GetRecords` answers are written directly ([`write`]),
//! byte for byte as the value would have been.

use base64::Engine;
use ciborium::Value as Cbor;
use serde_json::{Map, Number, Value};

pub(crate) mod write;

pub const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// Members that are blobs in the Kinesis model.
const BLOB_MEMBERS: &[&str] = &["Data"];
/// Members that are timestamps in the Kinesis model.
const TIMESTAMP_MEMBERS: &[&str] = &[
    "ApproximateArrivalTimestamp",
    "StreamCreationTimestamp",
    "Timestamp",
    "ConsumerCreationTimestamp",
];

/// Decodes a CBOR request body into the value its JSON form would be.
pub fn request_to_json(body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Cbor = ciborium::from_reader(body).map_err(|e| format!("not valid CBOR: {e}"))?;
    to_json(v)
}

fn to_json(v: Cbor) -> Result<Value, String> {
    Ok(match v {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(x) = i64::try_from(i) {
                Value::Number(x.into())
            } else if let Ok(x) = u64::try_from(i) {
                Value::Number(x.into())
            } else {
                return Err(format!("integer {i} is out of range"));
            }
        }
        Cbor::Float(f) => {
            Value::Number(Number::from_f64(f).ok_or_else(|| format!("number {f} is not finite"))?)
        }
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Array(a) => Value::Array(a.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Cbor::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let Cbor::Text(k) = k else {
                    return Err("map keys must be text".into());
                };
                out.insert(k, to_json(v)?);
            }
            Value::Object(out)
        }
        // Epoch time: the AWS SDKs send integer milliseconds; a float is
        // read as seconds, as RFC 8949 has it.
        Cbor::Tag(1, inner) => match *inner {
            Cbor::Integer(i) => {
                let ms = i128::from(i);
                let ms =
                    i64::try_from(ms).map_err(|_| format!("timestamp {ms} is out of range"))?;
                Value::Number(
                    Number::from_f64(ms as f64 / 1000.0)
                        .ok_or_else(|| format!("timestamp {ms} is not finite"))?,
                )
            }
            Cbor::Float(f) => Value::Number(
                Number::from_f64(f).ok_or_else(|| format!("timestamp {f} is not finite"))?,
            ),
            _ => return Err("tag 1 must hold a number".into()),
        },
        Cbor::Tag(_, inner) => to_json(*inner)?,
        _ => return Err("unsupported CBOR item".into()),
    })
}

/// Encodes a reply (or an error body) as CBOR.
pub fn reply_from_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = ciborium::into_writer(&from_json(v, None), &mut out);
    out
}

fn from_json(v: &Value, member: Option<&str>) -> Cbor {
    match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) if member.is_some_and(|m| TIMESTAMP_MEMBERS.contains(&m)) => {
            let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            Cbor::Tag(1, Box::new(Cbor::Integer(ms.into())))
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(i.into()),
            (None, Some(u)) => Cbor::Integer(u.into()),
            _ => Cbor::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) if member.is_some_and(|m| BLOB_MEMBERS.contains(&m)) => {
            match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                Ok(b) => Cbor::Bytes(b),
                Err(_) => Cbor::Text(s.clone()),
            }
        }
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(a) => Cbor::Array(a.iter().map(|x| from_json(x, member)).collect()),
        Value::Object(m) => Cbor::Map(
            m.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), from_json(v, Some(k))))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
