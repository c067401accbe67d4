//! Where an application reads and writes: its input (a Kinesis stream's log
//! or a delivery stream's log, read in shard lineage order) and its outputs
//! (Kinesis streams and delivery streams it alone writes to), looked up by
//! name whenever used, so a stream re-created or updated is followed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::kinesis::position::hash_key;
use crate::log::{AppendRecord, LogError, StreamLog};
use crate::streams::Registry;

/// An input or output stream, by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StreamRef {
    Kinesis(String),
    Delivery(String),
}

impl StreamRef {
    /// `kinesis:NAME` or `firehose:NAME`: a checkpoint's name for it.
    pub fn key(&self) -> String {
        match self {
            StreamRef::Kinesis(n) => format!("kinesis:{n}"),
            StreamRef::Delivery(n) => format!("firehose:{n}"),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            StreamRef::Kinesis(n) | StreamRef::Delivery(n) => n,
        }
    }
}

/// One input shard: its parents (read first) and, once closed, its end.
#[derive(Clone, Debug)]
pub struct InputShard {
    pub index: u32,
    pub parents: Vec<u32>,
    pub end: Option<u64>,
}

/// The input's log and shards now.
pub struct InputView {
    pub log: Arc<StreamLog>,
    pub shards: Vec<InputShard>,
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{0} does not exist")]
    Missing(String),
    #[error("{stream}: {source}")]
    Log { stream: String, source: LogError },
}

/// The input's log and shards, or why not.
pub fn input_view(registry: &Registry, input: &StreamRef) -> Result<InputView, IoError> {
    match input {
        StreamRef::Kinesis(n) => {
            let s = registry
                .kinesis
                .get(n)
                .ok_or_else(|| IoError::Missing(format!("Kinesis stream {n}")))?;
            let layout = s.layout();
            let shards = layout
                .map
                .all()
                .iter()
                .map(|i| InputShard {
                    index: i.index,
                    parents: i.parents().collect(),
                    end: i.closed.as_ref().map(|c| c.end_offset),
                })
                .collect();
            Ok(InputView {
                log: s.log.clone(),
                shards,
            })
        }
        StreamRef::Delivery(n) => {
            let e = registry
                .get(n)
                .ok_or_else(|| IoError::Missing(format!("delivery stream {n}")))?;
            let shards = (0..e.log.shard_count())
                .map(|index| InputShard {
                    index,
                    parents: Vec::new(),
                    end: None,
                })
                .collect();
            Ok(InputView {
                log: e.log.clone(),
                shards,
            })
        }
    }
}

/// An output stream found for one publication. The publisher holds a
/// Kinesis stream's gate (shared) from routing to durable, so no reshard
/// moves its shards meanwhile.
pub struct OutputHold {
    pub log: Arc<StreamLog>,
    pub kinesis: Option<Arc<crate::kinesis::KinesisStream>>,
}

impl OutputHold {
    /// The shard a record with partition key `key` goes to.
    pub fn route(&self, key: &str) -> u32 {
        let h = hash_key(key.as_bytes());
        match &self.kinesis {
            Some(k) => k.layout().router.route(h),
            None => (h % u128::from(self.log.shard_count().max(1))) as u32,
        }
    }

    /// One past the last durable offset of every shard.
    pub fn ends(&self) -> BTreeMap<u32, u64> {
        self.log
            .shards()
            .iter()
            .map(|s| (s.shard(), s.durable_end()))
            .collect()
    }

    /// Appends `records` to `shard`, durable when Ok.
    pub async fn append(
        &self,
        shard: u32,
        records: Vec<(String, Vec<u8>)>,
        arrival_ms: i64,
    ) -> Result<(), LogError> {
        let Some(log) = self.log.shard(shard) else {
            return Err(LogError::Closed { shard });
        };
        let records = records
            .into_iter()
            .map(|(k, d)| AppendRecord {
                key: Bytes::from(k.into_bytes()),
                data: Bytes::from(d),
                arrival_ms,
            })
            .collect();
        log.append(records).await.map(|_| ())
    }
}

/// Holds `out` for a publication.
pub fn hold(registry: &Registry, out: &StreamRef) -> Result<OutputHold, IoError> {
    match out {
        StreamRef::Kinesis(n) => {
            let s = registry
                .kinesis
                .get(n)
                .ok_or_else(|| IoError::Missing(format!("Kinesis stream {n}")))?;
            Ok(OutputHold {
                log: s.log.clone(),
                kinesis: Some(s),
            })
        }
        StreamRef::Delivery(n) => {
            let e = registry
                .get(n)
                .ok_or_else(|| IoError::Missing(format!("delivery stream {n}")))?;
            Ok(OutputHold {
                log: e.log.clone(),
                kinesis: None,
            })
        }
    }
}
