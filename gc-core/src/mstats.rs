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
    /// Bytes of object slots allocated, ever (Go's `TotalAlloc`; counted as `mallocs` is).
    pub total_alloc: u64,
    /// Objects freed, ever.
    pub frees: u64,
    /// Heap size (bytes of live slots plus new allocations) that triggers the next
    /// automatic collection; `usize::MAX` when `GOGC` is off.
    pub next_gc: usize,
    /// Collections whose marking has ended (Go counts `NumGC` at mark termination too).
    pub num_gc: u64,
    /// Total stop-the-world time, over every stop (`num_pauses`).
    pub pause_total: Duration,
    /// The last stop of the world (a whole collection, or one slice of one).
    pub last_pause: Duration,
    /// Finalizers queued by collections, ever (the process's, all heaps: one thread runs
    /// them all).
    pub finalizers_queued: u64,
    /// Finalizers run, ever (including those that panicked).
    pub finalizers_run: u64,
    /// Finalizers and cleanups that panicked (caught and reported; the thread went on).
    pub finalizers_panicked: u64,
    /// Cleanups queued by collections, ever (the process's, all heaps; Go's
    /// `/gc/cleanups/queued`).
    pub cleanups_queued: u64,
    /// Cleanups run, ever (including those that panicked).
    pub cleanups_run: u64,
    /// With `HeapConfig::check_finalizers`: finalizable objects found reaching themselves
    /// (each report counts once per collection that finds it).
    pub finalizer_cycles: u64,
    /// Destructors (`Drop` of a freed object's fields) that panicked in the sweep: each is
    /// caught and reported on stderr, and the object is freed anyway.
    pub destructor_panics: u64,
    /// The longest stop-the-world pause of this heap's collections.
    pub pause_max: Duration,
    /// Stops of the world for this heap's collections (a cycle run in slices stops it
    /// once per slice; `collect()` once). `pause_total` is their sum.
    pub num_pauses: u64,
    /// The last `PAUSE_RING` (256) pauses, oldest first, each as (when it ended, measured
    /// from the heap's creation; how long it was): Go's `PauseEnd` and `PauseNs`. A pause
    /// runs from the moment the collector raised the stop (threads entering a section
    /// from then on wait) until the world resumes.
    pub recent_pauses: Vec<(Duration, Duration)>,
    /// When this snapshot was taken, measured from the heap's creation (the clock of
    /// `recent_pauses`).
    pub uptime: Duration,
}

/// How many recent pauses `MemStats::recent_pauses` keeps (Go's `PauseNs` ring).
pub(crate) const PAUSE_RING: usize = 256;

/// A heap's statistics kept under its `counters` lock.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) num_gc: u64,
    pub(crate) pause_total: Duration,
    pub(crate) last_pause: Duration,
    pub(crate) pause_max: Duration,
    pub(crate) num_pauses: u64,
    /// The last `PAUSE_RING` pauses: (end since the heap's start, length).
    pub(crate) pauses: std::collections::VecDeque<(Duration, Duration)>,
    /// Bytes of live slots after the last sweep.
    pub(crate) live_bytes: usize,
    /// What no live cache counts: retired caches' totals, large objects' bytes, and the
    /// sweeps' frees (`totals` adds the live caches and the large objects' count).
    pub(crate) base: Totals,
    /// Bytes allocated and freed in total (`totals`) at the last collection.
    pub(crate) bytes_at_gc: u64,
    pub(crate) free_bytes_at_gc: u64,
    /// Finalizable objects found reaching themselves (with `check_finalizers`).
    pub(crate) finalizer_cycles: u64,
    /// What `totals` said when the heap was last reused (`Heap::new`): its statistics
    /// start from there.
    pub(crate) zero: Totals,
}

/// Objects and bytes allocated and freed: a cache's, or a heap's (`mcache::totals`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) mallocs: u64,
    pub(crate) bytes: u64,
    pub(crate) frees: u64,
    pub(crate) free_bytes: u64,
}

impl core::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.mallocs += o.mallocs;
        self.bytes += o.bytes;
        self.frees += o.frees;
        self.free_bytes += o.free_bytes;
    }
}
