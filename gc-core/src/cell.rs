//! `GcCell<T>`: interior mutability for traced data, safe against the collector.
//!
//! The collector reads every object while the world is stopped, without taking any lock,
//! so a write must never be under way then. A write guard therefore holds a mutator
//! section for as long as it lives (the collector waits for it); it takes the cell's lock
//! first and enters the section second, so a thread waiting for the lock never holds the
//! world up. Read guards need no section: reading alongside the collector is fine.
//!
//! The lock is a reader-writer lock of its own, one word beside the value: the reader
//! count, a flag for parked waiters, and the writer's thread token (a small number per
//! thread). Knowing the writer, and which cells this thread reads (a short thread-local
//! list), it can refuse what `RefCell` refuses instead of deadlocking: a `borrow_mut`
//! while this thread holds a `borrow` or a `borrow_mut` of the same cell, a `borrow`
//! while it holds a `borrow_mut`, panic with a message (`try_borrow` and
//! `try_borrow_mut` return errors instead, naming who holds the cell). Readers do not
//! wait for waiting writers, so shared borrows nest on one thread as in `RefCell` (a lock
//! that queued readers behind a waiting writer would deadlock there). Threads that must
//! wait spin briefly, then park on one of a few shared condition variables.
//!
//! Consequences: a thread holding a write guard must not wait for another
//! thread's collection (`collect()` on it panics and says why); an allocation under a write
//! guard never collects. Keep write guards short. The section lasts exactly as long as the
//! guard, wherever the guard is kept: in a thread-local destroyed after the thread's fing
//! state, or put away by a destructor (`world::local`'s invariant); a guard never dropped
//! keeps every collection waiting.

use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use gc_types::{Kind, Trace, Tracer, Type, TypeRef, Typed};

use crate::world::{self, Section};

/// A mutable cell inside a heap object (a reader-writer lock that cooperates with the
/// collector and refuses same-thread conflicts like `RefCell`).
pub struct GcCell<T> {
    /// Readers (`READERS`), parked waiters (`WAITING`), the writer's token (high half).
    state: AtomicU64,
    value: UnsafeCell<T>,
}

const READERS: u64 = (1 << 29) - 1;
/// The cell's epoch (`mgcwork`): the cycle whose barrier stamped it (mutated in that
/// cycle), mod 3, or `NO_EPOCH` for a cell no cycle has stamped since it was last counted.
const EPOCH_SHIFT: u32 = 29;
const EPOCH_MASK: u64 = 3 << EPOCH_SHIFT;
const WAITING: u64 = 1 << 31;
const WRITER_SHIFT: u32 = 32;

/// The epoch in state `s`.
#[inline]
fn epoch_of(s: u64) -> u32 {
    ((s & EPOCH_MASK) >> EPOCH_SHIFT) as u32
}

// SAFETY: access to `value` goes through the lock (readers share, one writer), as in
// `RwLock<T>`, which is Sync when T is Send + Sync; the collector's lock-free reads happen
// only while no writer can be mutating (writers hold a section).
unsafe impl<T: Send + Sync> Sync for GcCell<T> {}

/// Who holds a cell that could not be borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Holder {
    /// Shared borrows, this many (on any threads).
    Shared(u32),
    /// A mutable borrow, on this thread or another.
    Mutable {
        /// Is the writer the calling thread?
        this_thread: bool,
    },
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Holder::Shared(1) => f.write_str("borrowed (1 shared borrow)"),
            Holder::Shared(n) => write!(f, "borrowed ({n} shared borrows)"),
            Holder::Mutable { this_thread: true } => f.write_str("mutably borrowed by this thread"),
            Holder::Mutable { this_thread: false } => {
                f.write_str("mutably borrowed by another thread")
            }
        }
    }
}

/// `GcCell::try_borrow` refused: the cell is mutably borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BorrowError {
    /// The cell's type (`GcCell<alloc::string::String>`).
    pub cell: &'static str,
    /// Who holds it.
    pub holder: Holder,
}

/// `GcCell::try_borrow_mut` refused: the cell is borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BorrowMutError {
    /// The cell's type (`GcCell<alloc::string::String>`).
    pub cell: &'static str,
    /// Who holds it.
    pub holder: Holder,
}

impl fmt::Display for BorrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fing::GcCell::try_borrow: the {} is {}",
            self.cell, self.holder
        )
    }
}

impl fmt::Display for BorrowMutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fing::GcCell::try_borrow_mut: the {} is {}",
            self.cell, self.holder
        )
    }
}

impl std::error::Error for BorrowError {}
impl std::error::Error for BorrowMutError {}

/// This thread's token: a small non-zero number, the same for the thread's life.
#[inline]
fn token() -> u64 {
    thread_local! {
        static TOKEN: Cell<u32> = const { Cell::new(0) };
    }
    TOKEN.with(|t| {
        let v = t.get();
        if v != 0 {
            return u64::from(v);
        }
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let mut v = NEXT.fetch_add(1, Ordering::Relaxed);
        if v == 0 {
            // Wrapped after four billion threads: tokens repeat, which only weakens the
            // same-thread check for the thread that reuses one.
            v = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        t.set(v);
        u64::from(v)
    })
}

/// The cells this thread holds shared borrows of (the last few; deeper nesting is
/// counted in `overflow` and not checked).
struct Reads {
    len: Cell<usize>,
    overflow: Cell<usize>,
    cells: [Cell<usize>; READS],
}

const READS: usize = 16;

thread_local! {
    static MY_READS: Reads = const {
        Reads {
            len: Cell::new(0),
            overflow: Cell::new(0),
            cells: [const { Cell::new(0) }; READS],
        }
    };
}

impl Reads {
    fn push(&self, cell: usize) {
        let n = self.len.get();
        if n < READS {
            self.cells[n].set(cell);
            self.len.set(n + 1);
        } else {
            self.overflow.set(self.overflow.get() + 1);
        }
    }

    /// Forgets one shared borrow of `cell`. Guards usually go in the reverse order of
    /// their borrows, so the newest entry is the one: a compare and a store, inline (the
    /// general search was 5 % of the instructions of the `scheme` example's closures
    /// script, whose variable reads each take a guard).
    #[inline]
    fn remove(&self, cell: usize) {
        let n = self.len.get();
        match self.cells.get(n.wrapping_sub(1)) {
            Some(top) if top.get() == cell => self.len.set(n - 1),
            _ => self.remove_slow(cell),
        }
    }

    #[cold]
    #[inline(never)]
    fn remove_slow(&self, cell: usize) {
        let n = self.len.get();
        match (0..n).rev().find(|&i| self.cells[i].get() == cell) {
            Some(i) => {
                for j in i..n - 1 {
                    self.cells[j].set(self.cells[j + 1].get());
                }
                self.len.set(n - 1);
            }
            None => self.overflow.set(self.overflow.get().saturating_sub(1)),
        }
    }

    fn holds(&self, cell: usize) -> bool {
        (0..self.len.get()).any(|i| self.cells[i].get() == cell)
    }
}

/// The condition variables waiters park on, shared by address.
fn parking(addr: usize) -> &'static (Mutex<()>, Condvar) {
    const N: usize = 64;
    static LOTS: [(Mutex<()>, Condvar); N] = [const { (Mutex::new(()), Condvar::new()) }; N];
    &LOTS[(addr >> 4) % N]
}

impl<T> GcCell<T> {
    /// A new cell.
    pub const fn new(value: T) -> GcCell<T> {
        GcCell {
            state: AtomicU64::new((crate::mgcwork::NO_EPOCH as u64) << EPOCH_SHIFT),
            value: UnsafeCell::new(value),
        }
    }

    fn addr(&self) -> usize {
        self as *const GcCell<T> as usize
    }

    fn cell_name() -> &'static str {
        let name = core::any::type_name::<GcCell<T>>();
        name.strip_prefix("gc_core::cell::").unwrap_or(name)
    }

    /// Who holds the cell, as of state `s`.
    fn holder(s: u64) -> Holder {
        match s >> WRITER_SHIFT {
            0 => Holder::Shared((s & READERS) as u32),
            w => Holder::Mutable {
                this_thread: w == token(),
            },
        }
    }

    /// One attempt at a shared borrow: `Err(state)` if a writer holds the cell.
    #[inline]
    fn try_read(&self) -> Result<(), u64> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s >> WRITER_SHIFT != 0 || s & READERS == READERS {
                return Err(s);
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
    }

    /// One attempt at the mutable borrow: `Err(state)` if anyone holds the cell.
    #[inline]
    fn try_write(&self) -> Result<(), u64> {
        let me = token() << WRITER_SHIFT;
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & !(WAITING | EPOCH_MASK) != 0 {
                return Err(s);
            }
            match self
                .state
                .compare_exchange_weak(s, s | me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
    }

    /// Shared access; blocks while another thread holds the cell mutably.
    ///
    /// # Panics
    /// If this thread holds the cell mutably (`fing::GcCell::borrow: already mutably
    /// borrowed by this thread`): the borrow could never be granted.
    #[track_caller]
    pub fn borrow(&self) -> GcRef<'_, T> {
        if let Err(s) = self.try_read() {
            self.borrow_slow(s);
        }
        self.read_guard()
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn borrow_slow(&self, mut s: u64) {
        // Inside a collection (a `Trace` impl), the writer may be waiting for the world
        // this thread holds: waiting for it would never end.
        world::assert_not_collecting("fing::GcCell::borrow");
        loop {
            if let Holder::Mutable { this_thread: true } = Self::holder(s) {
                panic!(
                    "fing::GcCell::borrow: already mutably borrowed by this thread (a {} is \
                     borrowed mutably further up the stack): the borrow could never be granted",
                    Self::cell_name()
                );
            }
            match self.wait(|c| c.try_read()) {
                Ok(()) => return,
                Err(now) => s = now,
            }
        }
    }

    /// A shared borrow, as `borrow`, or an error saying who holds the cell mutably.
    pub fn try_borrow(&self) -> Result<GcRef<'_, T>, BorrowError> {
        match self.try_read() {
            Ok(()) => Ok(self.read_guard()),
            Err(s) => Err(BorrowError {
                cell: Self::cell_name(),
                holder: Self::holder(s),
            }),
        }
    }

    /// The guard of a shared borrow just taken.
    fn read_guard(&self) -> GcRef<'_, T> {
        MY_READS.with(|r| r.push(self.addr()));
        // SAFETY: the shared borrow excludes writers; shared references may coexist.
        let value = unsafe { &*self.value.get() };
        GcRef {
            cell: self,
            value,
            _not_send: core::marker::PhantomData,
        }
    }

    /// Spins briefly on `attempt`, then parks until a release wakes it (or 10 ms pass:
    /// a safety net, not the mechanism); returns the attempt's result once it succeeds or
    /// after one park (the caller re-checks the holder).
    fn wait(&self, attempt: impl Fn(&Self) -> Result<(), u64>) -> Result<(), u64> {
        for i in 0..64 {
            match attempt(self) {
                Ok(()) => return Ok(()),
                Err(_) if i < 32 => core::hint::spin_loop(),
                Err(_) => std::thread::yield_now(),
            }
        }
        let (lock, cv) = parking(self.addr());
        let g = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.state.fetch_or(WAITING, Ordering::Relaxed);
        // Checked again under the parking lock: a release after this point wakes us.
        let r = attempt(self);
        if r.is_err() {
            drop(
                cv.wait_timeout(g, Duration::from_millis(10))
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
        r
    }

    /// Wakes the parked waiters (after a release that saw `WAITING`).
    #[cold]
    #[inline(never)]
    fn wake(&self) {
        self.state.fetch_and(!WAITING, Ordering::Relaxed);
        let (lock, cv) = parking(self.addr());
        drop(lock.lock().unwrap_or_else(|e| e.into_inner()));
        cv.notify_all();
    }

    fn release_read(&self) {
        let old = self.state.fetch_sub(1, Ordering::Release);
        if old & READERS == 1 && old & WAITING != 0 {
            self.wake();
        }
    }

    fn release_write(&self) {
        let old = self
            .state
            .fetch_and(WAITING | EPOCH_MASK, Ordering::Release);
        if old & WAITING != 0 {
            self.wake();
        }
    }

    /// Consumes the cell.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: Trace> GcCell<T> {
    /// Exclusive access; blocks while another thread holds the cell, then enters a
    /// mutator section (waiting for a running collection to finish).
    ///
    /// # Panics
    /// If this thread holds the cell, shared (`fing::GcCell::borrow_mut: already borrowed
    /// by this thread`) or mutably (`... already mutably borrowed by this thread`): the
    /// borrow could never be granted. From a `Trace` impl (inside a collection).
    #[track_caller]
    pub fn borrow_mut(&self) -> GcRefMut<'_, T> {
        if let Err(s) = self.try_write() {
            self.borrow_mut_slow(s);
        }
        self.write_guard()
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn borrow_mut_slow(&self, mut s: u64) {
        world::assert_not_collecting("fing::GcCell::borrow_mut");
        loop {
            match Self::holder(s) {
                Holder::Mutable { this_thread: true } => panic!(
                    "fing::GcCell::borrow_mut: already mutably borrowed by this thread (a {} \
                     is borrowed mutably further up the stack): the borrow could never be granted",
                    Self::cell_name()
                ),
                Holder::Shared(_) if MY_READS.with(|r| r.holds(self.addr())) => panic!(
                    "fing::GcCell::borrow_mut: already borrowed by this thread (a {} is \
                     borrowed shared further up the stack): the borrow could never be granted",
                    Self::cell_name()
                ),
                _ => {}
            }
            match self.wait(|c| c.try_write()) {
                Ok(()) => return,
                Err(now) => s = now,
            }
        }
    }

    /// The mutable borrow, as `borrow_mut`, or an error saying who holds the cell.
    ///
    /// # Panics
    /// From a `Trace` impl (inside a collection).
    pub fn try_borrow_mut(&self) -> Result<GcRefMut<'_, T>, BorrowMutError> {
        match self.try_write() {
            Ok(()) => Ok(self.write_guard()),
            Err(s) => Err(BorrowMutError {
                cell: Self::cell_name(),
                holder: Self::holder(s),
            }),
        }
    }

    /// The guard of the mutable borrow just taken: enters the section.
    #[track_caller]
    fn write_guard(&self) -> GcRefMut<'_, T> {
        // Released if entering panics (inside a collection).
        let unlock = Unlock(self);
        let section = world::enter("fing::GcCell::borrow_mut");
        core::mem::forget(unlock);
        if crate::mgcwork::marking() != 0 {
            self.barrier();
        }
        // SAFETY: the mutable borrow excludes every other borrow, and the section excludes
        // the collector's reads for as long as this reference lives.
        let value = unsafe { &mut *self.value.get() };
        GcRefMut {
            cell: self,
            value,
            _section: section,
        }
    }

    /// The snapshot barrier (`mgcwork`): the first mutable borrow of this cell while a
    /// cycle marks shades what the cell holds (the snapshot's edges stay reachable,
    /// wherever the borrow moves them) and stamps the cell with the cycle's epoch, which
    /// tells the collector's count to skip it. In the writer's section: no slice runs,
    /// and no other thread writes the epoch (readers only add to the reader count).
    #[cold]
    #[inline(never)]
    fn barrier(&self) {
        let e = crate::mgcwork::epoch();
        let s = self.state.load(Ordering::Relaxed);
        let old = epoch_of(s);
        // Any cell, not only those in the marking heap's spans: a cell inside a `Vec` of
        // a heap object lives in the system allocator's memory, and is counted all the
        // same. (Another heap's cell stamped here may be skipped by that heap's next count:
        // only a cost, since a skipped cell's targets look referenced from outside.)
        if old != e {
            // SAFETY: this thread holds the mutable borrow (no one else reads or writes
            // the value mutably) and its section (no collector reads it now).
            crate::mgcwork::shade_contents(unsafe { &*self.value.get() });
            self.state
                .fetch_xor(u64::from(old ^ e) << EPOCH_SHIFT, Ordering::Relaxed);
        }
    }

    /// Replaces the value, returning the old one.
    pub fn replace(&self, value: T) -> T {
        core::mem::replace(&mut *self.borrow_mut(), value)
    }

    /// Sets the value, dropping the old one (after the write guard is gone).
    pub fn set(&self, value: T) {
        drop(self.replace(value));
    }

    /// Takes the value, leaving the default.
    pub fn take(&self) -> T
    where
        T: Default,
    {
        self.replace(T::default())
    }
}

/// Releases a mutable borrow whose guard was not made (see `write_guard`).
struct Unlock<'a, T>(&'a GcCell<T>);

impl<T> Drop for Unlock<'_, T> {
    fn drop(&mut self) {
        self.0.release_write();
    }
}

impl<T: Default> Default for GcCell<T> {
    fn default() -> GcCell<T> {
        GcCell::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for GcCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_borrow() {
            Ok(v) => f.debug_tuple("GcCell").field(&*v).finish(),
            Err(_) => f.write_str("GcCell(<mutably borrowed>)"),
        }
    }
}

/// A shared borrow of a [`GcCell`]. Not `Send`: its thread's list of the cells it reads
/// (the same-thread checks) must be the one its drop updates, as `RefCell`'s `Ref` is not.
pub struct GcRef<'a, T> {
    cell: &'a GcCell<T>,
    value: &'a T,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl<T> Drop for GcRef<'_, T> {
    fn drop(&mut self) {
        MY_READS.with(|r| r.remove(self.cell.addr()));
        self.cell.release_read();
    }
}

impl<T> Deref for GcRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for GcRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.value, f)
    }
}

/// An exclusive borrow of a [`GcCell`]; holds a mutator section while it lives.
pub struct GcRefMut<'a, T> {
    cell: &'a GcCell<T>,
    value: &'a mut T,
    _section: Section,
}

impl<T> Drop for GcRefMut<'_, T> {
    fn drop(&mut self) {
        // The cell is released before the section ends: destructors that the end of the
        // section runs (mdrop) may borrow it.
        self.cell.release_write();
    }
}

impl<T> Deref for GcRefMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> DerefMut for GcRefMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for GcRefMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

// SAFETY: an opaque named generic type with its content as type argument; Send/Sync
// structural (GcCell<T> is Send if T is, Sync if T is Send + Sync: `T`'s answer covers both).
unsafe impl<T: Trace> Typed for GcCell<T> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<GcCell<T>>(Kind::Opaque) }
        .named("GcCell")
        .with_args(&[TypeRef::of::<T>()]);
}

// SAFETY: a cell owns its value and reports its handles once. The collector calls `trace`
// only with the world stopped, when no write guard can be mutating (writers hold a
// section), so the lock-free read is not a data race. The lock word needs no drop.
unsafe impl<T: Trace> Trace for GcCell<T> {
    const NO_SCAN: bool = T::NO_SCAN;
    const HANDLES_ONLY_DROP: bool = T::HANDLES_ONLY_DROP;
    const DROP_ONLY_FREES: bool = T::DROP_ONLY_FREES;
    fn trace(&self, tracer: &mut Tracer) {
        if let Some(e) = crate::mgcwork::counting() {
            // The collector counts references (`mgcmark::count_refs`): a cell stamped in
            // this cycle was mutated since the snapshot, and its barrier shaded what it
            // held then; its edges are not counted (their targets look referenced from
            // outside: kept). Any other is counted, and stamped `NO_EPOCH` (mgcmark's "Cell
            // stamps"), so that its next mutable borrow shades. Readers may be changing
            // the reader count: an atomic xor.
            let s = self.state.load(Ordering::Relaxed);
            let old = epoch_of(s);
            if old == e {
                return;
            }
            let counted = crate::mgcwork::NO_EPOCH;
            self.state
                .fetch_xor(u64::from(old ^ counted) << EPOCH_SHIFT, Ordering::Relaxed);
        }
        // SAFETY: see above.
        unsafe { &*self.value.get() }.trace(tracer);
    }
}
