//! Files in a table's directory that no snapshot references: data files
//! written for a commit that never happened (a crash between writing and
//! committing, a commit that failed), manifests and manifest lists of
//! failed commits, and what expired snapshots alone referenced. Listed by
//! `hydrant iceberg clean-orphans`, and removed unless it only lists.
//!
//! Only files older than a bound are orphans: a running daemon's files
//! wait up to a commit interval (and a failed commit's retries) for their
//! commit.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use iceberg::spec::ManifestList;
use iceberg::table::Table;

use super::storage::ObjectStorage;

/// A file no snapshot references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub location: String,
    pub bytes: u64,
}

/// Every location the table's metadata references: the metadata files
/// in its log, each snapshot's manifest list, manifests and data files.
pub async fn referenced(table: &Table) -> Result<HashSet<String>, String> {
    let meta = table.metadata();
    let io = table.file_io();
    let mut out = HashSet::new();
    if let Some(l) = table.metadata_location() {
        out.insert(l.to_string());
    }
    for l in meta.metadata_log() {
        out.insert(l.metadata_file.clone());
    }
    for s in meta.snapshots() {
        out.insert(s.manifest_list().to_string());
        let list = io
            .new_input(s.manifest_list())
            .map_err(|e| e.to_string())?
            .read()
            .await
            .and_then(|bs| ManifestList::parse_with_version(&bs, meta.format_version()))
            .map_err(|e| format!("cannot read manifest list {}: {e}", s.manifest_list()))?;
        for mf in list.entries() {
            out.insert(mf.manifest_path.clone());
            let manifest = mf
                .load_manifest(io)
                .await
                .map_err(|e| format!("cannot read manifest {}: {e}", mf.manifest_path))?;
            for e in manifest.entries() {
                out.insert(e.file_path().to_string());
            }
        }
    }
    Ok(out)
}

/// Normalises `file:/x`, `file:///x` and `/x` to one form for comparison.
fn normal(location: &str) -> String {
    match location.strip_prefix("file:") {
        Some(rest) => format!("/{}", rest.trim_start_matches('/')),
        None => location.to_string(),
    }
}

/// The files under the table's location that nothing references and that
/// were last written more than `older_than` ago.
pub async fn find(
    table: &Table,
    storage: &ObjectStorage,
    older_than: Duration,
) -> Result<Vec<Orphan>, String> {
    let referenced: HashSet<String> = referenced(table).await?.iter().map(|l| normal(l)).collect();
    let client = storage.client().map_err(|e| e.to_string())?;
    let root = storage
        .key(table.metadata().location())
        .map_err(|e| e.to_string())?;
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    let mut list = client.list(Some(&root));
    while let Some(m) = list.next().await {
        let m = m.map_err(|e| format!("cannot list the table's files: {e}"))?;
        let location = storage.location(&m.location);
        if referenced.contains(&normal(&location)) || m.last_modified > cutoff {
            continue;
        }
        out.push(Orphan {
            location,
            bytes: m.size,
        });
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

/// Deletes `orphans`; the number deleted.
pub async fn remove(storage: &ObjectStorage, orphans: &[Orphan]) -> Result<usize, String> {
    use iceberg::io::Storage;
    for o in orphans {
        storage
            .delete(&o.location)
            .await
            .map_err(|e| format!("cannot delete {}: {e}", o.location))?;
    }
    Ok(orphans.len())
}

/// The orphans of table `namespace.table` of `catalog` (it must exist),
/// deleted unless `dry_run`.
pub async fn clean(
    catalog: &crate::config::IcebergCatalog,
    (namespace, table): (&str, &str),
    older_than: Duration,
    dry_run: bool,
) -> Result<Vec<Orphan>, String> {
    let cat = super::catalog::open(catalog).await.map_err(|e| e.message)?;
    let ident = iceberg::TableIdent::new(
        iceberg::NamespaceIdent::new(namespace.to_string()),
        table.to_string(),
    );
    let table = cat
        .catalog
        .load_table(&ident)
        .await
        .map_err(|e| format!("cannot load table {ident}: {e}"))?;
    let orphans = find(&table, &cat.storage, older_than).await?;
    if !dry_run {
        remove(&cat.storage, &orphans).await?;
    }
    Ok(orphans)
}
