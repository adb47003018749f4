//! The collection cycle (Go's mgc): its steps, and how they are run, in one stop of the
//! world (`collect()`) or in slices of a bounded length with the world running between
//! them (the pacer's cycles, `HeapConfig::gc_slice`).
//!
//! The steps, each with the world stopped:
//! - **start**: flush the thread caches (their allocation turns black), apply every
//!   thread's deferred drops, take the snapshot of the spans, and turn the mutators'
//!   barriers on (`mgcwork`);
//! - **weak** (`weak::before_mark`): the weak cells' and ephemerons' counts, counted as
//!   references from inside the heap; **count** (`mgcmark::count_refs`), **roots**
//!   (`scan_roots`), **mark** (`drain`, with the threads' grey objects, Go's markfin and
//!   the ephemeron fixpoint), each resumable from a cursor;
//! - **terminate**, in the same stop as the check that marking is over: the barriers
//!   stop, and weak handles of unmarked objects go nil to upgrades (before any mutator
//!   runs without barriers: `weak::open_window`);
//! - **clear** (`weak::after_mark`): their cells are cleared, resumable;
//! - **resurrect** (`mfinal::resurrect`): finalizable garbage is resurrected and queued,
//!   span by span; **cleanups** (`mfinal::queue_cleanups`): the cleanups of what is still
//!   unmarked are queued. Both resumable (a heap with 80 000 finalizers took 14 ms in one
//!   stop): mutators between their steps touch only live objects' records, and the
//!   finalizers handed over so far may run. At their end the rest of the queue is handed
//!   over;
//! - **doomed** (`mark_doomed`): garbage whose destructor runs user code is marked for the
//!   drop batch;
//! - **release** (`mgcsweep::release`): garbage gives back the counts it holds;
//! - **flip** (`mgcsweep::flip`): the caches are flushed (allocation stops being black),
//!   the central lists emptied, and every span handed to the sweep in one move (no walk);
//! - **sweep** (`mgcsweep::sweep`): span by span, mark bits become allocation bits (Go's
//!   trick), empty spans go back to the page heap, spans with free slots to the central
//!   lists. Resumable, like the other steps, and shared: between its slices a thread that
//!   finds its class's list empty sweeps spans itself before it takes new pages
//!   (`MHeap::sweep_for`, Go's `mcentral.cacheSpan`), so the heap does not grow for want
//!   of swept spans;
//! - **end** (`mgcsweep::end`): the next goal is set (GOGC), and the cycle is reported.
//!   The doomed garbage goes to the caller, which destroys it once the world has resumed
//!   (mdrop): no stop holds user code but `Trace`; and so do free pages beyond the next
//!   goal, which the caller gives back to the OS once the world has resumed
//!   (`Outcome::scavenge`).
//!
//! The sweep was the flip's walk over every span in the stop that ended the cycle (about
//! 0.1 µs a span: 11 ms at 112 000 spans). Go sweeps lazily, concurrently with the
//! mutators and guarded by `sweepgen`; here the sweep is a step of the cycle, so the next
//! cycle cannot start before it ends (a span is never marked before it is swept), and a
//! thread sweeps only inside a section, so never while the collector does. The release
//! of free pages (`release_free`, one `madvise` per run: 31 ms once when a heap shrank by
//! half) was in that stop too; it runs after it, as Go's background scavenger does.
//!
//! One cycle runs at a time in the process (the world is one), whichever heap it
//! collects: it lives in `CYCLE` between slices. `collect()` is Go's `runtime.GC()`: it
//! finishes a cycle in progress (abandoning it instead if it is still marking this same
//! heap, since its snapshot predates the call), then runs a whole cycle in its one stop,
//! so when it returns, everything unreachable at the call has been found.
//!
//! Why run in slices rather than concurrently with the mutators (Go): fing's mutators
//! lower counts and free at zero, and a cycle's counting pass needs those counts still
//! between its reads; in slices, every read of the collector happens with the world
//! stopped and the barriers only have to keep the snapshot (`mgcmark`'s docs), with no
//! fence on the mutators' paths. The price is that marking time is taken from the
//! mutators' wall time; the pacer keeps it to half (`heap`).

use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mgcmark::Budget;
use crate::mheap::{lock, MHeap};
use crate::mspan::SpanPtr;
use crate::slot::Doomed;
use crate::world::StoppedWorld;
use crate::{mgcmark, mgcsweep, mgcwork};

/// What one cycle did, phase by phase: with the `tracing` feature, the caller reports it
/// as a span with an event per phase once the world has resumed (a subscriber is user
/// code, which never runs with the world stopped).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct Report {
    pub(crate) heap: &'static MHeap,
    pub(crate) cycle: u64,
    /// Stop-the-world time, in all; the stops; the longest.
    pub(crate) pause: Duration,
    pub(crate) stops: u32,
    pub(crate) pause_max: Duration,
    /// Each phase with the work it took (in stops), in order.
    pub(crate) phases: Vec<(&'static str, Duration)>,
    pub(crate) live_before: usize,
    pub(crate) live_after: usize,
    pub(crate) freed: u64,
    pub(crate) finalizers_queued: u64,
    pub(crate) cleanups_queued: u64,
    /// The heap's free page bytes to keep: the rest goes back to the OS once the world
    /// has resumed (`Outcome::scavenge`).
    pub(crate) retain: usize,
}

impl Report {
    /// Emits the cycle as a `tracing` span (`fing.gc`) with an event per phase and one
    /// for the whole. The world has resumed.
    #[cfg(feature = "tracing")]
    pub(crate) fn emit(&self, api: &str) {
        let span = tracing::info_span!("fing.gc", heap = self.heap.id, cycle = self.cycle, api);
        let _in = span.enter();
        for (phase, took) in &self.phases {
            tracing::debug!(phase = *phase, micros = took.as_micros() as u64, "phase");
        }
        tracing::info!(
            pause_micros = self.pause.as_micros() as u64,
            stops = self.stops,
            pause_max_micros = self.pause_max.as_micros() as u64,
            live_before = self.live_before,
            live_after = self.live_after,
            freed = self.freed,
            finalizers_queued = self.finalizers_queued,
            cleanups_queued = self.cleanups_queued,
            "collection"
        );
    }
}

/// Where a cycle is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Weak,
    Count,
    Roots,
    Mark,
    MarkFin,
    Clear,
    Resurrect,
    Cleanups,
    Doomed,
    Release,
    Sweep,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Weak => "weak",
            Phase::Count => "count_refs",
            Phase::Roots => "roots",
            Phase::Mark => "mark",
            Phase::MarkFin => "markfin",
            Phase::Clear => "clear",
            Phase::Resurrect => "resurrect",
            Phase::Cleanups => "cleanups",
            Phase::Doomed => "mark_doomed",
            Phase::Release => "release",
            Phase::Sweep => "sweep",
        }
    }

    /// Is the cycle still marking (its snapshot still being traced)?
    fn marking(self) -> bool {
        matches!(
            self,
            Phase::Weak | Phase::Count | Phase::Roots | Phase::Mark | Phase::MarkFin
        )
    }
}

/// A cycle in progress.
struct Cycle {
    heap: &'static MHeap,
    phase: Phase,
    /// The spans at the start: what the cycle counts, marks and releases.
    spans: Vec<SpanPtr>,
    cursor: usize,
    stack: mgcwork::MarkStack,
    /// Where the walks over weak cells and ephemerons are (the weak and clear steps).
    walks: crate::weak::Walks,
    /// The ephemeron fixpoint's round in progress (the mark step, once markfin ran).
    round: Option<FixpointRound>,
    /// Markfin done (`Phase::MarkFin` comes once, between two `Phase::Mark`s).
    finned: bool,
    fin_scanned: Vec<NonNull<u8>>,
    /// The finalizers and cleanups the resurrect and cleanups steps queue, not yet
    /// handed over.
    fins: crate::mfinal::FinQueue,
    doomed: Vec<Doomed>,
    /// `mark_doomed` went over every span; it found garbage it does not doom.
    doomed_listed: bool,
    plain_garbage: bool,
    /// A `Trace` impl that panicked during release (its object was kept).
    panicked: Option<Box<dyn Any + Send>>,
    /// `MemStats::num_gc` once marking ended.
    n: u64,
    live_before: usize,
    /// `heap_live` at the flip: what threads take from then on is added to what the
    /// sweep keeps.
    live_at_flip: usize,
    /// The caches' totals at the flip: what threads allocate and free from then on counts
    /// on top of what the sweep kept (`MemStats::heap_alloc`).
    totals_at_flip: crate::mstats::Totals,
    queued_before: u64,
    queued: u64,
    cleanups: u64,
    fin_cycles: u64,
    phases: Vec<(&'static str, Duration)>,
    stops: u32,
    pause: Duration,
    pause_max: Duration,
    /// The longest stop: the phases it began and ended in, and its time spent stopping
    /// (waiting for sections to end).
    longest: (&'static str, &'static str, Duration),
}

// SAFETY: the raw pointers are slots of the heap, read only by the collector holding the
// world (whichever thread it is).
unsafe impl Send for Cycle {}

/// A round of the ephemeron fixpoint spread over slices (`Cycle::mark`).
struct FixpointRound {
    at: crate::weak::Round,
    /// Something was marked since the round began: by the round, or by the collector.
    dirty: bool,
    /// `mgcwork::shaded()` when it began: what mutators marked since shows as a change.
    shaded: u64,
}

/// The cycle in progress, if any. Locked by the collector while it holds the world.
static CYCLE: Mutex<Option<Box<Cycle>>> = Mutex::new(None);

/// Is a cycle in progress, and of which heap?
pub(crate) fn in_progress() -> Option<u64> {
    lock(&CYCLE).as_ref().map(|c| c.heap.id)
}

impl Cycle {
    /// The start step (module docs).
    fn start(heap: &'static MHeap, world: &StoppedWorld) -> Box<Cycle> {
        // The work this cycle should take, from the last one's per MB (the pacer's
        // assists: `heap`); 2 ms a MB until a cycle has ended.
        let per_mb = match heap.work_ns_per_mb.load(Ordering::Relaxed) {
            0 => 2_000_000,
            n => n,
        };
        let mb = (heap.heap_live.load(Ordering::Relaxed) >> 20).max(1) as u64;
        heap.cycle_expected_ns
            .store(per_mb.saturating_mul(mb), Ordering::Relaxed);
        heap.cycle_work_ns.store(0, Ordering::Relaxed);
        // SAFETY: `world` says this thread stopped the world.
        unsafe { crate::mcache::flush_all(heap, true) };
        // Every thread's deferred drops first: the counts are then exact as of the stop.
        crate::release::drain_deferred(world);
        let spans: Vec<SpanPtr> = {
            let all = lock(&heap.all_spans);
            assert!(
                all.unswept.is_empty(),
                "fing::collect: a cycle began before the last one's sweep ended"
            );
            all.swept.clone()
        };
        mgcwork::begin(world, heap);
        Box::new(Cycle {
            heap,
            phase: Phase::Weak,
            spans,
            cursor: 0,
            stack: mgcwork::MarkStack::default(),
            walks: Default::default(),
            round: None,
            finned: false,
            fin_scanned: Vec::new(),
            fins: crate::mfinal::batch(),
            doomed: Vec::new(),
            doomed_listed: false,
            plain_garbage: false,
            panicked: None,
            n: 0,
            live_before: heap.heap_live.load(Ordering::Relaxed),
            live_at_flip: 0,
            totals_at_flip: Default::default(),
            queued_before: crate::mfinal::counters().0,
            queued: 0,
            cleanups: 0,
            fin_cycles: 0,
            phases: Vec::new(),
            stops: 0,
            pause: Duration::ZERO,
            pause_max: Duration::ZERO,
            longest: ("start", "start", Duration::ZERO),
        })
    }

    /// Goes to `next`, from the start of the snapshot.
    fn enter(&mut self, next: Phase) {
        self.phase = next;
        self.cursor = 0;
    }

    /// Adds `took` to the phase's time.
    fn spent(&mut self, phase: &'static str, took: Duration) {
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, t)) => *t += took,
            None => self.phases.push((phase, took)),
        }
    }

    /// Works until the sweep is done (`true`) or the budget is spent. May run user
    /// code (`Trace` impls), which may panic: the caller abandons the cycle then.
    fn work(&mut self, world: &StoppedWorld, budget: &mut Budget) -> bool {
        let heap = self.heap;
        loop {
            let t = Instant::now();
            let phase = self.phase;
            let done = match phase {
                // Weak handles' counts are references from inside the heap (weak).
                Phase::Weak => {
                    crate::weak::before_mark(heap, &mut self.walks, &mut |n| budget.go_on(n))
                }
                Phase::Count => mgcmark::count_refs(heap, &self.spans, &mut self.cursor, budget),
                Phase::Roots => mgcmark::scan_roots(
                    heap,
                    &self.spans,
                    &mut self.cursor,
                    &mut self.stack,
                    budget,
                ),
                Phase::Mark => self.mark(world, budget),
                Phase::MarkFin => mgcmark::markfin(
                    heap,
                    &self.spans,
                    &mut self.cursor,
                    &mut self.stack,
                    &mut self.fin_scanned,
                    budget,
                ),
                Phase::Clear => {
                    crate::weak::after_mark(heap, &mut self.walks, &mut |n| budget.go_on(n))
                }
                Phase::Resurrect => crate::mfinal::resurrect(
                    heap,
                    &self.spans,
                    &mut self.cursor,
                    &mut self.fins,
                    budget,
                ),
                Phase::Cleanups => crate::mfinal::queue_cleanups(
                    heap,
                    &self.spans,
                    &mut self.cursor,
                    &mut self.fins,
                    &mut self.cleanups,
                    budget,
                ),
                Phase::Doomed => {
                    if !self.doomed_listed {
                        self.doomed_listed = mgcmark::mark_doomed(
                            &self.spans,
                            &mut self.cursor,
                            &mut self.doomed,
                            &mut self.plain_garbage,
                            budget,
                        );
                        if self.doomed_listed && self.plain_garbage {
                            mgcmark::push_doomed(&self.doomed, &mut self.stack);
                        }
                    }
                    self.doomed_listed && mgcmark::drain(heap, &mut self.stack, budget)
                }
                Phase::Release => mgcsweep::release(
                    heap,
                    &self.spans,
                    &mut self.cursor,
                    &mut self.panicked,
                    budget,
                ),
                Phase::Sweep => mgcsweep::sweep(heap, world, budget),
            };
            self.spent(phase.name(), t.elapsed());
            if !done {
                return false;
            }
            match phase {
                Phase::Weak => self.enter(Phase::Count),
                Phase::Count => self.enter(Phase::Roots),
                Phase::Roots => self.enter(Phase::Mark),
                Phase::MarkFin => {
                    self.finned = true;
                    self.enter(Phase::Mark);
                }
                Phase::Mark => {
                    if !self.finned {
                        self.enter(Phase::MarkFin);
                    } else {
                        let t = Instant::now();
                        self.terminate(world);
                        self.spent("terminate", t.elapsed());
                        self.enter(Phase::Clear);
                    }
                }
                Phase::Clear => self.enter(Phase::Resurrect),
                Phase::Resurrect => self.enter(Phase::Cleanups),
                Phase::Cleanups => {
                    self.queued_all();
                    self.enter(Phase::Doomed);
                }
                Phase::Doomed => {
                    for d in &self.doomed {
                        // SAFETY: `mark_doomed` listed allocated, unreachable objects, and
                        // the world is stopped.
                        unsafe { crate::slot::set_dying(d.obj) };
                    }
                    self.enter(Phase::Release);
                }
                Phase::Release => {
                    let t = Instant::now();
                    self.live_at_flip = heap.heap_live.load(Ordering::Relaxed);
                    mgcsweep::flip(heap, world);
                    // After the flip's flush, which takes the caches' unused slots off.
                    self.totals_at_flip = crate::mcache::totals(heap, &lock(&heap.counters));
                    mgcwork::end(world);
                    // The sweep frees spans of the snapshot: it is not read again.
                    self.spans = Vec::new();
                    self.spent("flip", t.elapsed());
                    self.enter(Phase::Sweep);
                }
                Phase::Sweep => return true,
            }
            if budget.spent() {
                return false;
            }
        }
    }

    /// The mark step: drains the stack, with the threads' grey objects, then runs the
    /// ephemeron fixpoint's rounds, each resumable over slices; done when a round is over
    /// in a stop whose stack and grey lists are empty, and nothing was marked since the
    /// round began: not by the round, not by the collector draining, not by a mutator's
    /// barrier between slices (`mgcwork::shaded`: a shaded object without handles goes on
    /// no grey list). Then every key the round saw unmarked is still unmarked, and the
    /// fixpoint holds.
    fn mark(&mut self, world: &StoppedWorld, budget: &mut Budget) -> bool {
        let heap = self.heap;
        let mut values = Vec::new();
        loop {
            mgcwork::take_greys(world, &mut self.stack);
            let work = !self.stack.is_empty();
            if let (true, Some(r)) = (work, self.round.as_mut()) {
                r.dirty = true;
            }
            if !mgcmark::drain(heap, &mut self.stack, budget) {
                return false;
            }
            mgcwork::take_greys(world, &mut self.stack);
            if !self.stack.is_empty() {
                continue;
            }
            if !self.finned {
                return true;
            }
            // Ephemerons whose keys are marked keep their values, and weak handles of far
            // interior handles keep their far cells while their objects are marked, to a
            // fixpoint (weak).
            let r = self.round.get_or_insert_with(|| FixpointRound {
                at: Default::default(),
                dirty: false,
                shaded: mgcwork::shaded(),
            });
            let over =
                crate::weak::ephemeron_round(heap, &mut r.at, &mut |n| budget.go_on(n), |v| {
                    values.push(v)
                });
            if over && crate::weak::far_round(heap, |v| values.push(v)) {
                r.dirty = true;
            }
            if !values.is_empty() {
                r.dirty = true;
                mgcmark::mark_objects(&values, &mut self.stack);
                values.clear();
            }
            if !over {
                return false;
            }
            let conclusive = !r.dirty && r.shaded == mgcwork::shaded() && self.stack.is_empty();
            self.round = None;
            if conclusive {
                return true;
            }
            if budget.spent() {
                return false;
            }
        }
    }

    /// The terminate step (module docs).
    fn terminate(&mut self, world: &StoppedWorld) {
        let heap = self.heap;
        mgcwork::marking_done(world);
        if heap.config().check_finalizers {
            self.fin_cycles = mgcmark::check_fin_cycles(heap, &self.fin_scanned)
                + crate::mfinal::check_cleanups(heap, &self.spans);
        }
        self.fin_scanned = Vec::new();
        // Weak handles of what marking did not reach go nil now, before any mutator runs
        // with the barriers off: to upgrades at once (the window), in their cells by the
        // clear step, which ends before resurrection marks what finalizers get.
        crate::weak::open_window(heap);
        let mut k = lock(&heap.counters);
        k.num_gc += 1;
        k.finalizer_cycles += self.fin_cycles;
        self.n = k.num_gc;
    }

    /// After the resurrect and cleanups steps: the rest of the queue to whoever runs it.
    /// (The cycle counted in `num_gc` at terminate, when marking ended: a `collect()` from
    /// then on finishes the cycle rather than abandoning it.)
    fn queued_all(&mut self) {
        let heap = self.heap;
        crate::mfinal::enqueue(heap, core::mem::take(&mut self.fins));
        // Every finalizer this cycle queued, in all its parts (`resurrect` hands them
        // over as it goes), less its cleanups (the same queue).
        self.queued =
            (crate::mfinal::counters().0 - self.queued_before).saturating_sub(self.cleanups);
    }

    /// Undoes the cycle (before release: a `Trace` impl panicked, or `collect()` starts
    /// afresh): marks and scratch counts cleared, allocation no longer black.
    fn abandon(mut self: Box<Self>, world: &StoppedWorld) {
        let heap = self.heap;
        self.walks.abandon();
        // The flip turned marks into allocation bits: past it there is nothing to undo.
        assert!(
            self.phase != Phase::Sweep,
            "fing::collect: a cycle was abandoned in its sweep"
        );
        let spans: Vec<SpanPtr> = lock(&heap.all_spans).swept.clone();
        mgcmark::abandon(&spans);
        // SAFETY: `world` says this thread stopped the world.
        unsafe { crate::mcache::flush_all(heap, false) };
        mgcwork::end(world);
    }

    /// The flip step, and the report (module docs).
    fn finish(
        mut self: Box<Self>,
        world: &StoppedWorld,
        from: &'static str,
        work_began: Instant,
    ) -> (Vec<Doomed>, Report) {
        let heap = self.heap;
        let t = Instant::now();
        let now = heap.heap_live.load(Ordering::Relaxed);
        // What the heap grew by while the cycle ran (its slices' pacing, `set_goal`).
        let grown = now.saturating_sub(self.live_before);
        let (live, freed, retain) = mgcsweep::end(heap, world);
        // What the sweep kept, and what threads took since the flip.
        heap.heap_live.store(
            live + now.saturating_sub(self.live_at_flip),
            Ordering::Relaxed,
        );
        let config = heap.config();
        let goal = match config.gogc {
            Some(g) => (live.saturating_mul(100 + g as usize) / 100).max(config.min_heap),
            None => usize::MAX,
        };
        heap.set_goal(live, goal, grown);
        self.spent("end", t.elapsed());
        let work: Duration = self.phases.iter().map(|(_, d)| *d).sum();
        let mb = (self.live_before >> 20).max(1) as u64;
        heap.work_ns_per_mb
            .store((work.as_nanos() as u64 / mb).max(1), Ordering::Relaxed);
        // The last stop.
        self.note_stop(world, from, "end", work_began);
        let mut k = lock(&heap.counters);
        k.base.frees += freed;
        k.live_bytes = live;
        k.bytes_at_gc = self.totals_at_flip.bytes;
        k.free_bytes_at_gc = self.totals_at_flip.free_bytes;
        drop(k);
        let report = Report {
            heap,
            cycle: self.n,
            pause: self.pause,
            stops: self.stops,
            pause_max: self.pause_max,
            phases: core::mem::take(&mut self.phases),
            live_before: self.live_before,
            live_after: live,
            freed,
            finalizers_queued: self.queued,
            cleanups_queued: self.cleanups,
            retain,
        };
        if config.trace {
            self.print(goal, &report);
        }
        (core::mem::take(&mut self.doomed), report)
    }

    /// The `FING_TRACE=gc` line (its stop-the-world figures count the stop that ends the
    /// cycle only up to the flip: the caller records that stop).
    fn print(&self, goal: usize, r: &Report) {
        const MB: f64 = 1024.0 * 1024.0;
        let (from, to, stopping) = self.longest;
        eprintln!(
            "gc {} @{:.3}s: pause {:.3} ms in {} stops (longest {:.3} ms, {from} to {to}, {:.3} ms of it stopping), {:.1} -> {:.1} MB, {} MB goal, {} objects freed, {} finalizers queued, {} cleanups queued, {} objects to destroy; work in ms:{}",
            r.cycle,
            self.heap.started.elapsed().as_secs_f64(),
            r.pause.as_secs_f64() * 1e3,
            r.stops,
            r.pause_max.as_secs_f64() * 1e3,
            stopping.as_secs_f64() * 1e3,
            r.live_before as f64 / MB,
            r.live_after as f64 / MB,
            if goal == usize::MAX { "no".to_string() } else { format!("{:.1}", goal as f64 / MB) },
            r.freed,
            r.finalizers_queued,
            r.cleanups_queued,
            self.doomed.len(),
            r.phases.iter().fold(String::new(), |mut s, (phase, took)| {
                use core::fmt::Write;
                let _ = write!(s, " {phase} {:.3}", took.as_secs_f64() * 1e3);
                s
            }),
        );
    }

    /// Accounts one stop of the world that worked on this cycle, from `from` to now.
    fn note_stop(
        &mut self,
        world: &StoppedWorld,
        from: &'static str,
        to: &'static str,
        work_began: Instant,
    ) {
        let pause = world.raised_at.elapsed();
        self.stops += 1;
        self.pause += pause;
        if pause >= self.pause_max {
            self.pause_max = pause;
            self.longest = (from, to, work_began - world.raised_at);
        }
    }
}

/// Records a stop of the world in `heap`'s counters (Go's `PauseNs` ring and totals).
fn record_stop(heap: &MHeap, pause: Duration) {
    let mut k = lock(&heap.counters);
    k.num_pauses += 1;
    k.pause_max = k.pause_max.max(pause);
    if k.pauses.len() == crate::mstats::PAUSE_RING {
        k.pauses.pop_front();
    }
    k.pauses.push_back((heap.started.elapsed(), pause));
    k.pause_total += pause;
    k.last_pause = pause;
}

/// Runs `f` on the cycle; a panic (a `Trace` impl's) abandons it, reports it and goes on
/// to the caller.
fn guarded<R>(
    c: &mut Option<Box<Cycle>>,
    world: &StoppedWorld,
    api: &str,
    f: impl FnOnce(&mut Cycle, &StoppedWorld) -> R,
) -> R {
    let cycle = c.as_mut().expect("fing::collect: no cycle to work on");
    match catch_unwind(AssertUnwindSafe(|| f(cycle, world))) {
        Ok(r) => r,
        Err(panic) => {
            // Nothing was freed or released yet (release contains its panics): the heap is
            // as before the cycle. What it decided about unreachable objects stands, and
            // leaves no count behind: weak handles and ephemerons of unmarked objects stay
            // cleared (their counts were dropped as they were cleared), finalizers queued
            // hold counts on their objects, and cleanups queued run (their objects are
            // freed by a later cycle).
            if let Some(c) = c.take() {
                c.abandon(world);
            }
            eprintln!(
                "{api}: the Trace impl of {} panicked; the collection was abandoned and nothing was freed",
                mgcmark::tracing_type().map_or_else(|| "a type".to_string(), |t| t.to_string())
            );
            resume_unwind(panic)
        }
    }
}

/// What a stop of the world did: the doomed garbage of the cycles it finished (for the
/// caller to destroy once the world resumes), their reports, and a `Trace` panic that a
/// release contained (for `collect()` to pass on).
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) doomed: Vec<Doomed>,
    pub(crate) reports: Vec<Report>,
    pub(crate) panicked: Option<Box<dyn Any + Send>>,
}

impl Outcome {
    /// Gives back to the OS the free pages of each heap whose cycle ended, beyond what its
    /// pacer will fill before the next cycle (Go's scavenger, run by whoever stopped the
    /// world, once it has resumed: the `madvise` calls hold the heap's page lock, which
    /// only a thread that needs new pages waits for).
    pub(crate) fn scavenge(&self) {
        for r in &self.reports {
            lock(&r.heap.pages).release_free(r.retain, false);
        }
    }

    fn add(
        &mut self,
        (doomed, report): (Vec<Doomed>, Report),
        panicked: Option<Box<dyn Any + Send>>,
    ) {
        if self.doomed.is_empty() {
            self.doomed = doomed;
        } else {
            self.doomed.extend(doomed);
        }
        self.reports.push(report);
        if self.panicked.is_none() {
            self.panicked = panicked;
        }
    }
}

/// A whole cycle of `heap` in this stop (`collect()`, and collections that must free
/// memory now): a cycle in progress is finished first, or abandoned if it is `heap`'s and
/// still marking (its snapshot predates the call).
pub(crate) fn run(heap: &'static MHeap, world: &StoppedWorld, api: &str) -> Outcome {
    let work_began = Instant::now();
    let mut out = Outcome::default();
    let mut guard = lock(&CYCLE);
    if let Some(c) = guard.as_ref() {
        // Drops deferred while the world was being stopped: applied (and shaded) first.
        crate::release::drain_deferred(world);
        if c.heap.id == heap.id && c.phase.marking() {
            if let Some(c) = guard.take() {
                c.abandon(world);
            }
        } else {
            let from = c.phase.name();
            advance(
                &mut guard,
                world,
                api,
                from,
                work_began,
                Budget::unlimited(),
                &mut out,
            );
        }
    }
    *guard = Some(Cycle::start(heap, world));
    advance(
        &mut guard,
        world,
        api,
        "start",
        work_began,
        Budget::unlimited(),
        &mut out,
    );
    drop(guard);
    record_stop(heap, world.raised_at.elapsed());
    out
}

/// Works on the cycle in `guard` within `budget` and accounts the stop (begun in phase
/// `from`, its work at `work_began`); a cycle that ends is finished into `out`.
fn advance(
    guard: &mut Option<Box<Cycle>>,
    world: &StoppedWorld,
    api: &str,
    from: &'static str,
    work_began: Instant,
    mut budget: Budget,
    out: &mut Outcome,
) {
    let done = guarded(guard, world, api, |c, w| {
        let done = c.work(w, &mut budget);
        if !done {
            c.note_stop(w, from, c.phase.name(), work_began);
        }
        done
    });
    if done {
        let mut c = guard.take().expect("fing::collect: the cycle vanished");
        let panicked = c.panicked.take();
        out.add(c.finish(world, from, work_began), panicked);
    }
}

/// One slice: works on the cycle in progress (starting one of `heap` if there is none)
/// until `deadline`. Returns the outcome, with a report if a cycle ended.
pub(crate) fn slice(
    heap: &'static MHeap,
    world: &StoppedWorld,
    deadline: Instant,
    api: &str,
) -> Outcome {
    let work_began = Instant::now();
    let mut out = Outcome::default();
    let mut guard = lock(&CYCLE);
    let from = match guard.as_ref() {
        Some(c) => c.phase.name(),
        None => {
            *guard = Some(Cycle::start(heap, world));
            "start"
        }
    };
    let cycle_heap = guard.as_ref().map_or(heap, |c| c.heap);
    // A slice's own deferred drops: applied (and shaded) before the work.
    crate::release::drain_deferred(world);
    advance(
        &mut guard,
        world,
        api,
        from,
        work_began,
        Budget::until(deadline),
        &mut out,
    );
    drop(guard);
    cycle_heap
        .cycle_work_ns
        .fetch_add(work_began.elapsed().as_nanos() as u64, Ordering::Relaxed);
    record_stop(cycle_heap, world.raised_at.elapsed());
    out
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
        for p in ["count_refs", "mark", "terminate", "release", "flip"] {
            assert!(seen.contains(&format!("phase {p}")), "{p} in {seen:?}");
        }
        assert!(seen.iter().any(|s| s.contains("collection")), "{seen:?}");
        assert_eq!(keep[0], 1);
    }
}
