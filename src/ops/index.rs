//! Keeping the run index (see [`crate::store::index`]) up to date: writers
//! [`touch`] the namespaces they change, and the store lock rewrites their
//! index files when it is released ([`flush`]), still held, so the index
//! moves in the same locked step as the runs.
//!
//! The index is a cache that readers validate: a failure to write it is
//! never the command's failure, it only costs the next reader some reads.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::fsx;
use crate::store::index;
use crate::store::refs::{Namespace, Stage};
use crate::store::Store;

type Key = (PathBuf, Stage, Namespace);

/// The namespaces changed under the lock of this process, by store folder.
static TOUCHED: Mutex<BTreeSet<Key>> = Mutex::new(BTreeSet::new());
/// Stores whose every namespace must be refreshed (a repair).
static ALL: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Mark one namespace as changed; its index file is rewritten when the
/// lock is released.
pub fn touch(store: &Store, stage: Stage, ns: &Namespace) {
    TOUCHED.lock().unwrap_or_else(|e| e.into_inner()).insert((
        store.dir().to_path_buf(),
        stage,
        ns.clone(),
    ));
}

/// Mark every namespace of the store as changed.
pub fn touch_all(store: &Store) {
    ALL.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(store.dir().to_path_buf());
}

/// While above zero, releasing the lock rewrites no index file: a batch of
/// writes (`register --all`) refreshes each namespace once, at its end,
/// rather than once per run (which costs the square of the run count).
static DEFERRED: AtomicUsize = AtomicUsize::new(0);

/// Defer index rewrites until the returned guard is dropped; it then takes
/// the store lock once and rewrites what the batch touched.
pub fn defer(store: &Store) -> Deferred {
    DEFERRED.fetch_add(1, Ordering::SeqCst);
    Deferred {
        store: store.clone(),
    }
}

pub struct Deferred {
    store: Store,
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if DEFERRED.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let pending = TOUCHED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(dir, _, _)| dir == self.store.dir());
        if pending {
            // Taking the lock is enough: releasing it flushes. A failure only
            // leaves the index stale, which readers detect.
            let _ = super::lock(&self.store);
        }
    }
}

/// Rewrite the index files of what was touched in `store`; the caller holds
/// the store lock.
pub fn flush(store: &Store) {
    if DEFERRED.load(Ordering::SeqCst) > 0 {
        return;
    }
    let all = ALL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(store.dir());
    let mut wanted: Vec<(Stage, Namespace)> = {
        let mut touched = TOUCHED.lock().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<Key> = touched
            .iter()
            .filter(|(dir, _, _)| dir == store.dir())
            .cloned()
            .collect();
        mine.into_iter()
            .filter_map(|k| touched.take(&k))
            .map(|(_, stage, ns)| (stage, ns))
            .collect()
    };
    if all {
        wanted.extend(
            store
                .locations(store.stages(), &Namespace::root())
                .into_iter()
                .map(|l| (l.stage, l.namespace)),
        );
        wanted.sort();
        wanted.dedup();
    }
    for (stage, ns) in wanted {
        rewrite(store, stage, &ns);
    }
}

/// Bring one index file up to date. Errors are dropped on purpose: see the
/// module comment. A fault injected here still ends the process (`kill`).
pub fn rewrite(store: &Store, stage: Stage, ns: &Namespace) {
    if let Some(bytes) = index::refreshed(store, stage, ns) {
        let _ = fsx::write_index(store.dir(), &index::file_name(stage, ns), &bytes);
    }
}

/// Rebuild every index file of the store from the runs; the caller holds
/// the store lock. Used by tests and benchmarks to start from a warm index.
pub fn rebuild(store: &Store) {
    let mut wanted: Vec<(Stage, Namespace)> = store
        .locations(store.stages(), &Namespace::root())
        .into_iter()
        .map(|l| (l.stage, l.namespace))
        .collect();
    wanted.dedup();
    wanted
        .par_iter()
        .for_each(|(stage, ns)| rewrite(store, *stage, ns));
}
