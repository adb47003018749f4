//! The central lists (Go's mcentral): for each span class, the spans with free slots that
//! thread caches refill from. A heap (`mheap::MHeap`) owns one `MCentral`; it makes new
//! spans when a list is empty (`MHeap::take_span`).
//!
//! Invariants: a span is in at most one place at a time: one cache, or its class's central
//! list, or neither (full); every in-use span is in its heap's `all_spans`. The collector
//! rebuilds the lists after each sweep (world stopped).
//!
//! Locking: one mutex per class. A cache takes it to pop or push one span; the collector
//! takes each in turn, with the world stopped. No other lock is taken while one is held.

use std::sync::Mutex;

use crate::mspan::{SpanClass, SpanPtr};
use crate::sizeclasses::TABLE;

/// A heap's central lists, one per span class (size class, scan and noscan).
pub(crate) struct MCentral {
    lists: Box<[Mutex<Vec<SpanPtr>>]>,
}

fn lock(m: &Mutex<Vec<SpanPtr>>) -> std::sync::MutexGuard<'_, Vec<SpanPtr>> {
    // Every update of a list completes before its lock is released: poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MCentral {
    pub(crate) fn new() -> MCentral {
        MCentral {
            lists: (0..2 * TABLE.len).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// A span of class `spc` with free slots, if the list has one.
    pub(crate) fn pop(&self, spc: SpanClass) -> Option<SpanPtr> {
        lock(&self.lists[spc.index()]).pop()
    }

    /// Lists `s`, which has free slots.
    pub(crate) fn push(&self, s: SpanPtr) {
        lock(&self.lists[s.get().spc.index()]).push(s);
    }

    /// Empties every list, for the sweep to fill again. Collector only.
    pub(crate) fn reset(&self) {
        for c in self.lists.iter() {
            lock(c).clear();
        }
    }
}
