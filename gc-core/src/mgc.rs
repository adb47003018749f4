//! The collection cycle (Go's mgc): with the world stopped, flush the thread caches,
//! find the roots by trial subtraction and mark from them ([`mgcmark`](crate::mgcmark)),
//! sweep ([`mgcsweep`](crate::mgcsweep)), then set the next goal (GOGC) and report.
//!
//! `collect()` is Go's `runtime.GC()`: when it returns, marking and sweeping are done.
//! Collections triggered by allocation run the same cycle but only if the world can be
//! had at once (`world::stop(false)`); otherwise the pacer's request stays up and the next
//! allocation past it tries again.

use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::heap::{lock, HeapInner, SpanPtr};
use crate::world::StoppedWorld;
use crate::{mgcmark, mgcsweep};

pub(crate) fn run(heap: &'static HeapInner, world: &StoppedWorld, api: &str) {
    let t0 = Instant::now();
    let caches = lock(&heap.caches).clone();
    for c in caches {
        // SAFETY: the world is stopped, so no cache's owner is inside a section, and a
        // registered cache lives until it retires (which needs a section).
        unsafe { (*c.as_ptr()).flush() };
    }
    // Every thread's deferred drops first: the counts are then exact as of the stop.
    crate::world::drain_deferred(world);
    let spans: Vec<SpanPtr> = lock(&heap.all_spans).clone();
    let before = heap.heap_live.load(Ordering::Relaxed);

    // Tracing runs user code (`Trace` impls). If one panics, nothing has been freed yet:
    // the scratch counts and mark bits are reset, the world resumes (the caller's guard),
    // and the panic goes on to the caller, which finds the heap as it was.
    let traced = catch_unwind(AssertUnwindSafe(|| {
        (
            mgcmark::count_refs(heap, &spans),
            mgcmark::mark(heap, &spans),
        )
    }));
    let (cross_heap, fin_cycles) = match traced {
        Ok(r) => r,
        Err(panic) => {
            mgcmark::abandon(&spans);
            eprintln!(
                "{api}: the Trace impl of {} panicked; the collection was abandoned and nothing was freed",
                mgcmark::tracing_type().map_or_else(|| "a type".to_string(), |t| t.to_string())
            );
            resume_unwind(panic)
        }
    };
    let finalizers = crate::mfinal::resurrect(&spans);
    let queued = finalizers.len;
    let swept = mgcsweep::sweep(heap, world, &spans, cross_heap);
    crate::mfinal::enqueue(finalizers);

    let live = swept.live_bytes;
    heap.heap_live.store(live, Ordering::Relaxed);
    let goal = match heap.config.gogc {
        Some(g) => (live.saturating_mul(100 + g as usize) / 100).max(heap.config.min_heap),
        None => usize::MAX,
    };
    heap.next_gc.store(goal, Ordering::Relaxed);
    let pause = t0.elapsed();
    let mut k = lock(&heap.counters);
    k.num_gc += 1;
    k.finalizer_cycles += fin_cycles;
    k.destructor_panics += swept.drop_panics;
    k.base.frees += swept.freed_objects;
    k.pause_total += pause;
    k.last_pause = pause;
    k.live_bytes = live;
    let t = heap.totals(&k);
    k.bytes_at_gc = t.bytes;
    k.free_bytes_at_gc = t.free_bytes;
    let n = k.num_gc;
    drop(k);
    if heap.config.trace {
        const MB: f64 = 1024.0 * 1024.0;
        eprintln!(
            "gc {n} @{:.3}s: pause {:.3} ms, {:.1} -> {:.1} MB, {} MB goal, {} objects freed, {} finalizers queued, {} panics in destructors",
            heap.started.elapsed().as_secs_f64(),
            pause.as_secs_f64() * 1e3,
            before as f64 / MB,
            live as f64 / MB,
            if goal == usize::MAX { "no".to_string() } else { format!("{:.1}", goal as f64 / MB) },
            swept.freed_objects,
            queued,
            swept.drop_panics,
        );
    }
}
