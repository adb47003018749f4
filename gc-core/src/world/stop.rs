//! The collector's side of the world lock: [`stop`] raises `stop`, makes every thread
//! fence (`fences::heavy_fence`) and waits for every slot to go inactive; the
//! [`StoppedWorld`] guard resumes the world when dropped.

use core::marker::PhantomData;
use core::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::local::{in_section, local, try_local};
use super::section::in_collection;
use super::{fences, handshake, lock, WORLD};

/// Does this thread hold the stopped world? `None` if its `Local` is destroyed.
pub(crate) fn holds_world() -> Option<bool> {
    try_local(|l| l.holds_world.get())
}

/// The stopped world, owned by this thread while the guard lives.
pub(crate) struct StoppedWorld {
    /// When the stop that succeeded was raised: from then on, a thread entering a section
    /// waits (the pause, as mutators feel it, starts here).
    pub(crate) raised_at: Instant,
    _collector: MutexGuard<'static, ()>,
    _not_send: PhantomData<*const ()>,
}

/// Stops the world. With `wait` (`collect()`), keeps trying until every section has
/// ended; without (an allocation), gives up (`None`) if another collection is running or
/// the sections do not drain within `budget`.
///
/// A waiting collector never holds the world up while it waits: if the sections do not
/// drain within a millisecond, it lowers `STOP` (the mutators it blocked go on), backs off
/// and tries again. Otherwise a thread holding a `GcCell` write guard while waiting for a
/// thread that wants to allocate would deadlock all three.
///
/// # Panics
/// If this thread holds a mutator section (it would wait for itself).
pub(crate) fn stop(wait: bool, budget: Duration, api: &str) -> Option<StoppedWorld> {
    stop_inner(wait, false, false, budget, api)
}

/// `stop(true, ..)` for a slice of a cycle (`HeapConfig::gc_slice`): the raised stop says
/// so from the start (`SHORT_STOP`, until it is lowered). A slice is short, so fing's own
/// threads wait for it to end before their next finalizer or destructor
/// (`world::yield_to_collector`), and a mutator that meets it waits awake for its shared
/// work (`help_through_stop`). Stops of whole collections are long: fing's threads run
/// beside them (back to back, a retiring heap's collections or `collect()` in a loop,
/// they would otherwise starve: finalizers ran one per collection), and mutators sleep.
pub(crate) fn stop_for_slice(budget: Duration, api: &str) -> Option<StoppedWorld> {
    stop_inner(true, false, true, budget, api)
}

/// `stop` without waiting (`wait: false`), except that a collector at work is waited for,
/// within `budget` (the sections then get 200 µs to drain): an allocating thread's assist
/// past its heap's goal
/// (`heap`'s `pace_slices`) takes its turn after the collector thread's slice instead of
/// giving up at once. Giving up let busy mutators allocate on while the collector thread
/// held the world lock (most of the time: its slices, and its waits for sections to
/// drain), and a heap in slices ran away.
/// Its stop is a slice's (`stop_for_slice`).
pub(crate) fn stop_in_turn(budget: Duration, api: &str) -> Option<StoppedWorld> {
    stop_inner(false, true, true, budget, api)
}

fn stop_inner(
    wait: bool,
    in_turn: bool,
    slice: bool,
    budget: Duration,
    api: &str,
) -> Option<StoppedWorld> {
    let start = Instant::now();
    match try_local(|l| l.holds_world.get()) {
        Some(true) => in_collection(api),
        Some(false) => {}
        None if wait => panic!(
            "{api}: called from a thread-local destructor after this thread's fing state \
             was destroyed: a collection needs it"
        ),
        None => return None,
    }
    if in_section() {
        assert!(
            !wait,
            "{api}: called while this thread holds a mutator section (a GcCell write guard); \
             drop the guard first, or the collection would wait for this thread forever"
        );
        return None;
    }
    let collector = if wait {
        lock(&WORLD.collector)
    } else {
        loop {
            match WORLD.collector.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
                // Another collector's slice is short: look again soon, without taking
                // the core it needs.
                Err(std::sync::TryLockError::WouldBlock) if in_turn && start.elapsed() < budget => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(std::sync::TryLockError::WouldBlock) => return None,
            }
        }
    };
    // An assist's patience is for its turn at the lock; its drain is short, as every
    // stop that may give up: a raised flag blocks every other thread's next section, and
    // an assist that drained for what its patience left held them for up to 20 ms (the
    // latency example's mutator stalled 20 ms once). A waiting stop keeps its whole
    // budget for each attempt.
    let budget = if in_turn {
        Duration::from_micros(200)
    } else {
        budget
    };
    // A failed attempt backs off 100 µs, doubling to 10 ms: short enough that `collect()`
    // behind a burst of sections starts soon after it, long enough that mutators blocked
    // by the raised flag get a time slice between attempts.
    let mut backoff = Duration::from_micros(100);
    fences::init();
    loop {
        // Let mutators woken by the last resume in first (bounded: 2 ms, so back-to-back
        // collections cannot starve them, nor a mutator that never wakes stall this one).
        let t = Instant::now();
        while WORLD.waiters.load(Ordering::SeqCst) > 0 && t.elapsed() < Duration::from_millis(2) {
            std::thread::yield_now();
        }
        let raised_at = Instant::now();
        super::SHORT_STOP.store(slice, Ordering::SeqCst);
        handshake::raise_stop(&handshake::STOP, fences::heavy_fence);
        if drained(budget) {
            local(|l| l.holds_world.set(true));
            return Some(StoppedWorld {
                raised_at,
                _collector: collector,
                _not_send: PhantomData,
            });
        }
        resume();
        if !wait {
            return None;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(10));
    }
}

/// Waits up to `budget` for every slot to be inactive.
fn drained(budget: Duration) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if handshake::all_idle(lock(&WORLD.slots).iter().map(|s| &s.active)) {
            return true;
        }
        if start.elapsed() > budget {
            return false;
        }
        // A section is short (an allocation, a drop): spin a little before yielding the
        // core to a mutator that may hold one.
        spins += 1;
        if spins < 32 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn resume() {
    let _g = lock(&WORLD.resume);
    super::SHORT_STOP.store(false, Ordering::SeqCst);
    handshake::STOP.store(false, Ordering::SeqCst);
    WORLD.resumed.notify_all();
}

impl Drop for StoppedWorld {
    fn drop(&mut self) {
        local(|l| l.holds_world.set(false));
        resume();
    }
}
