//! A heap's state (Go's `mheap`): its pages, central lists and spans, its pacing state and
//! counters, and the registry of every heap. The operations that need the collector
//! (collecting, retiring and reusing a heap) are the API layer's (`heap`); thread caches
//! keep their own registry (`mcache`).
//!
//! `MHeap`'s methods live in the layer that owns each job, as Go's do: its state and spans
//! here, the allocation paths in `malloc`, collecting and retiring in `heap`.
//!
//! Lifetime: an `MHeap` is never freed: thread caches, handles and the arena map refer to
//! it by `&'static`, and none of them can be recalled from other threads. A `Heap` (the
//! API) counts the references to it (`handles`); when the last goes, the heap is retired
//! and may be reused (`heap`'s module docs).
//!
//! Lock order: a heap's `counters`, then the process's cache registry (`mcache`), then
//! the heap's `all_spans`, then its `pages`; `config` is a leaf (taken under `pages` by
//! `new_span`, and alone elsewhere). A mutator takes a central list (`MCentral`) alone,
//! except when it sweeps (`MHeap::sweep_for`): the sweep, the collector's or a
//! mutator's, pushes onto central lists while it holds `all_spans` and `pages`, and no
//! thread holding a central list takes another lock. `HEAPS` is taken
//! alone. Every lock here guards lists whose every update is completed before unlocking:
//! poisoning is ignored (`lock`).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::mcentral::MCentral;
use crate::mpagealloc::PageHeap;
use crate::mspan::{Span, SpanClass, SpanPtr};
use crate::mstats::Counters;
use crate::sizeclasses::{PAGE_SIZE, TABLE};
use crate::slot::HEADER;

/// How a heap paces its collections and reports them.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct HeapConfig {
    /// Collect when the heap has grown by this percentage over the live heap of the last
    /// collection (Go's GOGC); `None` turns automatic collection off. Default: the
    /// `FING_GOGC` environment variable (a number or `off`), else 100.
    pub gogc: Option<u32>,
    /// The heap size below which no automatic collection starts. Default 4 MiB.
    pub min_heap: usize,
    /// Print one line per collection to stderr. Default: `FING_TRACE` contains `gc`.
    pub trace: bool,
    /// Report finalizable objects that reach themselves (a cycle through them: their
    /// finalizer never runs and they are never freed), on stderr and in
    /// `MemStats::finalizer_cycles` (Go's `GODEBUG=checkfinalizers`). Costs a search per
    /// such object per collection. Default: `FING_DEBUG` contains `checkfinalizers`.
    pub check_finalizers: bool,
    /// A hard limit on the heap's size: bytes of pages in spans (`MemStats::heap_in_use`).
    /// An allocation that needs more first collects (waiting for the world, unless this
    /// thread holds a `GcCell` write guard), then fails: `Heap::try_alloc` returns an
    /// [`AllocError`](crate::AllocError), `Heap::alloc` panics. Default: none.
    pub max_heap: Option<usize>,
    /// Run this heap's finalizers and cleanups on the program's own thread, at its safe
    /// points, instead of on the finalizer thread: a collection queues them on the heap,
    /// and [`Heap::run_finalizers`](crate::Heap::run_finalizers) runs them on the caller's
    /// thread (as Lua runs `__gc` and a JavaScript host runs a `FinalizationRegistry`'s
    /// callbacks). Everything else about them is unchanged: the checks of `set_finalizer`,
    /// resurrection, Go's order, panics contained. `wait_finalizers` does not wait for
    /// them; when the heap's last `Heap` goes, what is pending moves to the finalizer
    /// thread. Default: false.
    pub finalizers_at_safe_points: bool,
    /// Run the pacer's cycles in slices of at most this long, with the world running
    /// between them (on fing's collector thread, and on allocating threads that outrun
    /// it), instead of in one stop: pauses stay near this bound whatever the heap's size.
    /// `None`: every cycle in one stop. `collect()` always runs a whole cycle in one
    /// stop. Default: the `FING_GCSLICE` environment variable (microseconds, or `off`),
    /// else off.
    pub gc_slice: Option<Duration>,
}

impl Default for HeapConfig {
    fn default() -> HeapConfig {
        HeapConfig {
            gogc: parse_gogc(std::env::var("FING_GOGC").ok().as_deref()),
            min_heap: 4 << 20,
            trace: env_lists("FING_TRACE", "gc"),
            check_finalizers: env_lists("FING_DEBUG", "checkfinalizers"),
            max_heap: None,
            finalizers_at_safe_points: false,
            gc_slice: parse_slice(std::env::var("FING_GCSLICE").ok().as_deref()),
        }
    }
}

/// Does the comma-separated list in environment variable `var` contain `word`?
pub(crate) fn env_lists(var: &str, word: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.split(',').any(|x| x.trim() == word))
}

/// The goal of a new heap's first collection.
pub(crate) fn first_goal(config: &HeapConfig) -> usize {
    match config.gogc {
        Some(_) => config.min_heap,
        None => usize::MAX,
    }
}

/// `FING_GOGC`: a percentage, or `off`; unset or unreadable means 100 (Go's default).
fn parse_gogc(v: Option<&str>) -> Option<u32> {
    match v.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => Some(v.parse().unwrap_or(100)),
        None => Some(100),
    }
}

/// `FING_GCSLICE`: microseconds, or `off`; unset or unreadable means off.
fn parse_slice(v: Option<&str>) -> Option<Duration> {
    match v.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => v.parse().ok().map(Duration::from_micros),
        None => None,
    }
}

/// A heap's state (Go's `mheap`): never freed (see the module docs).
pub(crate) struct MHeap {
    /// The heap's identity in the arena map (arenas and spans carry it), from 1.
    pub(crate) id: u64,
    /// Replaced only when a retired heap with no object is reused (`Heap::new`).
    pub(crate) config: Mutex<HeapConfig>,
    /// `Heap` values referring to this heap; the last one's drop retires it.
    pub(crate) handles: AtomicUsize,
    /// Destructors that panicked (mdrop), ever.
    pub(crate) destructor_panics: AtomicU64,
    /// Free page runs and the arenas they lie in. Lock order: last (`stats()` takes it
    /// holding `counters`); `new_span` releases it before it takes `all_spans`.
    pub(crate) pages: Mutex<PageHeap>,
    /// Spans with free slots, per class (locked per list; see the lock order).
    pub(crate) central: MCentral,
    /// Every in-use span, swept or (during a cycle's sweep) not yet. Lock order: after
    /// `counters`, before `pages`.
    pub(crate) all_spans: Mutex<Spans>,
    /// A cycle's sweep is under way (`Spans::unswept` may be non-empty): a thread that
    /// finds its class's central list empty sweeps before it takes new pages. Set and
    /// cleared with the world stopped.
    pub(crate) sweeping: AtomicBool,
    /// Bytes in spans handed to caches since the last collection, plus live bytes then
    /// (the pacer's measure of the heap).
    pub(crate) heap_live: AtomicUsize,
    /// The pacer's goal: a cycle should be over by the time `heap_live` reaches it.
    pub(crate) next_gc: AtomicUsize,
    /// Where a cycle is wanted: the goal for cycles run in one stop; for cycles run in
    /// slices, earlier, so that the slices can finish before the goal (`set_goal`).
    pub(crate) trigger: AtomicUsize,
    /// `heap_live` passed `next_gc`: the next allocation tries to collect.
    pub(crate) gc_wanted: AtomicBool,
    /// Statistics kept under a lock. Lock order: first of a heap's locks (`stats()` holds
    /// it while it reads the cache registry, `all_spans` and `pages`).
    pub(crate) counters: Mutex<Counters>,
    /// Large objects allocated, ever.
    pub(crate) large_mallocs: AtomicU64,
    /// Span requests refused by `HeapConfig::max_heap`, ever (tells an `AllocError` why).
    pub(crate) limit_refusals: AtomicU64,
    /// When the heap was made (`MemStats`' pause accounting).
    pub(crate) started: Instant,
    /// Cycles begun, abandoned ones too (the source of a cycle's cell epoch: `mgcwork`).
    pub(crate) cycles_begun: AtomicU64,
    /// The pacer's assist state for a cycle run in slices (Go's assist ratio, `heap`):
    /// the collector's work on this heap's cycle in progress so far, the work the cycle is
    /// expected to take, and what a cycle took per MB of heap at its start (learned from
    /// the last cycle; 0 until one ended). Nanoseconds of work in stops.
    pub(crate) cycle_work_ns: AtomicU64,
    pub(crate) cycle_expected_ns: AtomicU64,
    pub(crate) work_ns_per_mb: AtomicU64,
}

// SAFETY: the spans behind `SpanPtr`s are shared by design (mspan: atomics with one writer
// at a time); everything else is behind mutexes or atomics.
unsafe impl Sync for MHeap {}
// SAFETY: as above.
unsafe impl Send for MHeap {}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // These mutexes guard lists whose every update is completed before unlocking; a panic
    // elsewhere cannot leave them half-written, so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static NEXT_HEAP_ID: AtomicU64 = AtomicU64::new(1);

/// The id of the heap whose cycle is in progress, or 0: its allocation is black
/// (`mgcwork`, which sets it with the world stopped).
static CYCLING: AtomicU64 = AtomicU64::new(0);

/// The heap whose cycle is in progress (its id), or 0. A relaxed load: mutators read it
/// inside sections, and it changes only with the world stopped.
#[inline(always)]
pub(crate) fn cycling() -> u64 {
    CYCLING.load(Ordering::Relaxed)
}

/// Sets `cycling` (`mgcwork::begin` and `end`, world stopped).
pub(crate) fn set_cycling(id: u64) {
    CYCLING.store(id, Ordering::Relaxed);
}

/// Every heap made so far (an `MHeap` lives for the rest of the process). Taken alone.
static HEAPS: Mutex<Vec<&'static MHeap>> = Mutex::new(Vec::new());

/// The heap whose arena holds `obj`: where `Gc::map` allocates a far handle's cell.
pub(crate) fn heap_of(obj: NonNull<u8>) -> Option<&'static MHeap> {
    let id = crate::mpagealloc::arena_of(obj.as_ptr() as usize)?.heap_id;
    let heaps = lock(&HEAPS);
    heaps.iter().find(|h| h.id == id).copied()
}

/// Has any heap ever been configured with `check_finalizers`? (Lets `add_cleanup` skip
/// looking its heap up when none has: the lookup takes `HEAPS`.)
static ANY_CHECKS: AtomicBool = AtomicBool::new(false);

/// Notes a configuration (see `ANY_CHECKS`).
pub(crate) fn note_config(config: &HeapConfig) {
    if config.check_finalizers {
        ANY_CHECKS.store(true, Ordering::Relaxed);
    }
}

/// Might some heap check finalizers? (`false`: none ever did.)
pub(crate) fn any_checks() -> bool {
    ANY_CHECKS.load(Ordering::Relaxed)
}

/// The most spans a thread sweeps for a span of its class before it takes new pages.
const SWEEP_FOR: usize = 128;
/// The most it sweeps once a collector wants the world (`sweep_for`).
const SWEEP_ONCE_ASKED: usize = 8;

/// A heap's spans. Between cycles every span is in `swept`; a cycle's flip moves them all
/// to `unswept` (in one move), and its sweep (`mgcsweep`) takes them back one by one,
/// freeing the empty ones. Spans made meanwhile go to `swept`.
#[derive(Default)]
pub(crate) struct Spans {
    pub(crate) swept: Vec<SpanPtr>,
    pub(crate) unswept: Vec<SpanPtr>,
    /// Spans the sweep emptied: their pages are free already, but the `Span` itself is
    /// dropped only at the sweep's end, with the world stopped. A thread sweeps with the
    /// others running, and one of them may be reading a span it found by an address that
    /// is no object's any more (`find_object`, `Cleanup::stop`, inside a section).
    pub(crate) dead: Vec<SpanPtr>,
    /// The sweep so far: bytes of the objects it kept, and objects it freed.
    pub(crate) live: usize,
    pub(crate) freed: u64,
}

impl Spans {
    /// Every in-use span.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &SpanPtr> {
        self.swept.iter().chain(self.unswept.iter())
    }
}

impl MHeap {
    pub(crate) fn new(config: HeapConfig) -> &'static MHeap {
        note_config(&config);
        let id = NEXT_HEAP_ID.fetch_add(1, Ordering::Relaxed);
        let inner: &'static MHeap = Box::leak(Box::new(MHeap {
            id,
            config: Mutex::new(config),
            handles: AtomicUsize::new(1),
            destructor_panics: AtomicU64::new(0),
            pages: Mutex::new(PageHeap::new(id)),
            central: MCentral::new(),
            all_spans: Mutex::new(Spans::default()),
            sweeping: AtomicBool::new(false),
            heap_live: AtomicUsize::new(0),
            next_gc: AtomicUsize::new(first_goal(&config)),
            trigger: AtomicUsize::new(first_goal(&config)),
            gc_wanted: AtomicBool::new(false),
            counters: Mutex::new(Counters::default()),
            large_mallocs: AtomicU64::new(0),
            limit_refusals: AtomicU64::new(0),
            started: Instant::now(),
            cycles_begun: AtomicU64::new(0),
            cycle_work_ns: AtomicU64::new(0),
            cycle_expected_ns: AtomicU64::new(0),
            work_ns_per_mb: AtomicU64::new(0),
        }));
        lock(&HEAPS).push(inner);
        inner
    }

    /// The configuration.
    pub(crate) fn config(&self) -> HeapConfig {
        *lock(&self.config)
    }

    /// Does the heap hold no object at all (no span in use)?
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.pages).in_use == 0
    }

    /// Gives every free page back to the OS.
    pub(crate) fn release_all(&self) {
        lock(&self.pages).release_free(0, true);
    }

    /// `bytes` more of the heap are in use (spans handed to caches, large objects): the
    /// pacer asks for a collection once `heap_live` reaches its goal.
    pub(crate) fn grew(&self, bytes: usize) {
        let live = self.heap_live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if live >= self.trigger.load(Ordering::Relaxed) {
            self.gc_wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Sets the pacer's goal after a cycle that left `live` bytes, during which the heap
    /// grew by `grown` (allocation while it ran in slices). A cycle run in one stop is
    /// wanted at the goal. One run in slices starts early enough that, growing as fast as
    /// the last, it ends at the goal (Go's trigger): `grown` (and a tenth) before it, but
    /// no later than 70 % and no earlier than 10 % of the way from `live` to `goal`.
    pub(crate) fn set_goal(&self, live: usize, goal: usize, grown: usize) {
        let trigger = match self.config().gc_slice {
            Some(_) if goal != usize::MAX => {
                let runway = goal - live.min(goal);
                let lead = grown
                    .saturating_add(grown / 10)
                    .clamp(runway / 10 * 3, runway / 10 * 9);
                goal - lead
            }
            _ => goal,
        };
        self.next_gc.store(goal, Ordering::Relaxed);
        self.trigger.store(trigger, Ordering::Relaxed);
    }

    /// A span of class `spc` with a free slot: from the central list, from the sweep
    /// (during a cycle's sweep, spans still to sweep are swept first: Go's
    /// `mcentral.cacheSpan`), or new pages.
    pub(crate) fn take_span(&'static self, spc: SpanClass) -> Option<SpanPtr> {
        let mut s = self.central.pop(spc);
        if s.is_none() && self.sweeping.load(Ordering::Relaxed) {
            s = self.sweep_for(spc);
        }
        let s = match s {
            Some(s) => s,
            None => {
                let class = TABLE.classes[spc.index() >> 1];
                self.new_span(class.npages, class.size, spc, 0)?
            }
        };
        let span = s.get();
        self.grew((span.nelems - span.alloc_count()) * span.elem_size);
        Some(s)
    }

    /// A span of `npages` new pages cut into slots of `elem_size` bytes. `align`: for a
    /// large object aligned to more than a page, the alignment of the page after its first
    /// (its value's, whose header ends the first page); else 0.
    /// (Go's `mheap.alloc`.)
    pub(crate) fn new_span(
        &'static self,
        npages: usize,
        elem_size: usize,
        spc: SpanClass,
        align: usize,
    ) -> Option<SpanPtr> {
        let mut pages = lock(&self.pages);
        if let Some(limit) = self.config().max_heap {
            if pages
                .in_use
                .saturating_add(npages.saturating_mul(PAGE_SIZE))
                > limit
            {
                self.limit_refusals
                    .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                return None;
            }
        }
        let (base, first) = if align > PAGE_SIZE {
            (pages.alloc_aligned(npages, align)?, PAGE_SIZE - HEADER)
        } else {
            (pages.alloc(npages)?, 0)
        };
        let span = Box::new(Span::new(
            base,
            npages,
            elem_size - first,
            first,
            spc,
            self.id,
        ));
        let ptr = Box::into_raw(span);
        // SAFETY: `ptr` was just made from a box.
        pages.set_span(unsafe { &*ptr }, ptr);
        drop(pages);
        // SAFETY: as above, non-null.
        let s = SpanPtr(unsafe { NonNull::new_unchecked(ptr) });
        lock(&self.all_spans).swept.push(s);
        Some(s)
    }

    /// A mutator's part of the sweep (Go's `mcentral.cacheSpan` sweeping): its class's
    /// central list is empty while spans are still to sweep. Sweeps up to `SWEEP_FOR` spans
    /// and returns the first of class `spc` with a free slot (the others with free slots go
    /// to their lists). Inside a section, so no stop of the world (and no collector sweep)
    /// runs meanwhile; other mutators may sweep too, under the same locks.
    ///
    /// Why a mutator may do this with the world running: a span still to sweep is in no cache
    /// and no central list (the flip flushed the caches and emptied the lists), so no thread
    /// takes a fresh slot of it; every object of it a thread can reach is marked (it was
    /// reachable or allocated black while the cycle marked, and an object whose count
    /// reached zero while the cycle marked was shaded, not doomed: `mfree`), and so is
    /// every slot of it on a free list (a slot freed at zero held such an object), so the
    /// flip of its bits changes no bit of such a slot; one with no mark holds nothing a
    /// thread can reach, so its pages may go back. Its `Span` stays until the sweep ends
    /// (`Spans::dead`).
    pub(crate) fn sweep_for(&'static self, spc: SpanClass) -> Option<SpanPtr> {
        let mut all = lock(&self.all_spans);
        let mut pages = lock(&self.pages);
        let mut left = SWEEP_FOR;
        let mut asked = false;
        while left > 0 {
            left -= 1;
            // A collector waiting for the world waits for this section: a span swept cold
            // takes about 20 µs, and 128 of them held a stop back by 2.5 ms. Once one
            // asks, a few more spans are swept (stopping at once made the thread take new
            // pages instead: binary-trees 21 in slices peaked at 478 MB, not 300-365).
            if !asked && crate::handshake::stop_requested() {
                asked = true;
                left = left.min(SWEEP_ONCE_ASKED);
            }
            let sp = all.unswept.pop()?;
            if Self::sweep_span(sp, &mut all, &mut pages) {
                if sp.get().spc == spc {
                    return Some(sp);
                }
                self.central.push(sp);
            }
        }
        None
    }

    /// Sweeps one span (Go's trick: its mark bits become its allocation bits): an empty one
    /// goes back to the page heap, another to `swept`. Returns whether the span was kept with
    /// a free slot (for the caller to list or use).
    pub(crate) fn sweep_span(sp: SpanPtr, all: &mut Spans, pages: &mut PageHeap) -> bool {
        let s = sp.get();
        let (live, freed) = s.finish_sweep();
        all.freed += freed as u64;
        if live == 0 {
            pages.set_span(s, core::ptr::null_mut());
            pages.free(s.base, s.npages);
            // In no list or cache (it was unswept: see `mgcsweep::flip`), off `unswept`,
            // and no page points to it: dropped at the sweep's end (`dead`).
            all.dead.push(sp);
            return false;
        }
        all.live += live * s.elem_size;
        all.swept.push(sp);
        s.has_free()
    }

    /// A cache gives back a span it allocated from.
    pub(crate) fn return_span(&self, s: SpanPtr) {
        if s.get().has_free() {
            self.central.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_gogc;

    #[test]
    fn gogc_from_the_environment() {
        assert_eq!(parse_gogc(None), Some(100));
        assert_eq!(parse_gogc(Some("50")), Some(50));
        assert_eq!(parse_gogc(Some(" 400 ")), Some(400));
        assert_eq!(parse_gogc(Some("off")), None);
        assert_eq!(parse_gogc(Some("OFF")), None);
        assert_eq!(parse_gogc(Some("lots")), Some(100));
    }

    #[test]
    fn gc_slice_from_the_environment() {
        use super::parse_slice;
        use std::time::Duration;
        assert_eq!(parse_slice(None), None);
        assert_eq!(parse_slice(Some("off")), None);
        assert_eq!(parse_slice(Some(" 250 ")), Some(Duration::from_micros(250)));
        assert_eq!(parse_slice(Some("soon")), None);
    }
}
