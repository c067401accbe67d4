//! The store stage: PUTs of 8 MiB objects to Garage, 4 at a time (the
//! daemon's `uploads_in_flight_max`), measured as a whole.

use std::time::Instant;

use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::{Stage, measured};
use crate::garage::Garage;

/// `PUT to Garage`: 32 objects into a bucket of its own.
pub async fn stage(garage: &Garage) -> anyhow::Result<Stage> {
    garage.create_bucket("ceiling")?;
    let store = garage.store("ceiling")?;
    let body = bytes::Bytes::from(vec![7u8; 8 << 20]);
    let objects = 32;
    let t = Instant::now();
    let mut puts = futures::stream::iter(0..objects)
        .map(|i| {
            let (store, body) = (store.clone(), body.clone());
            async move {
                store
                    .put(
                        &object_store::path::Path::from(format!("o{i}")),
                        object_store::PutPayload::from(body),
                    )
                    .await
            }
        })
        .buffer_unordered(4);
    while let Some(r) = puts.next().await {
        r?;
    }
    Ok(measured(
        "PUT to Garage",
        objects * body.len(),
        objects,
        t.elapsed(),
        false,
    ))
}
