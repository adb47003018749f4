//! The collection cycle (Go's mgc): with the world stopped, flush the thread caches,
//! find the roots by trial subtraction and mark from them ([`mgcmark`](crate::mgcmark)),
//! sweep ([`mgcsweep`](crate::mgcsweep)), then set the next goal (GOGC) and report. The
//! garbage whose destructors run user code comes back to the caller, which destroys it
//! after the world resumes ([`mdrop`](crate::mdrop)): the pause holds no user code.
//!
//! `collect()` is Go's `runtime.GC()`: when it returns, marking and sweeping are done.
//! Collections triggered by allocation run the same cycle but only if the world can be
//! had within a short budget (`world::stop(false, ...)`: 200 µs to 20 ms, longer the
//! further the heap is past its goal); otherwise the pacer's request stays up and the next
//! allocation past it tries again.

use core::sync::atomic::Ordering;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::mheap::{lock, MHeap};
use crate::mspan::SpanPtr;
use crate::slot::Doomed;
use crate::world::StoppedWorld;
use crate::{mgcmark, mgcsweep};

/// What one cycle did, phase by phase: with the `tracing` feature, the caller reports it
/// as a span with an event per phase once the world has resumed (a subscriber is user
/// code, which never runs with the world stopped).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct Report {
    pub(crate) cycle: u64,
    pub(crate) pause: Duration,
    /// Each phase with the time it took, in order.
    pub(crate) phases: Vec<(&'static str, Duration)>,
    pub(crate) live_before: usize,
    pub(crate) live_after: usize,
    pub(crate) freed: u64,
    pub(crate) finalizers_queued: u64,
    pub(crate) cleanups_queued: u64,
}

impl Report {
    /// Emits the cycle as a `tracing` span (`fing.gc`) with an event per phase and one
    /// for the whole. The world has resumed.
    #[cfg(feature = "tracing")]
    pub(crate) fn emit(&self, heap: u64, api: &str) {
        let span = tracing::info_span!("fing.gc", heap, cycle = self.cycle, api);
        let _in = span.enter();
        for (phase, took) in &self.phases {
            tracing::debug!(phase = *phase, micros = took.as_micros() as u64, "phase");
        }
        tracing::info!(
            pause_micros = self.pause.as_micros() as u64,
            live_before = self.live_before,
            live_after = self.live_after,
            freed = self.freed,
            finalizers_queued = self.finalizers_queued,
            cleanups_queued = self.cleanups_queued,
            "collection"
        );
    }
}

/// Marks the end of a phase: its time since the last mark goes into `phases`.
fn phase(phases: &mut Vec<(&'static str, Duration)>, last: &mut Instant, name: &'static str) {
    let now = Instant::now();
    phases.push((name, now - *last));
    *last = now;
}

/// Runs one cycle with the world stopped; returns the garbage whose destructors run user
/// code, doomed, for the caller to destroy once the world resumes (mdrop), and what the
/// cycle did.
pub(crate) fn run(heap: &'static MHeap, world: &StoppedWorld, api: &str) -> (Vec<Doomed>, Report) {
    let t0 = Instant::now();
    let mut phases = Vec::with_capacity(8);
    let mut last = world.raised_at;
    phase(&mut phases, &mut last, "stop");
    // SAFETY: `world` says this thread stopped the world.
    unsafe { crate::mcache::flush_all(heap) };
    // Every thread's deferred drops first: the counts are then exact as of the stop.
    crate::release::drain_deferred(world);
    // Weak handles' counts are references from inside the heap (weak).
    crate::weak::before_mark(heap);
    let spans: Vec<SpanPtr> = lock(&heap.all_spans).clone();
    let before = heap.heap_live.load(Ordering::Relaxed);
    phase(&mut phases, &mut last, "flush");

    // Tracing runs user code (`Trace` impls). If one panics, nothing has been freed yet:
    // the scratch counts and mark bits are reset, the world resumes (the caller's guard),
    // and the panic goes on to the caller, which finds every object where it was. What
    // the cycle had decided by then about unreachable objects stands, and leaves no count
    // behind: weak handles and ephemerons of unmarked objects stay cleared (their counts
    // were dropped as they were cleared), finalizers queued hold counts on their objects,
    // and cleanups queued run (their objects are freed by a later cycle).
    let queued_before = crate::mfinal::counters().0;
    let traced = catch_unwind(AssertUnwindSafe(|| {
        let cross_heap = mgcmark::count_refs(heap, &spans);
        phase(&mut phases, &mut last, "count_refs");
        let fin_cycles = mgcmark::mark(heap, &spans);
        phase(&mut phases, &mut last, "mark");
        // Ephemerons whose keys are marked keep their values, and weak handles of far
        // interior handles keep their far cells while their objects are marked, to a
        // fixpoint (weak).
        let mut values = Vec::new();
        loop {
            let e = crate::weak::ephemeron_round(heap, |v| values.push(v));
            let f = crate::weak::far_round(heap, |v| values.push(v));
            if !(e || f) {
                break;
            }
            mgcmark::mark_and_drain(heap, &values);
            values.clear();
        }
        let fin_cycles = if heap.config().check_finalizers {
            fin_cycles + crate::mfinal::check_cleanups(heap, &spans)
        } else {
            fin_cycles
        };
        phase(&mut phases, &mut last, "ephemerons");
        // Before resurrection: a weak handle goes nil when its finalizers are queued.
        crate::weak::after_mark(heap);
        let mut queue = crate::mfinal::resurrect(heap, &spans);
        // After resurrection: what is still unmarked is freed by this cycle.
        let cleanups = crate::mfinal::queue_cleanups(heap, &spans, &mut queue);
        crate::mfinal::enqueue(heap, queue);
        phase(&mut phases, &mut last, "resurrect");
        let doomed = mgcmark::mark_doomed(heap, &spans);
        phase(&mut phases, &mut last, "mark_doomed");
        (cross_heap, fin_cycles, doomed, cleanups)
    }));
    let (cross_heap, fin_cycles, doomed, cleanups) = match traced {
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
    // Every finalizer this cycle queued, in all its parts (`resurrect` hands them over as
    // it goes), less its cleanups (the same queue).
    let queued = (crate::mfinal::counters().0 - queued_before).saturating_sub(cleanups);
    for d in &doomed {
        // SAFETY: `mark_doomed` listed allocated, unreachable objects, and the world is
        // stopped.
        unsafe { crate::slot::set_dying(d.obj) };
    }
    let swept = mgcsweep::sweep(heap, world, &spans, cross_heap);
    phase(&mut phases, &mut last, "sweep");

    let live = swept.live_bytes;
    heap.heap_live.store(live, Ordering::Relaxed);
    let config = heap.config();
    let goal = match config.gogc {
        Some(g) => (live.saturating_mul(100 + g as usize) / 100).max(config.min_heap),
        None => usize::MAX,
    };
    heap.next_gc.store(goal, Ordering::Relaxed);
    let work = t0.elapsed();
    let pause = world.raised_at.elapsed();
    let mut k = lock(&heap.counters);
    k.num_gc += 1;
    k.pause_max = k.pause_max.max(pause);
    if k.pauses.len() == crate::mstats::PAUSE_RING {
        k.pauses.pop_front();
    }
    k.pauses.push_back((heap.started.elapsed(), pause));
    k.finalizer_cycles += fin_cycles;
    k.base.frees += swept.freed_objects;
    k.pause_total += pause;
    k.last_pause = pause;
    k.live_bytes = live;
    let t = crate::mcache::totals(heap, &k);
    k.bytes_at_gc = t.bytes;
    k.free_bytes_at_gc = t.free_bytes;
    let n = k.num_gc;
    drop(k);
    if config.trace {
        const MB: f64 = 1024.0 * 1024.0;
        eprintln!(
            "gc {n} @{:.3}s: pause {:.3} ms ({:.3} ms stopping, {:.3} ms of work), {:.1} -> {:.1} MB, {} MB goal, {} objects freed, {} finalizers queued, {} cleanups queued, {} objects to destroy",
            heap.started.elapsed().as_secs_f64(),
            pause.as_secs_f64() * 1e3,
            (pause.saturating_sub(work)).as_secs_f64() * 1e3,
            work.as_secs_f64() * 1e3,
            before as f64 / MB,
            live as f64 / MB,
            if goal == usize::MAX { "no".to_string() } else { format!("{:.1}", goal as f64 / MB) },
            swept.freed_objects,
            queued,
            cleanups,
            doomed.len(),
        );
    }
    let report = Report {
        cycle: n,
        pause,
        phases,
        live_before: before,
        live_after: live,
        freed: swept.freed_objects,
        finalizers_queued: queued,
        cleanups_queued: cleanups,
    };
    (doomed, report)
}

#[cfg(all(test, feature = "tracing"))]
mod tracing_tests {
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Records span names and the `phase` field (or message) of each event.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    struct Fields<'a>(&'a mut Vec<String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "phase" {
                self.0.push(format!("phase {value}"));
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn core::fmt::Debug) {
            if field.name() == "message" {
                self.0.push(format!("event {value:?}"));
            }
        }
    }

    impl Subscriber for Log {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            self.0
                .lock()
                .unwrap()
                .push(format!("span {}", span.metadata().name()));
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            event.record(&mut Fields(&mut self.0.lock().unwrap()));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// With the `tracing` feature, a collection is a `fing.gc` span with an event per
    /// phase, then one for the whole.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_collection_is_a_span_with_its_phases() {
        let log = Log::default();
        let h = crate::Heap::new(crate::HeapConfig::default());
        let keep = h.alloc([1u64; 4]);
        tracing::subscriber::with_default(log.clone(), || h.collect());
        let seen = log.0.lock().unwrap().clone();
        assert_eq!(
            seen.first().map(String::as_str),
            Some("span fing.gc"),
            "{seen:?}"
        );
        for p in ["count_refs", "mark", "resurrect", "sweep"] {
            assert!(seen.contains(&format!("phase {p}")), "{p} in {seen:?}");
        }
        assert!(seen.iter().any(|s| s.contains("collection")), "{seen:?}");
        assert_eq!(keep[0], 1);
    }
}
