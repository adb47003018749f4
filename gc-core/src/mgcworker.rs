//! fing's collector thread, `fing-gc` (Go's background mark workers, one of them): it runs
//! the pacer's cycles in slices (`HeapConfig::gc_slice`), and sleeps after each for as
//! long as the slice took, so that the mutators keep at least half the time. Allocating
//! threads that outrun it help (`heap`'s assists), under the same rule ([`assist_due`]).
//!
//! The thread starts at the first request and lives for the rest of the process, idle on
//! a condition variable between cycles. It takes the world like any collector
//! (`world::stop`), so it never runs beside another collection.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::mheap::{lock, MHeap};

/// One slice for a heap: returns whether the cycle it worked on is over (or there is no
/// work to do). Given by the layer that runs slices (`heap`).
pub(crate) type Step = fn(&'static MHeap) -> bool;

/// The heap a cycle is wanted for, and how to run its slices.
static WANTED: Mutex<Option<(&'static MHeap, Step)>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();
/// A request is pending or being served (the allocation path's cheap test).
static REQUESTED: AtomicBool = AtomicBool::new(false);
static STARTED: OnceLock<()> = OnceLock::new();

/// When the last slice ended (nanoseconds since `epoch()`), and how long it took.
static LAST_END: AtomicU64 = AtomicU64::new(0);
static LAST_LEN: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Asks the collector thread to run a cycle of `heap` in slices (`step`), unless it is at
/// one already.
pub(crate) fn request(heap: &'static MHeap, step: Step) {
    if REQUESTED.load(Ordering::Relaxed) {
        return;
    }
    let mut w = lock(&WANTED);
    if w.is_some() {
        return;
    }
    *w = Some((heap, step));
    REQUESTED.store(true, Ordering::Relaxed);
    drop(w);
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("fing-gc".into())
            .spawn(run)
            .expect("fing: could not start the collector thread");
    });
    WAKE.notify_one();
}

/// The collector thread.
fn run() {
    loop {
        let (heap, step) = {
            let mut w = lock(&WANTED);
            loop {
                if let Some(x) = *w {
                    break x;
                }
                w = WAKE.wait(w).unwrap_or_else(|e| e.into_inner());
            }
        };
        loop {
            // A `Trace` impl that panics in a slice abandons its cycle (mgc's `guarded`) and
            // unwinds to here: this thread goes on serving the pacer (it died before, and
            // no slice ran again in the process).
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(heap)))
                .unwrap_or(true);
            if done {
                break;
            }
            std::thread::sleep(Duration::from_nanos(LAST_LEN.load(Ordering::Relaxed)));
        }
        *lock(&WANTED) = None;
        REQUESTED.store(false, Ordering::Relaxed);
    }
}

/// A slice that took `len` just ended.
pub(crate) fn slice_ended(len: Duration) {
    LAST_LEN.store(len.as_nanos() as u64, Ordering::Relaxed);
    LAST_END.store(epoch().elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// May an allocating thread run a slice now: has the time since the last slice ended
/// been at least as long as that slice (mutators keep half the time)?
pub(crate) fn assist_due() -> bool {
    let since =
        (epoch().elapsed().as_nanos() as u64).saturating_sub(LAST_END.load(Ordering::Relaxed));
    since >= LAST_LEN.load(Ordering::Relaxed)
}
