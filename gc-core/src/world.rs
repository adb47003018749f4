//! The world lock (DESIGN §4): mutators and the collector exclude each other.
//!
//! One per process, shared by every heap: a collection of any heap stops handle drops,
//! allocations and `GcCell` writes everywhere for its (short) pause. The shared side is a
//! *mutator section*; the exclusive side is the collector's stopped world.
//!
//! Implementation: each thread owns a slot (its own cache line) with an `active` flag.
//! Entering a section stores `active = true` and then reads the global `STOP` flag; the
//! collector stores `STOP = true` and then reads every slot. This is Dekker's handshake:
//! with a full fence between each side's store and load, at least one side sees the other,
//! so a mutator never runs a section while the collector believes the world is stopped.
//! The fences are asymmetric where the OS allows (Linux `membarrier`, private expedited):
//! the mutator's side is a compiler fence only, and the collector's `membarrier` call
//! makes every running thread execute a full fence, which is what the mutator's side
//! needed. Elsewhere (or under Miri and loom) both sides use `fence(SeqCst)`; the mutator
//! then pays one `mfence` per outermost section. The handshake itself is `handshake`,
//! which the loom model checks. A mutator that sees `STOP`
//! backs out and waits on a condition variable until the collector resumes the world.
//! Sections nest per thread (a depth counter); only the outermost touches the slot.
//!
//! What needs a section: lowering a count (it must not fall while the collector counts),
//! allocating (the mcache and spans), writing through a `GcCell` (the collector reads
//! cells without locks; freeing at count zero). Dropping a handle outside a section
//! enters one of its own if the world is free (`try_enter`: never waiting) and lowers the
//! count there (`mfree`); while a collector holds or wants the world it only records the
//! drop in the thread's ring (`deferred`), which the thread applies in its next such
//! section or when the ring is full, and every collection applies with the world stopped.
//! A long chain of frees in a drop's own section pauses it for a waiting collector
//! (`pause`). The finalizer thread, which
//! runs finalizers while their collection is still going, does not wait there: with its
//! ring full and the world stopped it holds the drop in a plain vector, applied with its
//! ring in its next section or handed after each batch to its slot's spill, which the
//! next collection applies with the ring. Cloning a handle needs no section: a clone only
//! raises a count, and
//! a thread can only clone handles to objects reachable from handles it holds, which are
//! roots for as long as it cannot drop them (that needs a section); a raised count can only
//! make the collector keep more.
//!
//! No user code runs inside a section: an object whose count reaches zero there and whose
//! destructor is user code is only doomed (`mdrop`), and its thread runs the destructor
//! as it leaves its outermost section (`Local::leave_outermost`). Nor does any with the
//! world stopped, but `Trace` impls: the collector's own thread (`holds_world`) refuses
//! every fing call that needs a section or the world, or could wait for a thread that
//! waits for the world (a `GcCell` borrow that finds a writer), with a panic that says
//! so (`in_collection`), instead of waiting for itself.
//!
//! A thread's `Local` is a thread-local, destroyed at thread exit, maybe before other
//! thread-locals that hold handles (first touched before fing's). What such a destructor
//! does (drop a handle, allocate, borrow a cell) runs with a temporary `Local` of its own
//! (`with_temporary`): a slot registered for the call and retired after, so nothing is
//! lost and nothing panics.
//!
//! Invariants: `STOP` is true exactly while a collector owns or is acquiring the world;
//! while a collector owns it, no slot is active; a thread that holds a section cannot
//! stop the world (it would wait for itself): `collect()` panics there and
//! allocation-triggered collections are skipped.

use core::cell::Cell;
use core::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::deferred::Ring;
use crate::handshake;
use crate::mspan::Span;
use crate::spin::SpinLock;

#[repr(align(128))]
struct Slot {
    active: AtomicBool,
    /// This thread's deferred handle drops (see `deferred`).
    ring: Ring,
    /// Drops the thread held (`Local::held`), handed over after a batch: applied by the
    /// next collection with the world stopped, or by the thread at exit.
    spilled: SpinLock<Spilled>,
}

/// Objects whose counts are to be lowered by one each.
struct Spilled(Vec<core::ptr::NonNull<u8>>);

// SAFETY: each entry is a count on a heap object that some thread must lower; whichever
// thread holds the world or the owner's section does it (`drop_count` is atomic).
unsafe impl Send for Spilled {}

impl Slot {
    /// Applies the spill. At the owner's exit, or with the world stopped.
    fn drain_spilled(&self) {
        let spilled = core::mem::take(&mut self.spilled.lock().0);
        spilled.into_iter().for_each(crate::mgcsweep::drop_count);
    }
}

struct World {
    stop: AtomicBool,
    /// Mutators waiting for the world to resume: a collector lets them in before it stops
    /// the world again, so back-to-back collections cannot starve them.
    waiters: core::sync::atomic::AtomicUsize,
    slots: Mutex<Vec<Arc<Slot>>>,
    resume: Mutex<()>,
    resumed: Condvar,
    collector: Mutex<()>,
}

static WORLD: World = World {
    stop: AtomicBool::new(false),
    waiters: core::sync::atomic::AtomicUsize::new(0),
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

/// 0: not decided yet, 1: asymmetric (membarrier), 2: symmetric (SeqCst).
static FENCES: AtomicU8 = AtomicU8::new(0);

#[cfg(all(target_os = "linux", not(miri), not(loom)))]
fn try_membarrier() -> bool {
    const QUERY: libc::c_long = 0;
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    // SAFETY: membarrier's query and register commands take no pointers and have no
    // effect beyond the return value and the registration.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
    supported >= 0
        && supported & PRIVATE_EXPEDITED != 0
        // SAFETY: as above.
        && unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) } == 0
}

#[cfg(not(all(target_os = "linux", not(miri), not(loom))))]
fn try_membarrier() -> bool {
    false
}

fn init_fences() {
    if FENCES.load(Ordering::Acquire) == 0 {
        let mode = if try_membarrier() { 1 } else { 2 };
        let _ = FENCES.compare_exchange(0, mode, Ordering::AcqRel, Ordering::Acquire);
    }
}

#[inline]
fn asymmetric() -> bool {
    FENCES.load(Ordering::Relaxed) == 1
}

/// The mutator's side of the handshake's fence: a compiler fence when the collector's
/// `membarrier` supplies the rest, a full fence otherwise.
#[inline]
fn mutator_fence() {
    if asymmetric() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The collector's side of the handshake: a full fence on every thread of the process.
fn heavy_fence() {
    if asymmetric() {
        #[cfg(all(target_os = "linux", not(miri), not(loom)))]
        {
            const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
            // SAFETY: the process registered for private expedited membarrier (init_fences).
            let r = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) };
            assert!(r == 0, "fing::world: membarrier failed after registration");
        }
    } else {
        fence(Ordering::SeqCst);
    }
}

impl Slot {
    /// The mutator's side of the handshake: publish `active`, then read `STOP`. Returns
    /// whether the world is free (if not, `active` is withdrawn and the caller waits).
    #[inline]
    fn try_enter(&self) -> bool {
        handshake::try_enter(&self.active, &WORLD.stop, mutator_fence)
    }

    #[inline]
    fn enter(&self) {
        while !self.try_enter() {
            wait_for_resume();
        }
    }
}

pub(crate) struct Local {
    slot: Arc<Slot>,
    depth: Cell<u32>,
    holds_world: Cell<bool>,
    /// Id of the heap being swept by this thread (0: none).
    sweeping: Cell<u64>,
    /// This thread's allocation caches, one per heap it allocated from. Boxed so that each
    /// keeps its address: the heap's registry points at it.
    #[allow(clippy::vec_box)]
    pub(crate) caches: core::cell::UnsafeCell<Vec<Box<crate::mcache::MCache>>>,
    /// Set on a thread that must not wait for a collection to drop handles (the finalizer
    /// thread): with its ring full and the world stopped, drops go to its slot's
    /// `spilled` instead.
    spills: Cell<bool>,
    /// Inside a chain of frees at count zero (`mfree`), and the objects it has yet to
    /// free.
    pub(crate) freeing: Cell<bool>,
    /// Set while the current section is one `drop_as_mutator` opened for itself, which a
    /// chain of frees may leave and enter again (`pause`).
    pub(crate) pausable: Cell<bool>,
    pub(crate) chain: core::cell::UnsafeCell<Vec<(core::ptr::NonNull<u8>, &'static Span)>>,
    /// Objects whose count reached zero on this thread and whose destructors run user
    /// code: destroyed (`mdrop::destroy`) as soon as the thread is outside every section
    /// (at the end of the drop's own section, or of the `GcCell` guard's it was made in).
    pub(crate) dying: core::cell::UnsafeCell<Vec<crate::mdrop::Doomed>>,
    /// Set while this thread runs destructors (`mdrop::destroy`): the end of a section
    /// leaves new dying objects to that loop instead of starting another.
    pub(crate) destroying: Cell<bool>,
    /// Drops a thread that `spills` made with its ring full while the world was stopped:
    /// applied with its ring in its next section of its own, or handed to its slot's
    /// spill when it finishes a batch (`flush_held`), or at its exit. (A plain vector: one lock per
    /// batch, not per drop. A collection that runs meanwhile does not see them, and
    /// keeps their objects: a count too high never frees anything early.)
    held: core::cell::UnsafeCell<Vec<core::ptr::NonNull<u8>>>,
    /// A temporary `Local` (`with_temporary`, `enter_temporary`).
    temporary: bool,
}

impl Local {
    fn new() -> Local {
        init_fences();
        let slot = Arc::new(Slot {
            active: AtomicBool::new(false),
            ring: Ring::new(),
            spilled: SpinLock::new(Spilled(Vec::new())),
        });
        lock(&WORLD.slots).push(slot.clone());
        Local {
            slot,
            depth: Cell::new(0),
            holds_world: Cell::new(false),
            sweeping: Cell::new(0),
            caches: core::cell::UnsafeCell::new(Vec::new()),
            spills: Cell::new(false),
            freeing: Cell::new(false),
            pausable: Cell::new(false),
            chain: core::cell::UnsafeCell::new(Vec::new()),
            dying: core::cell::UnsafeCell::new(Vec::new()),
            destroying: Cell::new(false),
            held: core::cell::UnsafeCell::new(Vec::new()),
            temporary: false,
        }
    }

    /// A temporary `Local`, boxed: `CURRENT` points at it while it lives.
    fn temporary() -> Box<Local> {
        let mut l = Box::new(Local::new());
        l.temporary = true;
        l
    }

    /// Leaves this thread's outermost section, then destroys what died in it (user code
    /// runs outside every section: see `mdrop`).
    #[inline]
    pub(crate) fn leave_outermost(&self) {
        self.depth.set(0);
        handshake::leave(&self.slot.active);
        if self.has_dying() {
            self.destroy_dying();
        }
    }

    /// Are objects waiting for their destructors on this thread?
    #[inline]
    pub(crate) fn has_dying(&self) -> bool {
        // SAFETY: `dying` is this thread's, and no reference to it outlives a call.
        !unsafe { &*self.dying.get() }.is_empty()
    }

    /// Runs the dying objects' destructors, unless this thread is already doing so further
    /// up its stack (that loop takes them).
    #[cold]
    #[inline(never)]
    fn destroy_dying(&self) {
        if self.destroying.get() {
            return;
        }
        if crate::mfinal::on_finalizer_thread() {
            // The finalizer thread runs finalizers only: a destructor there could not
            // wait for finalizers, and would hold up the ones queued behind it.
            crate::mdrop::destroy_dying_later(self);
        } else {
            crate::mdrop::destroy(self, Vec::new());
        }
    }

    /// Takes the next dying object, if any.
    pub(crate) fn pop_dying(&self) -> Option<crate::mdrop::Doomed> {
        // SAFETY: as in `has_dying`.
        unsafe { &mut *self.dying.get() }.pop()
    }

    /// Adds a dying object (in a section: see `mfree`).
    pub(crate) fn push_dying(&self, d: crate::mdrop::Doomed) {
        // SAFETY: as in `has_dying`.
        unsafe { &mut *self.dying.get() }.push(d);
    }

    /// Enters a section on this thread's own slot (depth 0 to 1), waiting while a
    /// collector holds the world.
    pub(crate) fn enter_outermost(&self) {
        debug_assert_eq!(self.depth.get(), 0);
        self.slot.enter();
        self.depth.set(1);
    }

    /// `enter_outermost` if the world is free now; `false` (nothing entered) if a
    /// collector holds or wants it.
    pub(crate) fn try_enter_outermost(&self) -> bool {
        debug_assert_eq!(self.depth.get(), 0);
        let entered = self.slot.try_enter();
        if entered {
            self.depth.set(1);
        }
        entered
    }

    /// Is this a temporary `Local` (its thread's own is destroyed)?
    pub(crate) fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Applies the ring's drops, the spill's and the held ones (thread exit), in this
    /// thread's section: what dies is freed now.
    fn drain_drops(&self) {
        self.slot.ring.drain(|o| crate::mfree::lower(self, o));
        let spilled = core::mem::take(&mut self.slot.spilled.lock().0);
        spilled
            .into_iter()
            .chain(self.take_held())
            .for_each(|o| crate::mfree::lower(self, o));
    }

    /// The held drops, taken out.
    fn take_held(&self) -> Vec<core::ptr::NonNull<u8>> {
        // SAFETY: `held` is this thread's, and no reference to it outlives a call.
        core::mem::take(unsafe { &mut *self.held.get() })
    }

    /// Has this thread held drops?
    fn holds_drops(&self) -> bool {
        // SAFETY: as in `take_held`.
        !unsafe { &*self.held.get() }.is_empty()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // Thread exit (or the end of a temporary `Local`): apply the deferred drops, run
        // the destructors they call for, and hand the caches' spans back, in sections of
        // this slot. `CURRENT` still points here meanwhile, so what those destructors do
        // (drop more handles: a long list) goes through this `Local`, and its dying list,
        // in constant stack; it is cleared last.
        self.enter_outermost();
        self.drain_drops();
        self.leave_outermost();
        let caches = core::mem::take(self.caches.get_mut());
        self.enter_outermost();
        for c in caches {
            c.retire();
        }
        self.leave_outermost();
        lock(&WORLD.slots).retain(|s| !Arc::ptr_eq(s, &self.slot));
        if self.is_current() {
            CURRENT.with(|c| c.set(core::ptr::null()));
        }
    }
}

impl Local {
    /// Is this the thread's `LOCAL` (not a temporary one)?
    fn is_current(&self) -> bool {
        core::ptr::eq(CURRENT.with(Cell::get), self)
    }
}

/// Runs `f` with a temporary `Local`, for a thread whose `LOCAL` is already destroyed (a
/// handle dropped, or a value allocated, by another thread-local's destructor at thread
/// exit). It registers a slot of its own for the call and retires it after: costly, and
/// only ever on that path.
///
/// The temporary is `CURRENT` while it lives, so that the fing calls its work makes (the
/// destructors it runs drop handles) use it rather than make temporaries of their own,
/// one inside the other.
#[cold]
#[inline(never)]
fn with_temporary<R>(f: impl FnOnce(&Local) -> R) -> R {
    // Boxed: it must not move while `CURRENT` points at it (its drop included).
    let l = Local::temporary();
    CURRENT.with(|c| c.set(&*l));
    let r = f(&l);
    drop(l);
    r
}

thread_local! {
    static LOCAL: Local = Local::new();
    /// The `Local` this thread uses: `LOCAL`'s address from its first use until its
    /// destructor ends, or a temporary's while one lives (after `LOCAL` is gone), null
    /// otherwise: a thread-local with a constant initialiser and no destructor, which the
    /// hot paths read with one load (`LOCAL` itself costs a lazy-initialisation check and
    /// a call).
    static CURRENT: Cell<*const Local> = const { Cell::new(core::ptr::null()) };
}

/// Runs `f` with this thread's `Local`; `None` once it has been destroyed (thread exit).
#[inline(always)]
fn try_local<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return try_local_slow(f);
    }
    // SAFETY: `CURRENT` holds the address of a live `Local`: `LOCAL`'s, set on its first
    // use (below) and cleared last thing in its `Local::drop`, or a boxed temporary's
    // (`with_temporary`, `enter_temporary`), cleared by its drop, before its box is freed.
    Some(f(unsafe { &*p }))
}

#[cold]
#[inline(never)]
fn try_local_slow<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    LOCAL
        .try_with(|l| {
            CURRENT.with(|c| c.set(l));
            f(l)
        })
        .ok()
}

/// Runs `f` with this thread's `Local`.
///
/// # Panics
/// During or after the thread-local's destruction.
#[inline(always)]
fn local<R>(f: impl FnOnce(&Local) -> R) -> R {
    try_local(f).expect("fing::world: the thread's world slot is already destroyed")
}

/// A mutator section, held while the guard lives.
pub(crate) struct Section {
    /// The temporary `Local` of a thread whose own is destroyed (see `with_temporary`).
    temp: Option<Box<Local>>,
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Panics for a fing call made while this thread holds the stopped world: from a `Trace`
/// impl, the only user code the collector runs with the world stopped.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn in_collection(api: &str) -> ! {
    panic!(
        "{api}: called from inside a collection (a Trace impl runs while the world is \
         stopped, and must not call into fing: it would wait for itself or change what \
         the collector is reading)"
    )
}

/// Enters a mutator section (waits while a collector owns the world). `api` names the
/// caller for the panic on the collector's own thread (see `in_collection`).
#[inline]
pub(crate) fn enter(api: &str) -> Section {
    let entered = try_local(|l| {
        if l.holds_world.get() {
            in_collection(api);
        }
        let d = l.depth.get();
        if d == 0 {
            l.slot.enter();
        }
        l.depth.set(d + 1);
    });
    match entered {
        Some(()) => Section {
            temp: None,
            _not_send: core::marker::PhantomData,
        },
        None => enter_temporary(),
    }
}

/// `enter` on a thread whose `Local` is destroyed: a section of a temporary one, which
/// the guard owns.
#[cold]
#[inline(never)]
fn enter_temporary() -> Section {
    let l = Local::temporary();
    // `CURRENT` until the guard drops it (see `with_temporary`).
    CURRENT.with(|c| c.set(&*l));
    l.enter_outermost();
    Section {
        temp: Some(l),
        _not_send: core::marker::PhantomData,
    }
}

impl Drop for Section {
    #[inline]
    fn drop(&mut self) {
        if let Some(t) = &self.temp {
            t.leave_outermost();
            return;
        }
        // `try_local`: the guard was made with this thread's `Local`, which outlives it
        // unless another thread-local's destructor holds the guard; then the section
        // ended with the `Local` (`Local::drop` leaves it).
        let _ = try_local(|l| {
            let d = l.depth.get() - 1;
            if d == 0 {
                l.leave_outermost();
            } else {
                l.depth.set(d);
            }
        });
    }
}

#[cold]
fn wait_for_resume() {
    WORLD.waiters.fetch_add(1, Ordering::SeqCst);
    let mut g = lock(&WORLD.resume);
    while WORLD.stop.load(Ordering::SeqCst) {
        g = WORLD
            .resumed
            .wait_timeout(g, Duration::from_millis(10))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(g);
    WORLD.waiters.fetch_sub(1, Ordering::SeqCst);
}

/// Runs `f` inside a mutator section with this thread's `Local`, in one thread-local
/// access (the allocation path; `api` names it for the panic inside a collection).
#[inline]
pub(crate) fn with_section<R>(api: &str, f: impl FnOnce(&Local) -> R) -> R {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return with_section_slow(api, f);
    }
    // SAFETY: as in `try_local`.
    let l = unsafe { &*p };
    let outermost = !l.holds_world.get() && l.depth.get() == 0;
    if outermost {
        l.slot.enter();
        l.depth.set(1);
    } else if l.depth.get() == 0 {
        // The collector's thread (it never has a section: `enter` refuses it one).
        in_collection(api);
    }
    // Allocation drops no handle, so nothing dies in this section: the plain leave, not
    // `leave_outermost`'s look at the dying list (which holds objects here only when a
    // destructor allocates: `destroy`'s loop, further up the stack, takes them).
    struct Leave<'a>(&'a Local, bool);
    impl Drop for Leave<'_> {
        #[inline]
        fn drop(&mut self) {
            if self.1 {
                debug_assert!(
                    !self.0.has_dying() || self.0.destroying.get(),
                    "fing::world: an allocation doomed an object"
                );
                self.0.depth.set(0);
                handshake::leave(&self.0.slot.active);
            }
        }
    }
    let _leave = Leave(l, outermost);
    f(l)
}

/// `with_section` before the thread's first use of its `Local` (made here), or after its
/// destruction (a temporary one).
#[cold]
#[inline(never)]
fn with_section_slow<R>(api: &str, f: impl FnOnce(&Local) -> R) -> R {
    if try_local(|_| ()).is_some() {
        return with_section(api, f);
    }
    with_temporary(|l| {
        l.enter_outermost();
        let r = f(l);
        l.leave_outermost();
        r
    })
}

/// Drops a handle's count on `obj` on a mutator thread: at once if this thread is in a
/// section, or in a section of its own if the world is free; else (a collector holds or
/// wants the world) recorded in this thread's ring (`deferred`), so that a drop never
/// waits for a collection. `false`: this thread holds the world, or its `Local` is gone
/// (`release_slow` in mgcsweep).
#[inline]
pub(crate) fn drop_as_mutator(obj: core::ptr::NonNull<u8>) -> bool {
    try_local(|l| {
        if l.holds_world.get() {
            return false;
        }
        if l.depth.get() > 0 {
            crate::mfree::lower(l, obj);
        } else if l.slot.try_enter() {
            l.depth.set(1);
            if !l.slot.ring.is_empty() {
                apply_deferred(l);
            }
            // This section is the drop's own: a long chain of frees may pause it for
            // a waiting collector (not on a thread that must never wait for one).
            l.pausable.set(!l.spills.get());
            crate::mfree::lower(l, obj);
            l.pausable.set(false);
            l.leave_outermost();
        } else {
            defer(l, obj);
        }
        true
    })
    .unwrap_or(false)
}

/// If this thread holds the stopped world: the heap it is sweeping (0: none). `None` if
/// it does not, or if its `Local` is destroyed.
pub(crate) fn collector_sweeping() -> Option<u64> {
    try_local(|l| l.holds_world.get().then(|| l.sweeping.get())).flatten()
}

/// Drops a count on a thread whose `Local` is destroyed (a handle in another
/// thread-local, dropped at thread exit): in a temporary `Local`'s section, so the object
/// is freed and its destructor run now, as for any other drop.
#[cold]
#[inline(never)]
pub(crate) fn drop_orphan(obj: core::ptr::NonNull<u8>) {
    with_temporary(|l| {
        l.enter_outermost();
        crate::mfree::lower(l, obj);
        l.leave_outermost();
    });
}

/// Applies the drops `l` deferred while a collector had the world (its ring, and what it
/// held past it), in its section: what they free is freed at once rather than at the next
/// sweep. (Out of line: the drop path stays small.)
#[cold]
#[inline(never)]
pub(crate) fn apply_deferred(l: &Local) {
    l.slot.ring.drain(|o| crate::mfree::lower(l, o));
    if l.holds_drops() {
        l.take_held()
            .into_iter()
            .for_each(|o| crate::mfree::lower(l, o));
    }
}

/// Records a drop in `l`'s ring; if the ring is full, applies it first in a section.
#[cold]
fn defer(l: &Local, obj: core::ptr::NonNull<u8>) {
    if !l.slot.ring.push(obj) {
        // Full: apply the ring in one section, then record. A thread that spills does not
        // wait for a running collection: the drop goes to its slot's spill, for the next
        // collection (which also keeps the spill off this thread's path: a burst of it
        // would be applied on cold headers).
        let entered = if l.spills.get() {
            l.slot.try_enter()
        } else {
            l.slot.enter();
            true
        };
        if !entered {
            // SAFETY: as in `Local::take_held`.
            unsafe { &mut *l.held.get() }.push(obj);
            return;
        }
        l.depth.set(1);
        l.slot.ring.drain(|o| crate::mfree::lower(l, o));
        l.leave_outermost();
        let pushed = l.slot.ring.push(obj);
        debug_assert!(pushed, "fing::world: a drained ring is full");
    }
}

/// Does a collector hold or want the world? (A long run of work inside a section checks it
/// to pause.)
#[inline]
pub(crate) fn stop_requested() -> bool {
    WORLD.stop.load(Ordering::Relaxed)
}

/// Leaves `l`'s section and enters it again, letting a waiting collector run in between:
/// `pin(true)` runs before leaving, `pin(false)` after entering again. Only in a section
/// that is `pausable`, whose owner holds no state the collector must not see.
pub(crate) fn pause(l: &Local, pin: impl Fn(bool)) {
    debug_assert!(l.pausable.get() && l.depth.get() == 1);
    pin(true);
    l.depth.set(0);
    handshake::leave(&l.slot.active);
    l.slot.enter();
    l.depth.set(1);
    pin(false);
}

/// Hands the drops this thread held (see `Local::held`) to its slot's spill, for the next
/// collection to apply: the finalizer thread does it after each batch, before it can be
/// seen idle, so that a collection after `wait_finalizers` sees every drop of the
/// finalizers that ran.
pub(crate) fn flush_held() {
    local(|l| {
        if l.holds_drops() {
            let mut held = l.take_held();
            l.slot.spilled.lock().0.append(&mut held);
        }
    });
}

/// Makes this thread's handle drops never wait for a running collection (see `Local`'s
/// `spills`).
pub(crate) fn spill_drops() {
    local(|l| l.spills.set(true));
}

/// Applies every thread's deferred drops. Collector only, world stopped.
pub(crate) fn drain_deferred(_world: &StoppedWorld) {
    for s in lock(&WORLD.slots).iter() {
        s.ring.drain(crate::mgcsweep::drop_count);
        s.drain_spilled();
    }
}

/// Does this thread hold a mutator section?
pub(crate) fn in_section() -> bool {
    try_local(|l| l.depth.get() > 0).unwrap_or(false)
}

/// Could this thread run a collection now: it has its fing state, holds no section and
/// is not the collector?
pub(crate) fn can_collect() -> bool {
    try_local(|l| l.depth.get() == 0 && !l.holds_world.get()).unwrap_or(false)
}

/// Runs `f` with this thread's `Local`, or a temporary one if it is destroyed.
pub(crate) fn with_local<R>(f: impl FnOnce(&Local) -> R) -> R {
    // `try_local` consumes `f` only when it has a `Local`; keep it for the fallback.
    let mut f = Some(f);
    match try_local(|l| (f.take().expect("once"))(l)) {
        Some(r) => r,
        None => with_temporary(f.take().expect("not called")),
    }
}

/// Panics if this thread holds the stopped world (see `in_collection`).
pub(crate) fn assert_not_collecting(api: &str) {
    if try_local(|l| l.holds_world.get()).unwrap_or(false) {
        in_collection(api);
    }
}

/// The stopped world, owned by this thread while the guard lives.
pub(crate) struct StoppedWorld {
    _collector: MutexGuard<'static, ()>,
    _not_send: core::marker::PhantomData<*const ()>,
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
        match WORLD.collector.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    };
    let mut backoff = Duration::from_micros(100);
    init_fences();
    loop {
        // Let mutators woken by the last resume in first (bounded: 2 ms).
        let t = Instant::now();
        while WORLD.waiters.load(Ordering::SeqCst) > 0 && t.elapsed() < Duration::from_millis(2) {
            std::thread::yield_now();
        }
        handshake::raise_stop(&WORLD.stop, heavy_fence);
        if drained(budget) {
            local(|l| l.holds_world.set(true));
            return Some(StoppedWorld {
                _collector: collector,
                _not_send: core::marker::PhantomData,
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
    WORLD.stop.store(false, Ordering::SeqCst);
    WORLD.resumed.notify_all();
}

impl StoppedWorld {
    /// Marks the sweep phase of heap `id` on the collector's thread (0: over): handle drops
    /// then skip targets that die in this cycle.
    pub(crate) fn set_sweeping(&self, id: u64) {
        local(|l| l.sweeping.set(id));
    }
}

impl Drop for StoppedWorld {
    fn drop(&mut self) {
        local(|l| {
            l.holds_world.set(false);
            l.sweeping.set(0);
        });
        resume();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that `spills`, dropping handles past its ring while the world is stopped,
    /// holds the drops (no lock each) and hands them to its slot's spill with
    /// `flush_held`: the next collection sees every one and frees the objects.
    // A real heap reserves its arenas with `mmap` flags Miri does not model.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn held_drops_reach_the_next_collection_once_flushed() {
        // Past the ring's 256.
        const N: u64 = 1000;
        let h = crate::Heap::new(crate::HeapConfig {
            gogc: None,
            ..Default::default()
        });
        let objs: Vec<crate::Gc<[u64; 4]>> = (0..N).map(|i| h.alloc([i; 4])).collect();
        let (go, stopped) = std::sync::mpsc::channel::<()>();
        let (done, dropped) = std::sync::mpsc::channel::<()>();
        let spiller = std::thread::spawn(move || {
            spill_drops();
            stopped.recv().unwrap();
            drop(objs);
            local(|l| assert!(l.holds_drops(), "past the ring, with the world stopped"));
            flush_held();
            done.send(()).unwrap();
            // The thread stays until the collection below is done (its exit would apply
            // the held drops anyway).
            stopped.recv().unwrap_or(());
        });
        let world = stop(true, Duration::from_secs(10), "test").expect("the world");
        go.send(()).unwrap();
        dropped.recv().unwrap();
        drop(world);
        h.collect();
        assert_eq!(h.stats().heap_objects, 0, "every dropped object freed");
        drop(go);
        spiller.join().unwrap();
    }
}
