//! Weak handles (Go's `weak.Pointer`; its cells are mheap's `getOrAddWeakHandle`),
//! ephemerons (boa_gc's `Ephemeron`, JavaScript's `WeakMap` entries) and [`WeakMap`].
//!
//! A [`Weak<T>`] is one word: a pointer to a [`WeakCell`], which holds the handle word
//! the weak handles upgrade to (null once cleared) and a count of the weak handles that
//! point at it. Cells are kept outside the heap, in one process-wide table keyed by the
//! address the handle points at, so that weak handles made from handles with the same
//! address share a cell and compare equal (Go dedups them the same way); made from two
//! objects, they have two cells and never compare equal, before or after the objects die
//! (a cell outlives the objects as long as a weak handle refers to it).
//!
//! How a cell keeps its object without keeping it alive: the cell counts once on the
//! object its word counts on (a "weak count"), from the first downgrade until it is
//! cleared. So an object with weak handles never reaches count zero and is never freed
//! by a mutator (`mfree`): the collector frees it, as it frees every object in Go. The
//! collector treats the weak count as a reference from inside the heap:
//! - [`before_mark`] (the cycle's weak step, before the roots are found) adds one to
//!   `gc_refs` per cell whose object is unmarked, so a weak count alone never makes its
//!   object a root; and it drops the cells no weak handle refers to any more, with their
//!   weak count;
//! - [`after_mark`] (the clear step, once marking is over, before the finalizers'
//!   resurrection): a cell whose object is marked stays; every other cell is cleared and
//!   leaves the table, and its weak count goes at once (so an object a finalizer
//!   resurrects keeps no weak count, garbage is freed whatever its count, and a
//!   collection abandoned later, when a `Trace` impl panics, leaves no count behind).
//!
//! Clearing there gives Go's semantics: a weak handle goes nil in the cycle that finds
//! its object unreachable, before the object's finalizers are queued (so it stays nil
//! even if a finalizer resurrects the object, and a resurrected object is never seen
//! through a weak handle), and before the cycle frees it.
//!
//! Both walks are resumable steps of the cycle, over plain vectors of the cells (`CELLS`,
//! the ephemeron registry; `Walk`): a million weak handles took 90 ms a walk in one stop
//! through the `DashMap`, and a collection with them 260–360 ms (the fixpoint's far
//! round walked the table too). Between the weak step's steps, a cell made is counted if
//! the walk has not passed it, else its object looks referenced from outside (a root:
//! its maker held it, so the snapshot reached it). Between the clear step's steps (the
//! barriers off), the cells it has yet to reach must already read as cleared: `CLEARING`
//! names the heap, and an upgrade (and a `WeakMap` lookup) of a cell of that heap whose
//! object is unmarked gives nothing, as Go's `makeStrongFromWeak` reads the mark bit of a
//! span not yet swept. The mark bits are exact then (resurrection, which marks, waits for
//! the clear step's end); an ephemeron made meanwhile is born taken (its key is alive: its
//! maker holds it).
//!
//! Why it is sound:
//! - An upgrade adds to the count of an object that a cell still names. It does so in a
//!   mutator section, so no collection runs meanwhile, and a cell is cleared only with the
//!   world stopped: the object is allocated while the cell names it (its weak count keeps
//!   it from count zero, and the collector clears the cell before freeing it). This is
//!   Go's issue 69210 (an upgrade during marking must not hand out an object the cycle
//!   then frees), solved by not letting the two overlap.
//! - A count of one is then never "the dropped handle's alone" for an object with weak
//!   handles (its weak count is one more), so `mfree`'s plain store of zero stays valid.
//! - A cell's memory is freed when its count of references reaches zero: one per weak
//!   handle, plus one while the table lists it. The table's is dropped only with the
//!   world stopped, and a downgrade that finds a listed cell adds to it in a section, so a
//!   listed cell is never freed under a downgrade.
//!
//! Ephemerons: an [`Ephemeron<K, V>`] is one word, a pointer to an `EphCell` kept in a
//! process-wide registry: a reference to its key's weak cell, and a handle word for the
//! value, which counts once on the value's object like a weak cell's weak count, and is
//! counted as a reference from inside the heap the same way (`before_mark`). The value
//! is kept alive exactly while the key is reachable from elsewhere:
//! - after marking from the roots, [`ephemeron_round`] takes each ephemeron whose key is
//!   marked and hands the value to the marker; the collector repeats until a round finds nothing new (a
//!   value may reach the key of another ephemeron), the classic ephemeron fixpoint;
//! - [`after_mark`] then clears every ephemeron not taken: its key is unreachable, so its
//!   value is dropped with it (its count goes at once, as a cleared weak cell's). A value pointing back to its key does not keep the key: the
//!   value itself is reached only through the ephemeron.
//!
//! An ephemeron whose key lies outside this heap (another heap's object, a static) counts
//! its key as alive in this heap's collections.
//!
//! Costs: a downgrade takes a section and a lock of one of the table's shards (dashmap);
//! an upgrade takes a section and adds one to a count; a clone or drop of a weak handle
//! is one atomic operation on its cell. Each collection walks every cell and every
//! ephemeron in each of its two steps (about 4 and 6 ms a million cells, in slices with
//! the cycle's other steps), and every ephemeron that existed when the cycle began in
//! each round of the fixpoint (resumable too: `ephemeron_round`; ephemerons made during a
//! cycle are born taken, their keys alive in it). An object whose weak handles are all
//! gone keeps its weak count until the next collection, and is freed by that collection
//! rather than at count zero.
//! Weak handles to a value outside the heap (`Gc::from_static`, a zero-sized value)
//! never go nil; their cells are dropped like the others once no weak handle is left.
//!
//! A weak handle made from a *far* interior handle (a `Gc::map` more than 64 KiB into its
//! object, or outside it) holds the far handle's word, which counts on a small cell object
//! of its own (`FarCell`), not on the object it was mapped from. So that it lives exactly
//! as long as that object, [`far_round`] marks the far cell of every weak cell whose
//! object it came from is marked (an ephemeron whose key is the object, whose value is
//! the far cell), in the same fixpoint as the ephemerons.

use core::fmt;
use core::hash::{BuildHasherDefault, Hash, Hasher};
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use gc_types::{word, Kind, Trace, Tracer, Type, TypeRef, Typed};

use crate::handle::Gc;
use crate::mheap::MHeap;
use crate::mpagealloc::{arena_of, span_of};
use crate::slot::{count_one_more, header};

/// What the weak handles made from handles with one address share.
struct WeakCell {
    /// The handle word the weak handles upgrade to; null once cleared.
    word: AtomicPtr<u8>,
    /// Weak handles to this cell, plus one while the table lists it, plus one while
    /// `FAR` does.
    refs: AtomicUsize,
    /// The address the weak handles point at: the cell's key in `TABLE`.
    addr: usize,
    /// Its word is a far handle's: `FAR` lists it too, and holds a reference of its own.
    far: bool,
    /// In the table (and `CELLS`): cleared by the collection that takes it out.
    listed: AtomicBool,
}

impl WeakCell {
    /// No weak handle refers to the cell any more, only the lists do (with the world
    /// stopped, none can be made: a downgrade needs a section).
    fn unused(&self) -> bool {
        self.refs.load(Ordering::Acquire) == 1 + usize::from(self.far)
    }
}

/// A cell in the table.
#[derive(Clone, Copy)]
struct CellPtr(NonNull<WeakCell>);

// SAFETY: a cell's fields are atomics, and its memory is freed only by whoever drops its
// last reference (module docs): the pointer may be shared with and sent to any thread.
unsafe impl Send for CellPtr {}
// SAFETY: as above.
unsafe impl Sync for CellPtr {}

/// Hashes an address: Fibonacci hashing, folded so that the low bits (which hashbrown
/// indexes by) depend on the high ones (addresses are aligned, their low bits constant).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_usize(self.0 as usize ^ b as usize);
        }
    }
    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type Table = DashMap<usize, CellPtr, BuildHasherDefault<AddrHasher>>;

/// The listed cells by address, for downgrades to find and share. A cell is listed here
/// exactly while it is in `CELLS` (both change together: a downgrade adds, in a section;
/// a collection removes, with the world stopped).
static TABLE: OnceLock<Table> = OnceLock::new();

fn table() -> &'static Table {
    TABLE.get_or_init(Table::default)
}

/// The listed cells in a plain vector, for the collector's walks: a walk over the
/// `DashMap` could not stop part way and go on after the world ran (the map rehashes as
/// downgrades add to it), and it took a shard's lock per step. Downgrades push, the
/// collector's walks remove (`Walk`).
static CELLS: Mutex<Vec<CellPtr>> = Mutex::new(Vec::new());

/// The cells whose word is a far handle's (a weak handle of a `Gc::map` far into or
/// outside its object), for `far_round`: a fixpoint round used to walk every cell of the
/// process to find these few (100 ms for a million weak handles, in the stop that ends
/// marking). Each entry holds a reference to its cell, so an unlisted cell stays
/// allocated until `prune_far` drops it, once per walk.
static FAR: Mutex<Vec<CellPtr>> = Mutex::new(Vec::new());

/// Locks one of the lists; every update completes before unlocking, so poisoning is
/// ignored.
fn locked<T>(m: &'static Mutex<Vec<T>>) -> MutexGuard<'static, Vec<T>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The heap (its id plus one) whose cycle has finished marking and is still clearing the
/// cells of what it found unreachable (`after_mark`, resumable), else zero. Set and
/// reset with the world stopped; read by upgrades in their section. While it is set, an
/// upgrade treats a cell of that heap as cleared if its object is unmarked (Go's
/// `makeStrongFromWeak` checks the mark bit of an unswept span the same way), so what a
/// weak handle gives is the same whether the walk has reached its cell yet or not.
static CLEARING: AtomicU64 = AtomicU64::new(0);

/// Has the cycle clearing `obj`'s heap found `obj` unreachable, its cell not yet
/// cleared? In a mutator section (so the window and the mark bits hold).
fn dead_in_window(obj: NonNull<u8>) -> bool {
    in_clearing_heap(obj) && !is_marked(obj)
}

/// Is `obj` in the heap whose cycle clears cells now (`CLEARING`)? In a mutator section.
fn in_clearing_heap(obj: NonNull<u8>) -> bool {
    let h = CLEARING.load(Ordering::Relaxed);
    h != 0 && arena_of(obj.as_ptr() as usize).is_some_and(|a| a.heap_id + 1 == h)
}

/// A walk over one of the lists, resumable between the steps of a cycle. It visits the
/// entries listed when it began (`end`): mutators append behind them between steps, and a
/// walk that followed them could go on as long as they keep making cells. It is the only
/// remover and compacts in place: entries before `w` were kept, `w..r` are stale copies,
/// `r..end` are not visited yet. Its end takes the gap out (the entries appended stay, and
/// are the next walk's); an abandoned walk does the same part way.
#[derive(Default)]
pub(crate) struct Walk {
    r: usize,
    w: usize,
    end: Option<usize>,
}

impl Walk {
    /// Visits entries while `go_on` (the cycle's budget, charged one unit an entry)
    /// allows; `keep` says whether each stays. Returns whether the walk is over.
    fn step<T: Copy>(
        &mut self,
        v: &mut Vec<T>,
        go_on: &mut impl FnMut(u32) -> bool,
        mut keep: impl FnMut(T) -> bool,
    ) -> bool {
        let end = *self.end.get_or_insert(v.len());
        while self.r < end {
            let e = v[self.r];
            // Past `keep`: an entry whose visit panics stays listed (`close`).
            let kept = keep(e);
            self.r += 1;
            if kept {
                v[self.w] = e;
                self.w += 1;
            }
            if !go_on(1) && self.r < end {
                return false;
            }
        }
        v.drain(self.w..end);
        *self = Walk::default();
        true
    }

    /// Ends a walk part way: the stale entries go, the rest stays listed.
    fn close<T>(&mut self, v: &mut Vec<T>) {
        if self.r > self.w {
            v.drain(self.w..self.r);
        }
        *self = Walk::default();
    }
}

/// Where a cycle's walks over the cells are.
#[derive(Default)]
pub(crate) struct Walks {
    ephemerons: Walk,
    /// The walk over the ephemerons is over; the one over the cells goes on.
    ephemerons_done: bool,
    cells: Walk,
}

impl Walks {
    /// One step of a pass over both lists: the ephemerons, then the cells (`Walk::step`
    /// with `ephemeron` and `cell` as `keep`). Returns whether the pass is over; its end
    /// drops `FAR`'s entries of the cells it took out of the table.
    fn both(
        &mut self,
        go_on: &mut impl FnMut(u32) -> bool,
        ephemeron: impl FnMut(EphPtr) -> bool,
        cell: impl FnMut(CellPtr) -> bool,
    ) -> bool {
        self.ephemerons_done =
            self.ephemerons_done || self.ephemerons.step(&mut ephemerons(), go_on, ephemeron);
        if !self.ephemerons_done || !self.cells.step(&mut locked(&CELLS), go_on, cell) {
            return false;
        }
        prune_far();
        self.ephemerons_done = false;
        true
    }

    /// A cycle is abandoned with a walk part way: the lists are made whole again, and a
    /// window opened by `after_mark` closes. World stopped.
    pub(crate) fn abandon(&mut self) {
        self.ephemerons.close(&mut ephemerons());
        self.cells.close(&mut locked(&CELLS));
        self.ephemerons_done = false;
        CLEARING.store(0, Ordering::Release);
    }
}

/// Drops `FAR`'s entries for the cells the walks took out of the table, with their
/// references. World stopped.
fn prune_far() {
    locked(&FAR).retain(|c| {
        // SAFETY: `FAR`'s entry holds a reference to the cell.
        let listed = unsafe { c.0.as_ref() }.listed.load(Ordering::Relaxed);
        if !listed {
            release_cell(c.0);
        }
        listed
    });
}

/// Drops one reference to the cell at `c`, freeing it with the last.
fn release_cell(c: NonNull<WeakCell>) {
    // SAFETY: the caller holds one of the cell's references, so it is allocated.
    if unsafe { c.as_ref() }.refs.fetch_sub(1, Ordering::Release) == 1 {
        // Every other reference's use happened before its drop (`Release`), and so
        // before this free.
        fence(Ordering::Acquire);
        // SAFETY: cells are leaked boxes (`Gc::downgrade`); this was the last reference.
        drop(unsafe { Box::from_raw(c.as_ptr()) });
    }
}

/// A weak handle (Go's `weak.Pointer[T]`): names an object without keeping it alive.
///
/// [`upgrade`](Weak::upgrade) gives a [`Gc<T>`] while the object lives, and `None` once
/// a collection has found it unreachable: from the cycle that queues its finalizers or
/// frees it on, even if a finalizer resurrects it. A weak handle made from a handle to a
/// value outside the heap ([`Gc::from_static`]) never goes nil.
///
/// One word. Weak handles made from handles with the same address are equal (and hash
/// alike), whichever handle and however many times; made from different addresses they
/// are never equal, before or after their objects die. A weak handle made from an
/// interior handle ([`Gc::map`]) upgrades to that interior address.
///
/// An object that ever had a weak handle is freed by a collection, not when its last
/// handle goes (see `Gc`'s "When the object is freed"); in a heap whose last `Heap` was
/// dropped (retired), that is the next `fing::collect()`, or the collection a later
/// `Heap::new` makes of it.
///
/// ```
/// # use gc_core as fing;
/// use fing::{Gc, Heap, HeapConfig, Weak};
/// let heap = Heap::new(HeapConfig::default());
/// let strong = heap.alloc(7u64);
/// let weak: Weak<u64> = strong.downgrade();
/// assert_eq!(weak.upgrade().as_deref(), Some(&7));
/// assert_eq!(weak, strong.downgrade());
/// drop(strong);
/// heap.collect();
/// assert!(weak.upgrade().is_none());
/// ```
pub struct Weak<T: 'static> {
    cell: Option<NonNull<WeakCell>>,
    _t: PhantomData<Gc<T>>,
}

// SAFETY: a weak handle gives a `Gc<T>` on the thread that upgrades it, so it may cross
// threads exactly when `Gc<T>` may: `T` is Send and Sync. Its cell is shared safely
// (`CellPtr`).
unsafe impl<T: Send + Sync> Send for Weak<T> {}
// SAFETY: as above; `&Weak<T>` only reads the cell's atomics.
unsafe impl<T: Send + Sync> Sync for Weak<T> {}

impl<T: 'static> Weak<T> {
    /// A weak handle that names nothing (Go's zero `weak.Pointer`): it never upgrades.
    pub const fn new() -> Weak<T> {
        Weak {
            cell: None,
            _t: PhantomData,
        }
    }

    /// A handle to the object, if it is still alive (Go's `Value`). Waits while a
    /// collection holds the world.
    pub fn upgrade(&self) -> Option<Gc<T>> {
        // SAFETY: this weak handle holds a reference to its cell.
        let cell = unsafe { self.cell?.as_ref() };
        let w = upgrade_word(&cell.word, "fing::Weak::upgrade", weak_dead)?;
        // SAFETY: the word was made for a `T` at its address (a downgrade of a `Gc<T>`,
        // or of a handle to the same address, which holds a `T` there too), and its
        // object (if any) now counts this handle.
        Some(unsafe { Gc::from_word(w) })
    }
}

impl<T: 'static> Gc<T> {
    /// A weak handle to what this handle points at (Go's `weak.Make`). See [`Weak`].
    ///
    /// The first weak handle of an address takes a lock of the process's table of weak
    /// handles and allocates a small cell outside the heap; the next ones share it.
    pub fn downgrade(&self) -> Weak<T> {
        let w = self.thin();
        let addr = Gc::as_ptr(self).cast::<u8>().addr();
        // No collection meanwhile: it could clear or drop the cell found here.
        let _section = crate::world::enter("fing::Gc::downgrade");
        let cell = match table().entry(addr) {
            Entry::Occupied(e) => {
                let c = *e.get();
                // SAFETY: a listed cell is allocated (the table holds a reference).
                unsafe { c.0.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
                c
            }
            Entry::Vacant(v) => {
                if let Some(obj) = self.counted() {
                    // The cell's weak count (module docs); this handle keeps `obj` alive.
                    // SAFETY: `obj` heads the object this handle counts on.
                    count_one_more(unsafe { header(obj.as_ptr()) });
                }
                let far = is_far(w);
                let c = CellPtr(NonNull::from(Box::leak(Box::new(WeakCell {
                    word: AtomicPtr::new(w.cast_mut()),
                    refs: AtomicUsize::new(2 + usize::from(far)),
                    addr,
                    far,
                    listed: AtomicBool::new(true),
                }))));
                v.insert(c);
                locked(&CELLS).push(c);
                if far {
                    locked(&FAR).push(c);
                }
                c
            }
        };
        Weak {
            cell: Some(cell.0),
            _t: PhantomData,
        }
    }
}

impl<T: 'static> Clone for Weak<T> {
    fn clone(&self) -> Weak<T> {
        if let Some(c) = self.cell {
            // SAFETY: this weak handle holds a reference to its cell.
            let old = unsafe { c.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
            if old >= usize::MAX / 2 {
                std::process::abort();
            }
        }
        Weak {
            cell: self.cell,
            _t: PhantomData,
        }
    }
}

impl<T: 'static> Drop for Weak<T> {
    /// Drops the weak handle's reference to its cell: one atomic operation; never waits.
    fn drop(&mut self) {
        if let Some(c) = self.cell {
            release_cell(c);
        }
    }
}

impl<T: 'static> Default for Weak<T> {
    fn default() -> Weak<T> {
        Weak::new()
    }
}

impl<T: 'static> PartialEq for Weak<T> {
    /// Made from handles with the same address (or both nil)?
    fn eq(&self, other: &Weak<T>) -> bool {
        self.cell == other.cell
    }
}

impl<T: 'static> Eq for Weak<T> {}

impl<T: 'static> Hash for Weak<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cell.hash(state);
    }
}

impl<T: 'static> fmt::Debug for Weak<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.cell.is_some() {
            "(Weak)"
        } else {
            "(Weak: nil)"
        })
    }
}

/// What an ephemeron's handles share.
struct EphCell {
    /// A reference to the key's weak cell (one of its `refs`).
    key: NonNull<WeakCell>,
    /// The value's handle word, counted once on its object; null once cleared.
    value: AtomicPtr<u8>,
    /// Ephemeron handles, plus one while the registry lists the cell.
    refs: AtomicUsize,
    /// Set by the collection that found the key alive this cycle (`ephemeron_round`).
    traced: AtomicBool,
}

/// A cell in the registry.
#[derive(Clone, Copy)]
struct EphPtr(NonNull<EphCell>);

// SAFETY: as for `CellPtr`: atomics, freed by whoever drops the last reference.
unsafe impl Send for EphPtr {}
// SAFETY: as above.
unsafe impl Sync for EphPtr {}

/// Every ephemeron cell. Pushed by `Ephemeron::new` in a mutator section; walked and
/// pruned by collections with the world stopped (`Walk`). A cell made after a cycle's
/// weak step passed it is seen by that cycle's later passes only: its value's count was
/// not counted, so the value is a root, and its key is marked (its maker held it).
static EPHEMERONS: Mutex<Vec<EphPtr>> = Mutex::new(Vec::new());

fn ephemerons() -> MutexGuard<'static, Vec<EphPtr>> {
    locked(&EPHEMERONS)
}

/// Drops one reference to the ephemeron cell at `c`, freeing it (and its reference to
/// its key's weak cell) with the last.
fn release_eph(c: NonNull<EphCell>) {
    // SAFETY: the caller holds one of the cell's references.
    if unsafe { c.as_ref() }.refs.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        // SAFETY: cells are leaked boxes (`Ephemeron::new`); this was the last reference.
        let cell = unsafe { Box::from_raw(c.as_ptr()) };
        release_cell(cell.key);
    }
}

/// Adds one to the count of the object `word` counts on and returns the word as a
/// handle's, if the word (a weak or ephemeron cell's) is not cleared, nor `dead` while a
/// cycle clears cells (`CLEARING`: `dead` gets the word's object, `None` for a value
/// outside the heap). In a mutator section unless the word counts on nothing.
fn upgrade_word(
    word: &AtomicPtr<u8>,
    api: &str,
    dead: impl Fn(Option<NonNull<u8>>) -> bool,
) -> Option<NonNull<u8>> {
    // The window first, then the word: a thread that saw the window open and then reads
    // it closed (the store that closes it is `Release`) reads the cell cleared.
    let open = CLEARING.load(Ordering::Acquire) != 0;
    let w = NonNull::new(word.load(Ordering::Acquire))?;
    // SAFETY: a cell's word is a handle word (stored from a handle).
    let outside = unsafe { word::object_of(w.as_ptr()) }.is_none();
    if outside && !open {
        // Outside the heap: counts on nothing, and only an ephemeron's is ever cleared.
        return Some(w);
    }
    let _section = crate::world::enter(api);
    // In the section: cells are cleared, and `CLEARING` changes, only with the world
    // stopped, so what is read now holds until the section ends.
    let w = NonNull::new(word.load(Ordering::Acquire))?;
    // SAFETY: as above.
    let obj = unsafe { word::object_of(w.as_ptr()) };
    if CLEARING.load(Ordering::Relaxed) != 0 && dead(obj) {
        return None;
    }
    let Some(obj) = obj else {
        return Some(w);
    };
    if outside {
        panic!("{api}: a cell's word came to count on an object");
    }
    // SAFETY: an uncleared cell's word counts on an allocated object (module docs).
    count_one_more(unsafe { header(obj.as_ptr()) });
    // A cycle marking now may have found the object reachable only through weak cells:
    // it is reachable again, and the cycle must keep it (Go's issue 69210).
    crate::mgcwork::shade_if_marking(obj);
    Some(w)
}

/// `upgrade_word`'s test for a weak cell's word (also an ephemeron's key): its object is
/// unmarked in the heap that clears.
fn weak_dead(obj: Option<NonNull<u8>>) -> bool {
    obj.is_some_and(dead_in_window)
}

/// An ephemeron (boa_gc's `Ephemeron`, a JavaScript `WeakMap` entry): a weak reference to
/// a key and a reference to a value that keeps the value alive exactly while the key is
/// alive from elsewhere, even when the value points back to the key (a weak-keyed map
/// with strong values would keep such a pair forever).
///
/// Both go nil together, in the collection that finds the key unreachable (or queues its
/// finalizers, as for [`Weak`]). One word; dropping the last clone of an ephemeron
/// releases its value at the next collection.
///
/// ```
/// # use gc_core as fing;
/// use fing::{Ephemeron, Heap, HeapConfig};
/// let heap = Heap::new(HeapConfig::default());
/// let k = heap.alloc(7u64);
/// // The value points back to its key.
/// let e = Ephemeron::new(&k, heap.alloc(k.clone()));
/// heap.collect();
/// assert!(e.value().is_some(), "the key is alive: so is the value");
/// drop(k);
/// heap.collect();
/// assert!(e.key().is_none() && e.value().is_none(), "both gone together");
/// ```
pub struct Ephemeron<K: 'static, V: 'static> {
    cell: NonNull<EphCell>,
    _t: PhantomData<(Gc<K>, Gc<V>)>,
}

// SAFETY: an ephemeron gives `Gc<K>` and `Gc<V>` on the thread that asks, so it may cross
// threads when both handles may: `K` and `V` Send and Sync (the cell is atomics).
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Ephemeron<K, V> {}
// SAFETY: as above; `&Ephemeron` only reads the cell's atomics.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Ephemeron<K, V> {}

impl<K: 'static, V: 'static> Ephemeron<K, V> {
    /// An ephemeron of `key` (held weakly) and `value`.
    pub fn new(key: &Gc<K>, value: Gc<V>) -> Ephemeron<K, V> {
        // Registered in a section: never in the middle of a collection's step (see
        // `EPHEMERONS` for one made between a cycle's steps).
        let _section = crate::world::enter("fing::Ephemeron::new");
        let k = core::mem::ManuallyDrop::new(key.downgrade());
        let key_cell = k.cell.expect("a downgrade has a cell");
        // The value's count moves to the cell.
        let v = core::mem::ManuallyDrop::new(value);
        let cell = NonNull::from(Box::leak(Box::new(EphCell {
            key: key_cell,
            value: AtomicPtr::new(v.thin().cast_mut()),
            refs: AtomicUsize::new(2),
            // Made during a cycle: taken already (a cycle resets the flag as it starts).
            // Its key is alive in that cycle (this thread holds it), and so is its value
            // (the weak step did not count this cell, so the value is a root); a fixpoint
            // round need not look at it, and the clear step must not clear it.
            traced: AtomicBool::new(crate::mheap::cycling() != 0),
        })));
        ephemerons().push(EphPtr(cell));
        Ephemeron {
            cell,
            _t: PhantomData,
        }
    }

    fn cell(&self) -> &EphCell {
        // SAFETY: this handle holds a reference to its cell.
        unsafe { self.cell.as_ref() }
    }

    /// The key, while it is alive (as [`Weak::upgrade`]).
    pub fn key(&self) -> Option<Gc<K>> {
        // SAFETY: the key's weak cell, which the ephemeron's cell holds a reference to.
        let key = unsafe { self.cell().key.as_ref() };
        let w = upgrade_word(&key.word, "fing::Ephemeron::key", weak_dead)?;
        // SAFETY: the word was made for a `K` at its address (`new` downgraded a
        // `Gc<K>`), and its object now counts this handle.
        Some(unsafe { Gc::from_word(w) })
    }

    /// Does the key's weak cell still name it (not cleared by a collection)? Unlike
    /// [`key`](Self::key), this hands out no handle, so it does not shade the key while
    /// a cycle marks: a `WeakMap` that looked its entries up through `key` (its lookups,
    /// `prune`) kept every key it looked at alive for the cycle in progress, and with
    /// cycles run in slices, which span thousands of lookups, no dead entry was ever
    /// collected (the soak's heap ran away).
    ///
    /// While a cycle clears cells (`CLEARING`), a key that cycle found unreachable is
    /// not named, as for an upgrade; that is asked in a section (the mark bits hold then).
    fn key_named(&self) -> bool {
        // SAFETY: the key's weak cell, which the ephemeron's cell holds a reference to.
        let key = unsafe { self.cell().key.as_ref() };
        // The window first, then the word (as in `upgrade_word`).
        let open = CLEARING.load(Ordering::Acquire) != 0;
        if key.word.load(Ordering::Acquire).is_null() {
            return false;
        }
        if !open {
            return true;
        }
        let _section = crate::world::enter("fing::WeakMap");
        let w = key.word.load(Ordering::Acquire);
        // SAFETY: a cell's word is null or a handle word.
        !w.is_null() && !weak_dead(unsafe { word::object_of(w) })
    }

    /// The value, while the key is alive (nil from the collection that finds the key
    /// unreachable).
    pub fn value(&self) -> Option<Gc<V>> {
        let cell = self.cell();
        // While a cycle clears: the value goes with an ephemeron that cycle did not take
        // (its key unreachable), as `after_mark` will clear it (values in other heaps
        // are not that cycle's).
        let dead = |obj: Option<NonNull<u8>>| {
            !cell.traced.load(Ordering::Relaxed) && obj.is_none_or(in_clearing_heap)
        };
        let w = upgrade_word(&cell.value, "fing::Ephemeron::value", dead)?;
        // SAFETY: the word is a `Gc<V>`'s (`new`), and its object now counts this handle.
        Some(unsafe { Gc::from_word(w) })
    }
}

impl<K: 'static, V: 'static> Clone for Ephemeron<K, V> {
    fn clone(&self) -> Ephemeron<K, V> {
        if self.cell().refs.fetch_add(1, Ordering::Relaxed) >= usize::MAX / 2 {
            std::process::abort();
        }
        Ephemeron {
            cell: self.cell,
            _t: PhantomData,
        }
    }
}

impl<K: 'static, V: 'static> Drop for Ephemeron<K, V> {
    /// One atomic operation; the next collection releases the value of a cell no
    /// ephemeron refers to any more.
    fn drop(&mut self) {
        release_eph(self.cell);
    }
}

impl<K: 'static, V: 'static> fmt::Debug for Ephemeron<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(Ephemeron)")
    }
}

// SAFETY: as for `Weak<T>`: opaque, named `Ephemeron` with arguments `K` and `V` (Send
// and Sync structurally, as the impls above).
unsafe impl<K: Trace, V: Trace> Typed for Ephemeron<K, V> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Ephemeron<K, V>>(Kind::Opaque) }
        .named("Ephemeron")
        .with_args(&[TypeRef::of::<K>(), TypeRef::of::<V>()]);
}

// SAFETY: the ephemeron's count on its value is the collector's to account for (module
// docs), never traced as an edge: noscan. Its drop releases its cell (not a handle drop),
// so garbage holding one is destroyed, never skipped.
unsafe impl<K: Trace, V: Trace> Trace for Ephemeron<K, V> {
    const NO_SCAN: bool = true;
    fn trace(&self, _tracer: &mut Tracer) {}
}

/// A map keyed by object identity whose entries live exactly while their key does
/// (JavaScript's `WeakMap`, Lua's weak-keyed tables): each entry is an [`Ephemeron`].
///
/// An entry whose key dies goes in the collection that finds the key unreachable: `get`
/// and `len` no longer see it, and its value is released (`len` and `prune` drop such
/// entries). Keys are compared by address ([`Gc::ptr_eq`]).
///
/// Limits: an ephemeron is a root for its value while its key lives, whoever holds the
/// ephemeron. A map kept in a heap object whose values point back to that object (and
/// so keep it) lives as long as the keys do, even once nothing else reaches the object;
/// and an ephemeron whose key and value are in different heaps keeps its key (a handle
/// into another heap is a reference from outside for that heap).
///
/// ```
/// # use gc_core as fing;
/// // JavaScript:  const cache = new WeakMap(); cache.set(node, meta); cache.get(node);
/// use fing::{Heap, HeapConfig, WeakMap};
/// let heap = Heap::new(HeapConfig::default());
/// let node = heap.alloc(1u64);
/// let mut cache: WeakMap<u64, String> = WeakMap::new();
/// cache.insert(&node, heap.alloc("meta".to_string()));
/// assert_eq!(cache.get(&node).as_deref().map(String::as_str), Some("meta"));
/// drop(node);
/// heap.collect();
/// assert_eq!(cache.len(), 0);
/// ```
pub struct WeakMap<K: 'static, V: 'static> {
    entries: std::collections::HashMap<usize, Ephemeron<K, V>>,
}

impl<K: 'static, V: 'static> WeakMap<K, V> {
    /// An empty map.
    pub fn new() -> WeakMap<K, V> {
        WeakMap {
            entries: std::collections::HashMap::new(),
        }
    }

    /// The entry of `key`'s address, if it holds `key` itself (an entry whose key died
    /// may hold an address a new object now has). An entry lives at its key's address,
    /// and a key cell not yet cleared keeps its object allocated (its weak count): no
    /// other object can have that address, so the entry's key is `key`. Asked without
    /// upgrading the key ([`Ephemeron::key_named`]).
    fn live(&self, key: &Gc<K>) -> Option<&Ephemeron<K, V>> {
        self.entries
            .get(&(Gc::as_ptr(key) as usize))
            .filter(|e| e.key_named())
    }

    /// Sets `key`'s value; returns the value it replaces.
    pub fn insert(&mut self, key: &Gc<K>, value: Gc<V>) -> Option<Gc<V>> {
        let old = self.remove(key);
        self.entries
            .insert(Gc::as_ptr(key) as usize, Ephemeron::new(key, value));
        old
    }

    /// `key`'s value.
    pub fn get(&self, key: &Gc<K>) -> Option<Gc<V>> {
        self.live(key)?.value()
    }

    /// Does the map hold `key`?
    pub fn contains_key(&self, key: &Gc<K>) -> bool {
        self.live(key).is_some()
    }

    /// Removes `key`'s entry; returns its value.
    pub fn remove(&mut self, key: &Gc<K>) -> Option<Gc<V>> {
        let addr = Gc::as_ptr(key) as usize;
        let e = self.entries.remove(&addr)?;
        if e.key_named() {
            e.value()
        } else {
            None
        }
    }

    /// Drops the entries whose key has died.
    pub fn prune(&mut self) {
        self.entries.retain(|_, e| e.key_named());
    }

    /// Entries whose key is alive (dropping the others).
    pub fn len(&mut self) -> usize {
        self.prune();
        self.entries.len()
    }

    /// No entry with a live key?
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }
}

impl<K: 'static, V: 'static> Default for WeakMap<K, V> {
    fn default() -> WeakMap<K, V> {
        WeakMap::new()
    }
}

impl<K: 'static, V: 'static> fmt::Debug for WeakMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeakMap({} entries)", self.entries.len())
    }
}

// SAFETY: opaque, named `WeakMap` with arguments `K` and `V`; its entries are ephemerons
// (Send and Sync as `K` and `V` are), so structural Send/Sync agrees.
unsafe impl<K: Trace, V: Trace> Typed for WeakMap<K, V> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<WeakMap<K, V>>(Kind::Opaque) }
        .named("WeakMap")
        .with_args(&[TypeRef::of::<K>(), TypeRef::of::<V>()]);
}

// SAFETY: as for `Ephemeron`: the entries' counts are the collector's (never edges), and
// the map's drop releases its cells.
unsafe impl<K: Trace, V: Trace> Trace for WeakMap<K, V> {
    const NO_SCAN: bool = true;
    fn trace(&self, _tracer: &mut Tracer) {}
}

// SAFETY: `Type::rust::<Weak<T>>` takes size, align, identity and drop glue from the
// compiler and the `Trace` impl below; opaque, named `Weak` with argument `T`, so Send and
// Sync are answered from `T` (structurally), and `is_send_sync` (both) agrees with the
// impls above.
unsafe impl<T: Trace> Typed for Weak<T> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Weak<T>>(Kind::Opaque) }
        .named("Weak")
        .with_args(&[TypeRef::of::<T>()]);
}

// SAFETY: a weak handle holds no count on its object, so it has no handle to report:
// noscan. Its drop releases its cell, which is not a handle drop, so `HANDLES_ONLY_DROP`
// stays false: garbage that holds one is destroyed (mdrop) and the cell released, never
// skipped by the sweep.
unsafe impl<T: Trace> Trace for Weak<T> {
    const NO_SCAN: bool = true;
    fn trace(&self, _tracer: &mut Tracer) {}
}

/// Is `obj`, a heap object's header, in `heap`?
fn in_heap(obj: NonNull<u8>, heap: &MHeap) -> bool {
    arena_of(obj.as_ptr() as usize).is_some_and(|a| a.heap_id == heap.id)
}

/// The object a cell's word counts on, and whether the cell is `heap`'s to process (a
/// cell outside every heap is processed by every heap's collection).
fn cell_object(cell: &WeakCell, heap: &MHeap) -> (Option<NonNull<u8>>, bool) {
    let w = cell.word.load(Ordering::Relaxed);
    // SAFETY: a listed cell's word is a handle word whose object its weak count keeps
    // allocated.
    let obj = unsafe { word::object_of(w) };
    (obj, obj.is_none_or(|o| in_heap(o, heap)))
}

/// Takes listed cell `c` out of the table (its address's entry is this cell: a cell
/// leaves only here, and a downgrade makes another only for an address with none) and
/// drops the table's reference; `CELLS` drops it as the walk goes on, `FAR` at the walk's
/// end (`prune_far`). World stopped.
fn unlist(c: CellPtr) {
    // SAFETY: a listed cell is allocated.
    let cell = unsafe { c.0.as_ref() };
    cell.listed.store(false, Ordering::Relaxed);
    if let Some(t) = TABLE.get() {
        t.remove_if(&cell.addr, |_, v| v.0 == c.0);
    }
    release_cell(c.0);
}

/// Is `w` a far handle's word?
fn is_far(w: *const u8) -> bool {
    !w.is_null() && word::tag(w.addr()) == word::FAR
}

/// The first step of a cycle of `heap`, before the roots are found, resumable: drops the
/// cells of `heap` no weak handle (or ephemeron) refers to any more, with their weak
/// counts, and counts every other cell's weak count as a reference from inside the heap
/// (module docs). Returns whether it is done.
///
/// Between its steps mutators run (with the barriers on): a cell made meanwhile is
/// counted if the walk has not passed it yet, and otherwise makes its object look
/// referenced from outside (a root, kept: it was reachable, its maker held it). A reaped
/// cell's count goes without shading its object (a weak count is no reference of the
/// snapshot's): `release::drop_count` would keep what this cycle should free.
pub(crate) fn before_mark(
    heap: &MHeap,
    walks: &mut Walks,
    go_on: &mut impl FnMut(u32) -> bool,
) -> bool {
    let ephemeron = |c: EphPtr| {
        // SAFETY: a listed cell is allocated.
        let cell = unsafe { c.0.as_ref() };
        cell.traced.store(false, Ordering::Relaxed);
        let w = cell.value.load(Ordering::Relaxed);
        // SAFETY: an uncleared value word is a handle word whose object it counts on.
        let obj = unsafe { word::object_of(w) };
        if obj.is_some_and(|o| !in_heap(o, heap)) {
            return true;
        }
        // No ephemeron left (the registry's reference alone): the value and the cell go.
        let stays = count_at_start(obj, cell.refs.load(Ordering::Acquire) == 1);
        if !stays {
            release_eph(c.0);
        }
        stays
    };
    walks.both(go_on, ephemeron, |c| {
        // SAFETY: a listed cell is allocated.
        let cell = unsafe { c.0.as_ref() };
        let (obj, ours) = cell_object(cell, heap);
        if !ours {
            return true;
        }
        let stays = count_at_start(obj, cell.unused());
        if !stays {
            unlist(c);
        }
        stays
    })
}

/// Opens the window in which `after_mark` clears `heap`'s cells (`CLEARING`), once
/// marking is over and before any mutator runs with the barriers off. World stopped.
pub(crate) fn open_window(heap: &MHeap) {
    CLEARING.store(heap.id + 1, Ordering::Release);
}

/// After marking, before resurrection, resumable: keeps the cells of `heap` whose object
/// is marked and clears the others (module docs). Returns whether
/// it is done, and then closes the window `open_window` opened. Until then, upgrades
/// treat the cells it has yet to clear as cleared (`CLEARING`); resurrection waits for
/// its end, since it marks objects that must stay nil to weak handles.
pub(crate) fn after_mark(
    heap: &MHeap,
    walks: &mut Walks,
    go_on: &mut impl FnMut(u32) -> bool,
) -> bool {
    let ephemeron = |c: EphPtr| {
        // SAFETY: a listed cell is allocated.
        let cell = unsafe { c.0.as_ref() };
        let w = cell.value.load(Ordering::Relaxed);
        // SAFETY: an uncleared value word is a handle word.
        let obj = unsafe { word::object_of(w) };
        if w.is_null()
            || cell.traced.load(Ordering::Relaxed)
            || obj.is_some_and(|o| !in_heap(o, heap))
        {
            return true;
        }
        // The key is unreachable: the value goes with it, and its count now.
        cell.value.store(core::ptr::null_mut(), Ordering::Release);
        if let Some(o) = obj {
            crate::release::drop_count(o);
        }
        true
    };
    let done = walks.both(go_on, ephemeron, |c| {
        // SAFETY: a listed cell is allocated.
        let cell = unsafe { c.0.as_ref() };
        let (Some(o), true) = cell_object(cell, heap) else {
            return true;
        };
        if is_marked(o) {
            return true;
        }
        cell.word.store(core::ptr::null_mut(), Ordering::Release);
        crate::release::drop_count(o);
        unlist(c);
        false
    });
    if done {
        // Release: a thread that reads the window closed reads the cleared words too
        // (the fast paths of `upgrade_word` and `key_named` read it first).
        CLEARING.store(0, Ordering::Release);
    }
    done
}

/// A cell's count on `obj` in the weak step, with the world stopped: dropped if the cell
/// is to be `reap`ed (no handle refers to it any more), else counted as a reference from
/// inside the heap (unless `obj` is marked). Returns whether the cell stays.
fn count_at_start(obj: Option<NonNull<u8>>, reap: bool) -> bool {
    match obj {
        // Not `release::drop_count`: no shading (`before_mark`). An object left at zero
        // is the collector's, as on the collector's other drops.
        // SAFETY: `o` heads an allocated object (this count kept it so).
        Some(o) if reap => drop(
            unsafe { header(o.as_ptr()) }
                .count
                .fetch_sub(1, Ordering::Release),
        ),
        // A marked object (allocated since the cycle began, or shaded) is kept whatever
        // its scratch count, and one allocated in a span the cycle's snapshot lacks
        // would keep the count past the cycle (release zeroes the snapshot's): the next
        // cycle would find it a root forever. Counting skips marked objects for the
        // same reason.
        Some(o) if !is_marked(o) => add_ref(o),
        _ => {}
    }
    !reap
}

/// Adds one to the scratch count of `o`, an object a cell counts on. World stopped.
fn add_ref(o: NonNull<u8>) {
    // SAFETY: `o` heads an allocated object (the cell's count keeps it); world stopped.
    let h = unsafe { header(o.as_ptr()) };
    let r = h
        .gc_refs
        .load(Ordering::Relaxed)
        .checked_add(1)
        .expect("fing::collect: a cell's scratch count out of range");
    h.gc_refs.store(r, Ordering::Relaxed);
}

/// Is the key behind weak cell `k` alive in this cycle of `heap`: not cleared, and marked
/// (a key outside this heap counts as alive)?
fn key_alive(k: NonNull<WeakCell>, heap: &MHeap) -> bool {
    // SAFETY: an ephemeron cell holds a reference to its key's weak cell.
    let w = unsafe { k.as_ref() }.word.load(Ordering::Relaxed);
    if w.is_null() {
        return false;
    }
    // SAFETY: an uncleared weak cell's word is a handle word.
    let Some(o) = (unsafe { word::object_of(w) }) else {
        return true;
    };
    !in_heap(o, heap) || is_marked(o)
}

/// Where a round of the ephemeron fixpoint is, across slices: the next ephemeron, and the
/// end of the round (the registry's length when it began: those made since are born taken,
/// `Ephemeron::new`).
#[derive(Default)]
pub(crate) struct Round {
    next: usize,
    end: Option<usize>,
}

/// A round of the ephemeron fixpoint, once the mark stack is empty, with the world
/// stopped, resumable (`go_on`: the cycle's budget, a unit an ephemeron): each ephemeron
/// of `heap` not yet taken whose key is marked is taken, and its value handed to `mark`.
/// Returns whether the round is over; the collector marks what `mark` got, and runs
/// another round unless nothing was marked, by it or anyone, since the round began
/// (`mgc`: a key seen unmarked early in a round may be marked by its end).
pub(crate) fn ephemeron_round(
    heap: &MHeap,
    at: &mut Round,
    go_on: &mut impl FnMut(u32) -> bool,
    mut mark: impl FnMut(NonNull<u8>),
) -> bool {
    let list = ephemerons();
    let end = *at.end.get_or_insert(list.len());
    while at.next < end {
        let c = list[at.next];
        at.next += 1;
        // SAFETY: a listed cell is allocated.
        let cell = unsafe { c.0.as_ref() };
        let w = cell.value.load(Ordering::Relaxed);
        if !w.is_null() && !cell.traced.load(Ordering::Relaxed) {
            // SAFETY: an uncleared value word is a handle word.
            let obj = unsafe { word::object_of(w) };
            if obj.is_none_or(|o| in_heap(o, heap)) && key_alive(cell.key, heap) {
                cell.traced.store(true, Ordering::Relaxed);
                if let Some(o) = obj {
                    mark(o);
                }
            }
        }
        if !go_on(1) && at.next < end {
            return false;
        }
    }
    true
}

/// The object a far handle word's cells lead back to (`Gc::owner`).
fn real_object(w: *const u8) -> Option<NonNull<u8>> {
    // SAFETY: `w` is an uncleared cell's far handle word, whose cells are allocated; the
    // borrowed handle is never dropped (no count changes).
    let g =
        core::mem::ManuallyDrop::new(unsafe { Gc::<u8>::from_word(NonNull::new(w.cast_mut())?) });
    g.owner()
}

/// Is `o`, an object of `heap`, marked?
fn is_marked(o: NonNull<u8>) -> bool {
    let s =
        span_of(o.as_ptr() as usize).expect("fing::collect: a weak cell's object is in no span");
    s.is_marked(s.index_of(o.as_ptr() as usize))
}

/// One round of the far cells' part of the fixpoint (module docs), with the world stopped:
/// hands `mark` the far cell of each weak cell of `heap` with a far word whose cell is not
/// marked but whose object is (or lies outside this heap). Returns whether it found any.
pub(crate) fn far_round(heap: &MHeap, mut mark: impl FnMut(NonNull<u8>)) -> bool {
    let mut progress = false;
    for c in locked(&FAR).iter() {
        // SAFETY: `FAR`'s entry holds a reference to the cell.
        let cell = unsafe { c.0.as_ref() };
        let w = cell.word.load(Ordering::Relaxed);
        if !cell.listed.load(Ordering::Relaxed) || !is_far(w) {
            continue;
        }
        // SAFETY: a far word is a handle word counting on its far cell.
        let Some(fc) = (unsafe { word::object_of(w) }) else {
            continue;
        };
        if !in_heap(fc, heap) || is_marked(fc) {
            continue;
        }
        let Some(real) = real_object(w) else { continue };
        if in_heap(real, heap) && !is_marked(real) {
            continue;
        }
        mark(fc);
        progress = true;
    }
    progress
}

/// Cells in the table (for tests).
#[cfg(test)]
pub(crate) fn cells() -> usize {
    TABLE.get().map_or(0, DashMap::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cell's references on their own (a static's weak handles need no heap, so this
    /// also runs under Miri): shared by address, counted by clones and drops, freed with
    /// the last reference once a collection drops the table's.
    #[test]
    fn cells_of_statics_are_shared_by_address_and_released() {
        static A: [u64; 2] = [1, 2];
        let a = Gc::from_static(&A);
        let w1 = a.downgrade();
        let w2 = w1.clone();
        let w3 = Gc::from_static(&A).downgrade();
        assert!(w1 == w2 && w2 == w3);
        let c = w1.cell.expect("a cell");
        // SAFETY: `w1` holds a reference to the cell.
        let refs = unsafe { c.as_ref() }.refs.load(Ordering::Relaxed);
        assert_eq!(refs, 4, "three and the table's");
        assert_eq!(w3.upgrade().map(|g| g[1]), Some(2));
        let second: Gc<u64> = a.map(|a| &a[1]);
        assert_ne!(second.downgrade().cell, w1.cell, "another address");
        let first: Gc<u64> = a.map(|a| &a[0]);
        assert_eq!(
            first.downgrade().cell,
            w1.cell,
            "the same address, another type"
        );
        drop((w1, w2));
        // SAFETY: `w3` holds a reference to the cell.
        let refs = unsafe { c.as_ref() }.refs.load(Ordering::Relaxed);
        assert_eq!(refs, 2);
        assert_eq!(
            w3.upgrade().map(|g| g[0]),
            Some(1),
            "a static's never goes nil"
        );
        assert!(cells() >= 1);
    }
}
