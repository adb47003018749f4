//! The world lock: mutators and the collector exclude each other.
//!
//! One per process, shared by every heap: a collection of any heap stops handle drops,
//! allocations and `GcCell` writes everywhere for its (short) pause. The shared side is a
//! *mutator section*; the exclusive side is the collector's stopped world.
//!
//! Implementation: each thread owns a [`Slot`] (its own cache line) with an `active`
//! flag. Entering a section stores `active = true` and then reads the global `stop` flag;
//! the collector stores `stop = true` and then reads every slot. This is Dekker's
//! handshake: with a full fence between each side's store and load, at least one side
//! sees the other, so a mutator never runs a section while the collector believes the
//! world is stopped. The handshake itself is `handshake` (checked by a loom model), its
//! fences `fences`. A mutator that sees `stop` backs out and waits on a condition variable
//! until the collector resumes the world. Sections nest per thread (a depth counter); only
//! the outermost touches the slot.
//!
//! The parts:
//! - `local`: a thread's fing state ([`Local`]: its slot, section depth, caches, dying
//!   list), reached through a thread-local, and made temporarily for a thread whose own
//!   is already destroyed;
//! - `section`: entering and leaving sections ([`enter`], [`with_section`]), and the
//!   panic of a fing call made from inside a collection;
//! - `stop`: the collector's side ([`stop`], [`StoppedWorld`]);
//! - `fences`: the handshake's fences.
//!
//! What needs a section: lowering a count (it must not fall while the collector counts),
//! allocating (the mcache and spans), writing through a `GcCell` (the collector reads
//! cells without locks). Dropping a handle outside a section has a path of its own that
//! never waits for a collection (`release`). Cloning a handle needs no section: a clone
//! only raises a count, and a thread can only clone handles to objects reachable from
//! handles it holds, which are roots for as long as it cannot drop them (that needs a
//! section); a raised count can only make the collector keep more.
//!
//! No user code runs inside a section or with the world stopped. An object whose count
//! reaches zero in a section and whose destructor is user code is only doomed, and its
//! thread runs the destructor as it leaves its outermost section
//! (`Local::leave_outermost` calls `mdrop`: one of the two calls this module makes
//! upward, the other being the thread-exit path, `Local::drop`, which applies the
//! thread's deferred drops through `release`). With the world stopped only `Trace` impls
//! run, on the collector's own thread or on a thread that takes a share of its passes (the
//! helper, or a mutator waiting out a slice's stop: `help_through_stop`); each of them
//! (`holds_world`) refuses every fing call that needs a section or the world, or could
//! wait for a thread that waits for the world (a `GcCell` borrow that finds a writer),
//! with a panic that says so (`in_collection`), instead of waiting for itself.
//!
//! Invariants: `stop` is true exactly while a collector owns or is acquiring the world;
//! while a collector owns it, no slot is active; a thread that holds a section cannot
//! stop the world (it would wait for itself): `collect()` panics there and
//! allocation-triggered collections are skipped.
//!
//! Lock order: `World::collector`, then `World::slots`; `World::resume` is taken alone.

mod fences;
mod local;
mod section;
mod stop;

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::deferred::{Ring, Spilled};
use crate::handshake;
use crate::spin::SpinLock;

/// Does a collector hold or want the world? (A long run of work inside a section checks it
/// to pause.)
pub(crate) use crate::handshake::stop_requested;
pub(crate) use local::{
    can_collect, in_section, local, try_local, with_local, with_temporary, Local,
};
pub(crate) use section::{assert_not_collecting, enter, pause, with_section, Section};
pub(crate) use stop::{holds_world, stop, stop_for_slice, stop_in_turn, StoppedWorld};

/// A thread's part of the handshake, and its deferred drops, which a collector applies.
#[repr(align(128))]
pub(crate) struct Slot {
    /// In a section (the handshake's mutator flag).
    active: AtomicBool,
    /// This thread's deferred handle drops (`release`).
    pub(crate) ring: Ring,
    /// Drops the thread held (`Local::held`), handed over after a batch: applied by the
    /// next collection with the world stopped, or by the thread at exit.
    pub(crate) spilled: SpinLock<Spilled>,
    /// Objects this thread shaded between a cycle's slices (`mgcwork::shade`): slots
    /// marked but not yet scanned, which the collector takes with the world stopped. A
    /// thread that exits hands what is left to `ORPHAN_GREYS`.
    pub(crate) grey: SpinLock<Vec<usize>>,
}

/// Grey objects of threads that exited during a cycle (`Local::drop`), for the collector.
pub(crate) static ORPHAN_GREYS: SpinLock<Vec<usize>> = SpinLock::new(Vec::new());

impl Slot {
    fn new() -> Slot {
        Slot {
            active: AtomicBool::new(false),
            ring: Ring::new(),
            spilled: SpinLock::new(Spilled::default()),
            grey: SpinLock::new(Vec::new()),
        }
    }

    /// The mutator's side of the handshake: publish `active`, then read `stop`. Returns
    /// whether the world is free (if not, `active` is withdrawn and the caller waits).
    #[inline]
    pub(crate) fn try_enter(&self) -> bool {
        handshake::try_enter(&self.active, &handshake::STOP, fences::mutator_fence)
    }

    /// `try_enter`, waiting while a collector holds or wants the world.
    #[inline]
    pub(crate) fn enter(&self) {
        while !self.try_enter() {
            wait_for_resume();
        }
    }

    /// Ends the section `try_enter` began.
    #[inline]
    pub(crate) fn leave(&self) {
        handshake::leave(&self.active);
    }
}

/// The process's one world.
struct World {
    /// Mutators waiting for the world to resume: a collector lets them in before it stops
    /// the world again, so back-to-back collections cannot starve them.
    waiters: AtomicUsize,
    /// Every thread's slot (registered by `Local::new`, removed by its drop).
    slots: Mutex<Vec<Arc<Slot>>>,
    /// With `resumed`: where mutators wait for the world to resume.
    resume: Mutex<()>,
    resumed: Condvar,
    /// Held by the collector that owns (or is acquiring) the world: one at a time.
    collector: Mutex<()>,
}

static WORLD: World = World {
    waiters: AtomicUsize::new(0),
    slots: Mutex::new(Vec::new()),
    resume: Mutex::new(()),
    resumed: Condvar::new(),
    collector: Mutex::new(()),
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves no broken state behind (they guard
    // lists and handshakes, not data), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every thread's slot, for the collector (world stopped) to apply their deferred drops.
pub(crate) fn for_each_slot(_world: &StoppedWorld, f: impl FnMut(&Arc<Slot>)) {
    lock(&WORLD.slots).iter().for_each(f);
}

/// The stop raised is a slice's (`stop_for_slice`, `stop_in_turn`): set as it is raised,
/// cleared as it is lowered.
static SHORT_STOP: AtomicBool = AtomicBool::new(false);

/// Between two pieces of user code on fing's own threads (a finalizer, a destructor):
/// waits while the world is stopped for a slice. Those threads run outside sections, so
/// a stop does not wait for them; but a slice that shares the machine's cores with them
/// is preempted (on two cores, the finalizer thread, the drop thread and the collector
/// are three), and every mutator waits for the whole stop. Go stops its finalizer
/// goroutine with the rest. Whole collections are long, and these threads run beside
/// them as before: otherwise the finalizers of a heap collected again and again (a
/// retiring heap's) would run one per collection.
#[inline]
pub(crate) fn yield_to_collector() {
    if SHORT_STOP.load(Ordering::Relaxed) {
        wait_short_stop();
    }
}

/// Does this thread hold the world for a slice (`stop_for_slice`)? Work it
/// hands to fing's threads then waits for the world to resume before waking them
/// (`Handoff::push_quiet`); in a whole collection they start on it at once, on the core
/// the stopped mutators leave free (the soak in one stop did 10 % fewer rounds when they
/// waited).
pub(crate) fn in_short_stop() -> bool {
    SHORT_STOP.load(Ordering::Relaxed) && holds_world() == Some(true)
}

/// Not counted in `waiters`: a stop lets woken mutators in first, and these threads need
/// no such turn (a short stop's end wakes them, and the next stop need not wait for them).
#[cold]
fn wait_short_stop() {
    wait_while(
        || SHORT_STOP.load(Ordering::SeqCst) && handshake::STOP.load(Ordering::SeqCst),
        Duration::from_millis(1),
    );
}

/// A mutator spins through a slice's stop, helping (`help_through_stop`).
static HELPING: AtomicBool = AtomicBool::new(false);

/// Is a mutator waiting awake through a slice's stop, to take the jobs it shares
/// (`mgchelp`)?
pub(crate) fn helping() -> bool {
    HELPING.load(Ordering::Relaxed)
}

#[cold]
fn wait_for_resume() {
    WORLD.waiters.fetch_add(1, Ordering::SeqCst);
    help_through_stop();
    wait_while(
        || handshake::STOP.load(Ordering::SeqCst),
        Duration::from_millis(10),
    );
    WORLD.waiters.fetch_sub(1, Ordering::SeqCst);
}

/// A mutator that meets a slice's stop: one at a time (the collector's thread needs the
/// other core), it stays awake through the stop, for at most a millisecond, running the
/// slice's passes that the collector shares (`mgchelp::help`), and sees the resume at
/// once. It stops waiting awake after 100 µs if no job came (a slice's other steps are
/// not shared); once one did, it stays for the stop (the slice may share another pass,
/// and the helper thread, asleep, would take it a wake-up late: the slice's p99 went
/// from 0.4 to 0.8 ms on two threads when it left after 100 µs without a next job).
/// Only a program's own threads, outside thread exit, and only at a stop raised for a
/// slice (`SHORT_STOP`: a whole collection's stop is long and the helper thread takes
/// its jobs, so a mutator that meets one goes straight to sleep, as before slices shared
/// their work). `Trace` impls then run on a thread stopped at its next section, as they
/// may on any thread.
fn help_through_stop() {
    if !crate::mgchelp::available()
        || ROLE.try_with(Cell::get) != Ok(Role::Mutator)
        || !SHORT_STOP.load(Ordering::SeqCst)
        || try_local(|l| l.is_temporary() || l.exiting.get()) != Some(false)
        || HELPING.swap(true, Ordering::Acquire)
    {
        return;
    }
    let began = std::time::Instant::now();
    let mut took = false;
    let mut spins = 0u32;
    while handshake::STOP.load(Ordering::SeqCst) && SHORT_STOP.load(Ordering::Relaxed) {
        let waited = began.elapsed();
        if waited > Duration::from_millis(1) || (!took && waited > Duration::from_micros(100)) {
            break;
        }
        if crate::mgchelp::help() {
            took = true;
            continue;
        }
        spins += 1;
        if spins.is_multiple_of(64) {
            // Lets fing's other threads (a finalizer, a destructor) have the core.
            std::thread::yield_now();
        } else {
            core::hint::spin_loop();
        }
    }
    HELPING.store(false, Ordering::Release);
}

/// Waits on `resumed` while `stopped` holds, looking again at least every `every` (a
/// resume notifies, but a wake-up may be missed between the look and the wait).
fn wait_while(stopped: impl Fn() -> bool, every: Duration) {
    let mut g = lock(&WORLD.resume);
    while stopped() {
        g = WORLD
            .resumed
            .wait_timeout(g, every)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// What a thread is to fing: its own two threads behave differently from mutators.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    /// Any thread of the program.
    Mutator,
    /// `fing-finalizer` (mfinal): runs finalizers only; what dies there is destroyed on
    /// the drop thread.
    Finalizer,
    /// `fing-drop` (mdrop): runs the destructors handed to it.
    Drop,
}

thread_local! {
    /// This thread's `Role` (constant-initialised, no destructor: readable at thread exit).
    static ROLE: Cell<Role> = const { Cell::new(Role::Mutator) };
}

/// This thread's role.
#[inline]
pub(crate) fn role() -> Role {
    ROLE.with(Cell::get)
}

/// Makes this thread one of fing's own (at its start).
pub(crate) fn set_role(r: Role) {
    ROLE.with(|c| c.set(r));
}
