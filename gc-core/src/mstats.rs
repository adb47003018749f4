//! `MemStats`: a snapshot of a heap's counters (Go's runtime.MemStats, reduced).
//!
//! Allocation is counted Go's way: when a thread's cache takes a span, the span's free
//! slots count as allocated, and the ones left unused are taken back when the cache
//! returns the span (at the latest, at the next collection). So between collections
//! `mallocs`, `heap_objects` and `heap_alloc` may run ahead by the free slots of the spans
//! threads are allocating from; right after a collection they are exact. A tiny block
//! counts as one object however many tiny values it holds.
//!
//! The threads' caches are read while their threads run, without stopping them: a
//! snapshot taken while other threads allocate and free is approximate (never below zero).

use std::time::Duration;

/// Counters of one heap, as of the call to `stats()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemStats {
    /// Bytes of object slots allocated and not yet freed (headers included).
    pub heap_alloc: usize,
    /// Bytes in spans in use (holding at least one object, or cached for allocation).
    pub heap_in_use: usize,
    /// Bytes of address space reserved from the OS.
    pub heap_sys: usize,
    /// Bytes of free pages given back to the OS.
    pub heap_released: usize,
    /// Objects allocated and not yet freed.
    pub heap_objects: u64,
    /// Objects allocated, ever.
    pub mallocs: u64,
    /// Objects freed, ever.
    pub frees: u64,
    /// Heap size (bytes of live slots plus new allocations) that triggers the next
    /// automatic collection; `usize::MAX` when `GOGC` is off.
    pub next_gc: usize,
    /// Completed collections.
    pub num_gc: u64,
    /// Total stop-the-world time.
    pub pause_total: Duration,
    /// Pause of the last collection.
    pub last_pause: Duration,
    /// Finalizers queued by collections, ever (the process's, all heaps: one thread runs
    /// them all).
    pub finalizers_queued: u64,
    /// Finalizers run, ever (including those that panicked).
    pub finalizers_run: u64,
    /// Finalizers that panicked (caught and reported; the thread went on).
    pub finalizers_panicked: u64,
    /// With `HeapConfig::check_finalizers`: finalizable objects found reaching themselves
    /// (each report counts once per collection that finds it).
    pub finalizer_cycles: u64,
    /// Destructors (`Drop` of a freed object's fields) that panicked in the sweep: each is
    /// caught and reported on stderr, and the object is freed anyway.
    pub destructor_panics: u64,
}
