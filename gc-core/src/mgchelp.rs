//! The collector's helper, `fing-gchelp` (Go's dedicated mark worker, one of them): a
//! second thread that takes a share of the work of a stop, on a core that the stopped
//! mutators leave idle.
//!
//! [`run_shared`] runs one closure on the calling thread (the collector, holding the
//! stopped world) and on a second thread at once (the helper, or a mutator: below), and
//! returns when both have returned. The closure shares its work out itself (a counter of
//! chunks both claim from). While it runs the second thread counts as holding the world
//! (`Local::holds_world`): a `Trace` impl that calls into fing from it panics as it would
//! on the collector's thread, instead of waiting for a world that will not resume, and a
//! handle it drops is lowered as the collector lowers one. A panic on the second thread
//! is caught there and resumed on the caller once both are done, so the caller's
//! unwinding (a `Trace` impl's panic abandons the cycle: `mgc`) sees every panic of the
//! stop, and nothing runs on the second thread after `run_shared` has returned.
//!
//! Why a thread that lives for the process rather than a scoped thread per stop: a new
//! thread makes its fing state (`Local`) the first time it touches it, and a thread's exit
//! applies the drops it deferred in a section of its own (`Local::drop`), which would wait
//! for a world that its own collector holds. The helper is started outside every stop
//! (`start`, from the collection's caller before it stops the world) and sleeps on a
//! condition variable between jobs.
//!
//! Stops over a large heap use it (`mgcmark`'s `SHARED_SPANS` to count, `SHARED_HEAP`
//! to mark), whole cycles and slices alike; on one core there is nothing to share. A
//! job the helper has not taken by the time the caller has done it all is taken back,
//! not waited for.
//!
//! A slice's stop is a quarter of a millisecond, and a sleeping thread on this kind of
//! machine may wake a scheduler tick (4 ms) late: the helper thread often misses a
//! slice's job. So a second taker serves jobs too: a mutator that meets a slice's stop
//! stays awake through it (`world`'s `help_through_stop`, one mutator at a time) and
//! runs the job if it finds one set ([`help`], `try_serve`), as the helper would. Either
//! taker, or neither, runs each job, once; the caller of `share` cannot tell which. And
//! the caller waits for the taker's end awake for half a millisecond before it sleeps.
//! While a mutator waits awake for jobs, the helper thread is not woken for a slice's
//! (both awake on two cores would take the cores the collector and that mutator use).
//! In the latency example's slices (256 MB live), a cycle's counting and marking took
//! 160-630 and 480-1060 ms, against 380-750 and 940-1430 ms on one thread (several runs
//! each, on a noisy host: `docs/log.md`, 2026-12-03).
//!
//! The helper is the process's: in a child made by `fork` it does not exist, and the
//! child's jobs run on the caller alone.
//!
//! Invariant: the job pointer is set only by `Helper::share`, which does not return until
//! the thread that took it (the helper or a mutator) has marked it done, or the job was
//! taken back untouched, so the closure it points to outlives every use.

use std::any::Any;
#[cfg(not(loom))]
use std::panic::resume_unwind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};

/// A closure to run on both threads, its lifetime erased (see the module's invariant).
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn() + Sync + 'static));

// SAFETY: the closure is `Sync` (the pointer is only used to call it through a shared
// reference), and it outlives the job (module invariant).
unsafe impl Send for Job {}

/// What the caller and the helper share.
struct State {
    /// The job the helper is to run, until it takes it.
    job: Option<Job>,
    /// That job is a slice's pass (a mutator waiting out the stop may take it).
    short: bool,
    /// The helper has finished the last job it took.
    done: bool,
    /// That job's panic, if it panicked.
    panic: Option<Box<dyn Any + Send>>,
    /// Only the loom model closes a helper (its threads must end): `serve` returns.
    closed: bool,
}

/// The hand-off between the caller of `run_shared` and the helper (the code the loom
/// model below checks).
struct Helper {
    state: Mutex<State>,
    /// Signalled when a job is set.
    work: Condvar,
    /// Signalled when the helper finishes one.
    finished: Condvar,
}

/// The one body of `Helper::new`, const or not.
macro_rules! helper {
    () => {
        Helper {
            state: Mutex::new(State {
                job: None,
                short: false,
                done: true,
                panic: None,
                closed: false,
            }),
            work: Condvar::new(),
            finished: Condvar::new(),
        }
    };
}

impl Helper {
    /// A hand-off with no job (const for the real one, a static; loom's primitives are
    /// made at run time, inside a model).
    #[cfg(not(loom))]
    const fn new() -> Helper {
        helper!()
    }

    #[cfg(loom)]
    fn new() -> Helper {
        helper!()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under this lock leaves no broken state (jobs run outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller's side: sets `f` as the job, runs it here too, waits for the helper's
    /// run to end; returns the panics of both (this thread's first). `Err(f)` back, run
    /// nowhere, if a job is in flight already (one collector at a time holds the world;
    /// only the unit tests share the helper otherwise).
    #[allow(clippy::type_complexity)]
    fn share(
        &self,
        f: &(dyn Fn() + Sync),
        short: bool,
    ) -> Result<(Option<Box<dyn Any + Send>>, Option<Box<dyn Any + Send>>), ()> {
        // Only the lifetime is erased: this function does not return (nor unwind: the call
        // of `f` here is caught) before the helper has marked the job done or it is taken
        // back untouched, and the helper never calls a job after that.
        // SAFETY: so `f` outlives every call through the pointer (above).
        let job = Job(unsafe {
            core::mem::transmute::<*const (dyn Fn() + Sync + '_), *const (dyn Fn() + Sync + 'static)>(
                f as *const _,
            )
        });
        {
            let mut s = self.lock();
            if !s.done || s.job.is_some() {
                return Err(());
            }
            s.job = Some(job);
            s.short = short;
            s.done = false;
        }
        // A slice's job with a mutator waiting awake for it: the helper thread is not
        // woken (woken, it takes a core from the collector or that mutator, and the slice
        // stretches while either waits for the other; p99 of the slices' stops 0.8 ms on
        // two mutator threads). If the mutator has just left, the caller does it all.
        if !(short && helping()) {
            self.work.notify_one();
        }
        let mine = catch_unwind(AssertUnwindSafe(f)).err();
        let mut s = self.lock();
        if s.job.take().is_some() {
            // The helper has not woken yet, and this thread has done the whole job (a job
            // must allow that: it shares its work out itself): taken back, and not waited
            // for (a wake-up on a loaded machine can be a scheduler tick).
            s.done = true;
            return Ok((mine, None));
        }
        // The other thread is at its last chunk (jobs stop together): wait awake for a
        // while, since a sleeping thread may wake a scheduler tick late (4 ms here, against
        // a slice's quarter of a millisecond).
        // (Not in the loom model, whose waits must be the condition variable's.)
        #[cfg(not(loom))]
        {
            let t = std::time::Instant::now();
            while !s.done && t.elapsed() < std::time::Duration::from_micros(500) {
                drop(s);
                for _ in 0..16 {
                    core::hint::spin_loop();
                }
                s = self.lock();
            }
        }
        while !s.done {
            s = self.finished.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        Ok((mine, s.panic.take()))
    }

    /// The helper's side: waits for a job, runs it (between `before` and `after`), and
    /// marks it done with its panic. Returns without one once the helper is closed.
    fn serve(&self, before: impl FnOnce(), after: impl FnOnce()) {
        let job = {
            let mut s = self.lock();
            loop {
                if let Some(j) = s.job.take() {
                    break j;
                }
                if s.closed {
                    return;
                }
                s = self.work.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        self.run(job, before, after);
    }

    /// `serve` without the wait, for a slice's job only: runs it if one is set and not
    /// yet taken (a mutator waiting out a slice's stop, `help`; a whole cycle's passes
    /// have no deadline, and would hold it far past the stop it met). Returns whether it
    /// ran one.
    fn try_serve(&self, before: impl FnOnce(), after: impl FnOnce()) -> bool {
        let job = {
            let mut s = self.lock();
            if !s.short {
                return false;
            }
            let Some(job) = s.job.take() else {
                return false;
            };
            job
        };
        self.run(job, before, after);
        true
    }

    /// Runs a job taken from `state` (by `serve` or `try_serve`), and marks it done.
    fn run(&self, job: Job, before: impl FnOnce(), after: impl FnOnce()) {
        before();
        // SAFETY: the caller of `share` waits for `done` before `f` goes (module
        // invariant), and `f` is `Sync`.
        let out = catch_unwind(AssertUnwindSafe(|| unsafe { (*job.0)() }));
        after();
        let mut s = self.lock();
        s.panic = out.err();
        s.done = true;
        drop(s);
        self.finished.notify_one();
    }
}

#[cfg(not(loom))]
static HELPER: Helper = Helper::new();

#[cfg(loom)]
impl Helper {
    /// Makes `serve` return once no job is left (the model's helper thread must end).
    fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }
}

/// The process whose helper runs (its id): decided by the first `start` (`None`: a
/// machine of one core, or a thread the OS refused, has none).
static RUNNING: OnceLock<Option<u32>> = OnceLock::new();

/// Starts the helper if the machine has a second core and it is not started yet. Call it
/// outside every stop: the helper makes its fing state as it starts. Cheap after the
/// first call.
#[cfg(not(loom))]
pub(crate) fn start() {
    RUNNING.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let spawned = cores > 1
            && std::thread::Builder::new()
                .name("fing-gchelp".into())
                .spawn(run)
                .is_ok();
        spawned.then(std::process::id)
    });
}

/// Is the helper there to share a stop's work? (Not in a child made by `fork`: its
/// threads stayed in the parent.)
pub(crate) fn available() -> bool {
    RUNNING
        .get()
        .copied()
        .flatten()
        .is_some_and(|pid| pid == std::process::id())
}

/// Runs `f` on this thread and on the helper at once (just here if there is no helper, or
/// it is busy), and returns once both calls have returned. A panic of either is resumed
/// here after both are done (this thread's own first). For the collector, with the world
/// stopped.
/// `short`: `f` is a slice's pass, which stops at the slice's deadline (a mutator waiting
/// out the stop may take it).
#[cfg(not(loom))]
pub(crate) fn run_shared(f: &(dyn Fn() + Sync), short: bool) {
    if !available() {
        f();
        return;
    }
    match HELPER.share(f, short) {
        Err(()) => f(),
        Ok((Some(p), _) | (None, Some(p))) => resume_unwind(p),
        Ok((None, None)) => {}
    }
}

/// Is a mutator waiting awake through a slice's stop, to take its jobs?
#[cfg(not(loom))]
fn helping() -> bool {
    crate::world::helping()
}

/// In the loom model no mutator waits out a stop.
#[cfg(loom)]
fn helping() -> bool {
    false
}

/// For a mutator waiting for a slice's stop to end (`world`): runs the job the collector
/// shares, if the helper thread has not taken it yet, as the helper would (holding the
/// world). Returns whether it ran one. A mutator waiting there is already awake, where
/// the helper thread may wake a scheduler tick late.
#[cfg(not(loom))]
pub(crate) fn help() -> bool {
    use crate::world::try_local;
    if try_local(|l| l.is_temporary() || l.holds_world.get()) != Some(false) {
        return false;
    }
    HELPER.try_serve(
        || try_local(|l| l.holds_world.set(true)).unwrap_or(()),
        || try_local(|l| l.holds_world.set(false)).unwrap_or(()),
    )
}

/// In the loom build: no job is shared (`run_shared` runs it here only).
#[cfg(loom)]
pub(crate) fn help() -> bool {
    false
}

/// In the loom build the helper is the model's thread, not the process's.
#[cfg(loom)]
pub(crate) fn start() {}

/// In the loom build: `f` here only.
#[cfg(loom)]
pub(crate) fn run_shared(f: &(dyn Fn() + Sync), _short: bool) {
    f();
}

/// The helper thread: takes a job, runs it holding the world, says it is done.
#[cfg(not(loom))]
fn run() {
    use crate::world::local;
    // Its fing state, made now (outside every stop: see `start`), lives as long as the
    // process; the thread never ends.
    local(|_| ());
    loop {
        HELPER.serve(
            || local(|l| l.holds_world.set(true)),
            || local(|l| l.holds_world.set(false)),
        );
    }
}

/// The hand-off in loom: a caller shares a job of two parts (each claimed once, through an
/// atomic, as `mgcmark::count_refs` claims chunks) with the helper, twice; the helper may
/// take each job or not (the caller then takes it back). Properties: each part is done
/// exactly once per job, its writes (loom cells) are visible to the caller when `share`
/// returns, no write to them races (loom checks), and the helper never runs a job's
/// closure after `share` returned (the second job's cells start fresh).
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    /// Two parts, each written by the thread that claims it.
    struct Parts([UnsafeCell<u32>; 2]);

    // SAFETY: each part is claimed by one thread (an atomic counter), and loom reports any
    // access that races, which is what the model checks.
    unsafe impl Sync for Parts {}

    impl Parts {
        fn part(&self, i: usize) -> Option<&UnsafeCell<u32>> {
            self.0.get(i)
        }
    }

    /// The helper thread: serves `h` until it is closed (the caller may have taken a job
    /// back untouched).
    fn helper_thread(h: &Arc<Helper>) -> thread::JoinHandle<()> {
        let h = h.clone();
        thread::spawn(move || {
            while !h.lock().closed {
                h.serve(|| (), || ());
            }
        })
    }

    /// Shares a job of two parts through `h` (`short`: a slice's), and checks each part
    /// was done once, its write seen here.
    fn share_two_parts(h: &Helper, short: bool) {
        let next = AtomicUsize::new(0);
        let parts = Parts([UnsafeCell::new(0u32), UnsafeCell::new(0u32)]);
        let r = h.share(
            &|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = parts.part(i) else { break };
                // SAFETY: part `i` is claimed by one thread only (loom checks).
                p.with_mut(|v| unsafe { *v += 1 });
            },
            short,
        );
        assert!(matches!(r, Ok((None, None))));
        for p in &parts.0 {
            // SAFETY: every run has ended (loom checks the happens-before).
            assert_eq!(p.with(|v| unsafe { *v }), 1);
        }
    }

    #[test]
    fn a_shared_job_is_done_once_and_seen_whole() {
        loom::model(|| {
            let h = Arc::new(Helper::new());
            let helper = helper_thread(&h);
            for _ in 0..2 {
                share_two_parts(&h, false);
            }
            h.close();
            helper.join().unwrap();
        });
    }

    /// As above, with a second taker: a mutator waiting out a slice's stop (`help`), which
    /// takes a job only if it finds a slice's job set (`try_serve`), racing the helper for
    /// it. One job (three threads over two jobs is beyond loom's reach in minutes): its
    /// parts are done once and seen whole whichever of the two (or neither) takes it, and
    /// the mutator never runs it after `share` returned.
    #[test]
    fn a_job_taken_by_a_waiting_mutator_is_done_once_and_seen_whole() {
        loom::model(|| {
            let h = Arc::new(Helper::new());
            let helper = helper_thread(&h);
            let h3 = h.clone();
            let mutator = thread::spawn(move || {
                h3.try_serve(|| (), || ());
            });
            share_two_parts(&h, true);
            mutator.join().unwrap();
            h.close();
            helper.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// These tests share the one helper (another test's collection may too: then a job
    /// runs on its caller alone, which the tests allow for).
    static SERIAL: Mutex<()> = Mutex::new(());

    /// The work a job shares is done once, `run_shared` returns only after the helper's
    /// share, and (with a second core) the helper does take part.
    #[test]
    #[cfg_attr(miri, ignore)] // a thread that never ends
    fn a_job_is_shared_and_waited_for() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        start();
        let mut shared = 0;
        for _ in 0..100 {
            let next = AtomicUsize::new(0);
            let done = AtomicUsize::new(0);
            let runs = AtomicUsize::new(0);
            run_shared(
                &|| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    while next.fetch_add(1, Ordering::Relaxed) < 1000 {
                        // Long enough (about a millisecond in all) for the helper to wake and
                        // take part, which it need not.
                        for _ in 0..1000 {
                            core::hint::spin_loop();
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                },
                false,
            );
            assert_eq!(done.load(Ordering::Relaxed), 1000);
            let runs = runs.load(Ordering::Relaxed);
            assert!(runs == 1 || (runs == 2 && available()));
            shared += usize::from(runs == 2);
        }
        assert_eq!(
            shared > 0,
            available(),
            "the helper takes part when there is one"
        );
    }

    /// A panic on the helper's share reaches the caller, after both are done; the helper
    /// serves the next job.
    #[test]
    #[cfg_attr(miri, ignore)] // a thread that never ends
    fn a_panic_on_the_helper_reaches_the_caller() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        start();
        if !available() {
            return;
        }
        let caller = std::thread::current().id();
        // The caller's share waits (a second at most) for the helper's to begin, so that
        // the job is not taken back untouched.
        let wait_for = |began: &AtomicUsize| {
            let t = std::time::Instant::now();
            while began.load(Ordering::SeqCst) == 0 && t.elapsed().as_secs() < 1 {
                std::thread::yield_now();
            }
        };
        let p = (0..10)
            .find_map(|_| {
                let began = AtomicUsize::new(0);
                catch_unwind(AssertUnwindSafe(|| {
                    run_shared(
                        &|| {
                            if std::thread::current().id() != caller {
                                began.store(1, Ordering::SeqCst);
                                panic!("the helper's share");
                            }
                            wait_for(&began);
                        },
                        false,
                    )
                }))
                .err()
            })
            .expect("the helper's panic is resumed here");
        assert_eq!(p.downcast_ref::<&str>(), Some(&"the helper's share"));
        let runs = (0..10)
            .map(|_| {
                let runs = AtomicUsize::new(0);
                run_shared(
                    &|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        if std::thread::current().id() == caller {
                            let t = std::time::Instant::now();
                            while runs.load(Ordering::SeqCst) < 2 && t.elapsed().as_secs() < 1 {
                                std::thread::yield_now();
                            }
                        }
                    },
                    false,
                );
                runs.load(Ordering::SeqCst)
            })
            .max();
        assert_eq!(runs, Some(2), "the helper serves the next jobs");
    }
}
