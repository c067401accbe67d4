//! Account- and stream-wide settings: `DescribeLimits`,
//! `DescribeAccountSettings`/`UpdateAccountSettings` (a billing commitment:
//! kept in `data_dir/kinesis-account.json` and answered, changing nothing
//! else), `EnableEnhancedMonitoring`/`DisableEnhancedMonitoring` (shard-level
//! metrics in Hydrant's `/metrics`), `UpdateMaxRecordSize` (records up to
//! 10 MiB), `UpdateStreamWarmThroughput` (kept and reported: on-demand
//! streams here split under load instead of being warmed) and
//! `UpdateStreamRecordDistributionStrategy` (records are always routed by
//! partition key: `USER_PARTITION_KEY` is accepted, `AUTO` refused).

use serde_json::{Value, json};

use super::{Req, from_kinesis, internal, missing, violation};
use crate::aws::kinesis_stream_arn;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::settings::{RECORD_KIB_DEFAULT, RECORD_KIB_MAX, SHARD_METRICS};
use crate::log::files::write_atomic;
use crate::streams::Origin;

pub(super) fn describe_limits(state: &AppState) -> Result<Value, ApiError> {
    let k = &state.registry.kinesis;
    let streams = k.all();
    let opts = k.options();
    let channels = state
        .registry
        .all()
        .iter()
        .filter(|e| e.origin == Origin::Channel)
        .count();
    Ok(json!({
        "ShardLimit": opts.shards_max,
        "OpenShardCount": streams.iter().map(|s| s.open_shards()).sum::<u32>(),
        "OnDemandStreamCount": streams.iter().filter(|s| s.on_demand()).count(),
        // An on-demand stream starts with 4 shards, out of the same bound.
        "OnDemandStreamCountLimit": opts.shards_max / 4,
        "ChannelCount": channels,
        "ChannelCountLimit": state.registry.config.limits.api_streams_max,
    }))
}

fn account_path(state: &AppState) -> std::path::PathBuf {
    state.registry.config.data_dir.join("kinesis-account.json")
}

fn commitment(state: &AppState) -> Value {
    std::fs::read(account_path(state))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("MinimumThroughputBillingCommitment").cloned())
        .unwrap_or_else(|| json!({ "Status": "DISABLED" }))
}

pub(super) fn describe_account(state: &AppState) -> Result<Value, ApiError> {
    Ok(json!({ "MinimumThroughputBillingCommitment": commitment(state) }))
}

pub(super) fn update_account(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let status = req
        .0
        .get("MinimumThroughputBillingCommitment")
        .and_then(|c| c.get("Status"))
        .and_then(Value::as_str)
        .ok_or_else(|| missing("minimumThroughputBillingCommitment.status"))?;
    let now = super::seconds(super::now_ms());
    let next = match status {
        "ENABLED" => json!({ "Status": "ENABLED", "StartedAt": now }),
        "DISABLED" => {
            let mut c = commitment(state);
            c["Status"] = json!("DISABLED");
            c["EndedAt"] = json!(now);
            c
        }
        other => {
            return Err(violation(
                "minimumThroughputBillingCommitment.status",
                other,
                "Member must satisfy enum value set: [ENABLED, DISABLED]",
            ));
        }
    };
    let doc = json!({ "MinimumThroughputBillingCommitment": next });
    write_atomic(&account_path(state), doc.to_string().as_bytes())
        .map_err(|e| internal(e.to_string()))?;
    Ok(doc)
}

/// `EnableEnhancedMonitoring` (`on`) and `DisableEnhancedMonitoring`.
pub(super) fn monitoring(state: &AppState, req: Req<'_>, on: bool) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let given: Vec<&str> = match req.0.get("ShardLevelMetrics") {
        Some(Value::Array(a)) if (1..=7).contains(&a.len()) => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(_) => {
            return Err(violation(
                "shardLevelMetrics",
                "[...]",
                "Member must have length between 1 and 7",
            ));
        }
        None => return Err(missing("shardLevelMetrics")),
    };
    let mut names: Vec<String> = Vec::new();
    for m in given {
        match m {
            "ALL" => names.extend(SHARD_METRICS.iter().map(|s| s.to_string())),
            m if SHARD_METRICS.contains(&m) => names.push(m.to_string()),
            other => {
                return Err(violation(
                    "shardLevelMetrics.member",
                    other,
                    "Member must satisfy enum value set: [IncomingBytes, IncomingRecords, OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, IteratorAgeMilliseconds, ALL]",
                ));
            }
        }
    }
    let current = s.spec().settings.shard_metrics;
    let mut desired: Vec<String> = if on {
        current.iter().cloned().chain(names).collect()
    } else {
        current
            .iter()
            .filter(|c| !names.contains(c))
            .cloned()
            .collect()
    };
    desired.sort();
    desired.dedup();
    let next = desired.clone();
    s.update(|spec| {
        spec.settings.shard_metrics = next;
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({
        "StreamName": s.name,
        "StreamARN": kinesis_stream_arn(&s.name),
        "CurrentShardLevelMetrics": current,
        "DesiredShardLevelMetrics": desired,
    }))
}

pub(super) fn max_record_size(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let kib = req.int_in(
        "MaxRecordSizeInKiB",
        "maxRecordSizeInKiB",
        i64::from(RECORD_KIB_DEFAULT),
        i64::from(RECORD_KIB_MAX),
        -1,
    )?;
    if kib < 0 {
        return Err(missing("maxRecordSizeInKiB"));
    }
    s.update(|spec| {
        spec.settings.max_record_kib = Some(kib as u32);
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({}))
}

pub(super) fn warm_throughput(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let mibps = req
        .int("WarmThroughputMiBps")?
        .ok_or_else(|| missing("warmThroughputMiBps"))?;
    if mibps < 0 {
        return Err(violation(
            "warmThroughputMiBps",
            mibps,
            "Member must have value greater than or equal to 0",
        ));
    }
    if !s.on_demand() {
        return Err(ApiError::invalid_argument(format!(
            "Stream {} is PROVISIONED; warm throughput applies to ON_DEMAND streams",
            s.name
        )));
    }
    s.update(|spec| {
        spec.settings.warm_throughput_mibps = Some(mibps as u64);
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({
        "StreamName": s.name,
        "StreamARN": kinesis_stream_arn(&s.name),
        "WarmThroughput": { "TargetMiBps": mibps, "CurrentMiBps": mibps },
    }))
}

pub(super) fn distribution(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let _ = req.stream(state)?;
    match req.str("RecordDistributionStrategy")? {
        Some("USER_PARTITION_KEY") => Ok(json!({})),
        Some("AUTO") => Err(ApiError::invalid_argument(
            "RecordDistributionStrategy AUTO is not supported by Hydrant: records are routed by the MD5 of their partition key (USER_PARTITION_KEY)",
        )),
        Some(other) => Err(violation(
            "recordDistributionStrategy",
            other,
            "Member must satisfy enum value set: [AUTO, USER_PARTITION_KEY]",
        )),
        None => Err(missing("recordDistributionStrategy")),
    }
}
