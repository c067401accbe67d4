//! The tables a destination writes, at most `tables_open_max` at once: a
//! routed stream opens a table when a batch for it comes, and opening one
//! more closes the least recently used. A closed table's committer commits
//! what waits and ends once no delivery holds it any longer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use iceberg::TableIdent;
use tokio::sync::OnceCell;

/// A table's place: its state once opened.
pub struct Slot<S> {
    state: OnceCell<Arc<S>>,
    used: AtomicU64,
}

impl<S> std::ops::Deref for Slot<S> {
    type Target = OnceCell<Arc<S>>;

    fn deref(&self) -> &Self::Target {
        &self.state
    }
}

/// The open tables, by identifier.
pub struct Tables<S> {
    open: Mutex<HashMap<TableIdent, Arc<Slot<S>>>>,
    clock: AtomicU64,
    max: usize,
}

impl<S> Tables<S> {
    pub fn new(max: usize) -> Self {
        Tables {
            open: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            max: max.max(1),
        }
    }

    /// The slot of `ident`, made (and the least recently used one closed,
    /// if the bound is reached) if it has none.
    pub fn slot(&self, ident: &TableIdent) -> Arc<Slot<S>> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = open.get(ident) {
            s.used.store(now, Ordering::Relaxed);
            return s.clone();
        }
        while open.len() >= self.max {
            let oldest = open
                .iter()
                .min_by_key(|(_, s)| s.used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    tracing::debug!(table = %k, "closing the least recently used table");
                    open.remove(&k);
                }
                None => break,
            }
        }
        let s = Arc::new(Slot {
            state: OnceCell::new(),
            used: AtomicU64::new(now),
        });
        open.insert(ident.clone(), s.clone());
        s
    }

    /// Runs `f` on every opened table.
    pub fn each(&self, mut f: impl FnMut(&S)) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for s in open.values() {
            if let Some(st) = s.state.get() {
                f(st);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::NamespaceIdent;

    fn id(t: &str) -> TableIdent {
        TableIdent::new(NamespaceIdent::new("ns".into()), t.into())
    }

    #[test]
    fn the_least_recently_used_table_is_closed_past_the_bound() {
        let tables: Tables<u32> = Tables::new(2);
        let a = tables.slot(&id("a"));
        let _ = a.set(Arc::new(1));
        tables.slot(&id("b"));
        tables.slot(&id("a"));
        tables.slot(&id("c"));
        assert_eq!(tables.len(), 2);
        // b was the least recently used: gone; a kept its state.
        assert!(tables.slot(&id("a")).get().is_some());
        let mut seen = Vec::new();
        tables.each(|v| seen.push(*v));
        assert_eq!(seen, vec![1]);
    }
}
