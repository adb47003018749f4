//! The engine of the model-based tests, shared by `tests/model.rs` (proptest) and the
//! fuzz target `fuzz/fuzz_targets/ops.rs` (libFuzzer): a vocabulary of operations on a
//! fing heap, and a plain reference model of reachability and Go's finalizer rules that
//! each operation is mirrored in.
//!
//! The vocabulary: allocate an object with 0, 1 or 2 links and a tiny leaf (holding a lock
//! that destructors also take, as a mutator that logs while it allocates); allocate a
//! tiny noscan object (packed 2 to a 16-byte block); allocate an object aligned to 16 KiB
//! with one link; relink a field through a `GcCell`; replace an object's slice of links
//! (an object of run-time length, `Heap::alloc_slice`); allocate an object of a type built
//! at run time (`Heap::alloc_zeroed`), set its two pointers (`reflect::set_field`) and
//! drop it; clone and drop handles; put a handle
//! in a global registry; hand a handle to a thread that keeps it in a `thread_local!`
//! touched before fing's and exits (its drop comes after fing's thread state is gone);
//! map handles into an object (near) and into its name's buffer (far, through a cell),
//! and drop them; set a finalizer (plain, resurrecting its object into a global, or
//! re-arming itself once) or clear one; make a weak handle of an object or a tiny object,
//! upgrade one (a handle it gives back becomes a root), drop one; add a cleanup to an
//! object or a tiny object, with a handle to another object as its argument (a root until
//! the cleanup runs), and stop one; insert, look up, remove and prune entries of a
//! weak-keyed map (`WeakMap`: ephemerons, whose value is reached exactly when its key
//! is); `collect()`; one step of a cycle
//! (`Heap::collect_step`: the operations that follow run inside the cycle, between its
//! steps, until a step or a `collect()` ends it); `wait_finalizers()`. A collection
//! does not wait for its finalizers: they run on the finalizer thread while the next
//! operations mutate the heap, and are checked at the next `Wait` or `Collect`. On a heap
//! made with `finalizers_at_safe_points` (`World::with_safe_points`) they wait instead for
//! `Wait` or `Collect`, which runs them on the program's thread (`Heap::run_finalizers`)
//! after checking that none ran before.
//!
//! Every object has a destructor (its token's `Drop`), which is user code: it takes the
//! lock mutators take, records that it ran, sometimes allocates a new object into the
//! heap (kept in a list and checked for integrity), and may take an entry out of the
//! registry and drop it (the object was made with the id of the entry to take). Objects
//! with destructors are freed when their count reaches zero, or by a collection (cycles),
//! with the destructors run after the world resumes; a registry entry dropped by a
//! destructor may free more.
//!
//! A `wait_finalizers()` inside a cycle whose marking has ended finishes the cycle first
//! (its finalizers are queued over its steps after marking).
//!
//! A cycle in steps is modelled as fing's snapshot-at-the-beginning marking promises: it
//! marks what was reachable at its first step, what is allocated while it runs, and what
//! a weak handle or a map lookup gives back before its marking ends, with all they
//! reach; nothing else.
//! So a handle dropped or a link overwritten inside the cycle frees nothing before the
//! next cycle (unless its count reaches zero), and an object that was garbage at the
//! first step is found by this one, exactly as by a `collect()` at that point.
//!
//! What is checked, exactly, after every collection (for a cycle in steps: weak handles
//! and finalizers from the step in which its marking ended, what it freed at the step
//! that ended it) and wait:
//! - the destructors that ran since the last check: each once; every object the model
//!   calls garbage at the collection among them; and every other one unreachable once the
//!   registry entries that those destructors took are gone (no object reachable in the
//!   model was freed);
//! - the finalizers that ran are the model's queued set, each once: only unreachable
//!   objects, in dependency order (the model queues B only in the cycle that frees A when
//!   A points to B), never one in a cycle through a finalizable object; tiny objects are
//!   queued when their whole block is unreachable, all records of the block at once;
//! - every upgrade gives the object exactly when the model says its weak handle is live:
//!   a weak handle goes nil in the collection whose marking leaves its object (or tiny
//!   block) unmarked, whether the object is then freed or resurrected for its finalizer,
//!   and stays nil; a map entry goes in the collection whose marking leaves its key
//!   unmarked, and every lookup, `remove` and `len` agrees with the model's entries (a
//!   value a lookup hands out during marking is kept by that cycle; `prune` keeps
//!   nothing);
//! - the cleanups that ran are exactly those of the objects the last collection freed
//!   (not those it resurrected for a finalizer), each once, none that was stopped before;
//! - every object still reachable has its id, its token and its links intact (freed memory
//!   is poisoned in debug builds, so a wrong free shows at the next check, not later), and
//!   so has every object a destructor made.
//!
//! The model learns one thing from the real heap: which 16-byte block each tiny object
//! was packed into (`Gc::object_addr`), a fact of the allocator, not of the semantics.

// Shared by two crates, each of which uses a part.
#![allow(unreachable_pub, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fing::reflect::{self, TypeBuilder};
use fing::{
    Cleanup, DropOnlyFrees, Gc, GcCell, Heap, HeapConfig, Trace, Typed, Value, Weak, WeakMap,
};

type Log = Arc<Mutex<Vec<u64>>>;

/// Handles kept in a global registry, with the ids of their objects.
type Registry = Arc<Mutex<Vec<(u64, Gc<Obj>)>>>;

/// What an object's destructor reaches: the world's shared state.
#[derive(Clone)]
pub struct Shared {
    dropped: Log,
    /// Taken by destructors, and by `Op::Alloc` while it allocates.
    lock: Arc<Mutex<()>>,
    registry: Registry,
    /// Objects destructors made.
    made: Arc<Mutex<Vec<Gc<Made>>>>,
    heap: Heap,
}

/// Records its id when dropped (the per-object liveness token); the destructor of every
/// object, with the user code of the module docs.
pub struct Token {
    id: u64,
    /// The registry entry to take out and drop.
    unregister: Option<u64>,
    shared: Shared,
}

impl Drop for Token {
    fn drop(&mut self) {
        let s = &self.shared;
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.dropped.lock().unwrap().push(self.id);
        }
        if let Some(y) = self.unregister {
            // Dropped outside the registry's lock: the drop may run destructors that take
            // it.
            let taken = {
                let mut r = s.registry.lock().unwrap();
                r.iter().position(|e| e.0 == y).map(|i| r.swap_remove(i))
            };
            drop(taken);
        }
        if self.id.is_multiple_of(3) {
            let m = s.heap.alloc(Made {
                id: self.id,
                check: Made::check(self.id),
            });
            s.made.lock().unwrap().push(m);
        }
    }
}

/// What a destructor allocates.
#[derive(Trace)]
pub struct Made {
    id: u64,
    check: u64,
}

impl Made {
    fn check(id: u64) -> u64 {
        id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// A traced object: two links, a tiny leaf, a name (whose buffer `Op::Map` points into)
/// and a token.
#[derive(Trace)]
pub struct Obj {
    id: u64,
    links: [GcCell<Option<Gc<Obj>>>; 2],
    leaf: GcCell<Option<Gc<Tiny>>>,
    /// More links, in an object of run-time length (`Heap::alloc_slice`): `Link`s, whose
    /// drop only frees, or (`bare`) bare handles, whose drop only drops handles; one of
    /// the two at a time.
    many: GcCell<Option<Gc<[Link]>>>,
    bare: GcCell<Option<Gc<[Gc<Obj>]>>>,
    name: String,
    #[gc(untraced)]
    token: Token,
}

/// An element of `Obj::many` (or of a spare slice: `Op::Spare`): a link, a link to
/// another slice, and a share of the world's `Code`, whose drop only frees
/// (`DropOnlyFrees`), as an interpreter's closure holds its compiled code. So a slice's
/// destructor is neither skipped nor user code: it runs in the freeing section at count
/// zero and, for slices in garbage cycles, in a collection's release step; `Code`'s count
/// says how many elements are alive (`World::finish` checks it).
#[derive(Trace)]
pub struct Link {
    to: Option<Gc<Obj>>,
    next: GcCell<Option<Gc<[Link]>>>,
    #[gc(untraced)]
    code: Arc<Code>,
}

/// Shared by every `Link`.
pub struct Code {
    name: String,
}

// SAFETY: no `Drop` of its own; a `String` only frees.
unsafe impl DropOnlyFrees for Code {}

/// An object aligned to 16 KiB (more than a page: a large span with its value at an
/// aligned page), with one link.
#[derive(Trace)]
#[repr(align(16384))]
pub struct Big {
    id: u64,
    link: GcCell<Option<Gc<Obj>>>,
    #[gc(untraced)]
    token: Token,
}

/// A tiny noscan object (8 bytes): packed into 16-byte blocks.
#[derive(Trace)]
pub struct Tiny {
    id: u64,
}

/// What a finalizer does besides recording that it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the object is freed a cycle later.
    Plain,
    /// Stores its object in a global: the object lives on.
    Resurrect,
    /// Sets a plain finalizer on its object: it runs again when the object is found
    /// unreachable again.
    Rearm,
}

/// One step of a program. Indices pick among the live handles (modulo their count).
#[derive(Clone, Debug)]
pub enum Op {
    /// Allocate an object linking to up to two objects and one tiny object, whose
    /// destructor takes the registry entry `unregister` picks (if any) and drops it.
    Alloc {
        links: [Option<usize>; 2],
        leaf: Option<usize>,
        unregister: Option<usize>,
    },
    /// Allocate a tiny object.
    AllocTiny,
    /// Allocate a 16 KiB-aligned object linking to one object.
    AllocBig { link: Option<usize> },
    /// Set a link of an object (through its `GcCell`).
    Link {
        from: usize,
        slot: usize,
        to: Option<usize>,
    },
    /// Set an object's tiny leaf.
    Leaf { from: usize, to: Option<usize> },
    /// Clone a handle.
    Clone(usize),
    /// Put a clone of a handle in the registry.
    Register(usize),
    /// Give a clone of a handle to a thread that keeps it in a `thread_local!` first
    /// touched before fing's, and exits.
    ThreadLocal(usize),
    /// `Gc::map` a handle twice: to its name's buffer (a far handle, through a cell) and to
    /// its id (a near one). Both keep the object alive.
    Map(usize),
    /// Drop a pair of mapped handles.
    DropMapped(usize),
    /// Drop a handle (`tiny`: a tiny object's).
    Drop { at: usize, tiny: bool },
    /// Drop a 16 KiB-aligned object's handle.
    DropBig(usize),
    /// Set a finalizer.
    SetFinalizer { at: usize, tiny: bool, mode: Mode },
    /// Clear a finalizer (fine when none is set).
    ClearFinalizer { at: usize, tiny: bool },
    /// `heap.collect()`.
    Collect,
    /// `wait_finalizers()`.
    Wait,
    /// Make a weak handle of an object (`tiny`: of a tiny object).
    Downgrade { at: usize, tiny: bool },
    /// Upgrade a weak handle; a handle it gives becomes a root.
    Upgrade { at: usize, tiny: bool },
    /// Drop a weak handle.
    DropWeak { at: usize, tiny: bool },
    /// Add a cleanup to an object (`tiny`: a tiny object), with a handle to another object
    /// as its argument or none.
    AddCleanup {
        at: usize,
        tiny: bool,
        arg: Option<usize>,
    },
    /// Stop a cleanup.
    StopCleanup(usize),
    /// Replace an object's `many` with a new slice (`Heap::alloc_slice`) of up to three
    /// objects (the slice object is dropped with the handle it replaces): `Link`s, or
    /// (`bare`) bare handles.
    LinkMany {
        from: usize,
        to: [Option<usize>; 3],
        bare: bool,
    },
    /// Allocate an object of a type built at run time (`Heap::alloc_zeroed`):
    /// `model.Built { id: i64, a: Gc<Obj>, b: Gc<Obj> }`, its pointers nil.
    AllocBuilt,
    /// Set pointer `slot` of a built object to an object, or to nil
    /// (`reflect::set_field`).
    SetBuilt {
        at: usize,
        slot: usize,
        to: Option<usize>,
    },
    /// Drop a built object's handle.
    DropBuilt(usize),
    /// Set the program's `WeakMap` entry of an object (the key) to another object (the
    /// value), replacing the key's entry if it has one.
    MapInsert { key: usize, value: usize },
    /// Look an object up in the map (`get`, `contains_key`): a value it gives back is
    /// dropped at once.
    MapGet(usize),
    /// Remove an object's entry from the map; the value it gives back is dropped at once.
    MapRemove(usize),
    /// `prune` the map, and check its `len`.
    MapPrune,
    /// One step of collection (`Heap::collect_step`) of about this many microseconds
    /// (0: the least step there is): starts a cycle when none is in progress, and the
    /// operations after it run inside that cycle until a step ends it.
    Step(u32),
    /// Allocate a spare slice of this many `Link`s (1 to 3) that link to no object, kept
    /// in the program's pool. Spare slices tied into cycles (`TieSpare`) and dropped
    /// (`DropSpare`) are garbage only a collection finds whose destructors only free:
    /// the release step drops them. They reach no object, so the model's reachability
    /// does not see them; `finish` counts their `Code` shares.
    Spare(usize),
    /// Point the first link of spare slice `from` at spare slice `to` (itself too).
    TieSpare { from: usize, to: usize },
    /// Drop a spare slice's handle.
    DropSpare(usize),
}

/// How many kinds of operation `Op::decode` tells apart.
const KINDS: u8 = 23;

impl Op {
    /// Decodes one operation from fuzzer bytes (`None` when they run out).
    pub fn decode(b: &mut &[u8]) -> Option<Op> {
        fn byte(b: &mut &[u8]) -> Option<u8> {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            Some(x)
        }
        let opt = |x: u8| (x & 0x80 == 0).then_some((x & 0x7f) as usize);
        let k = byte(b)?;
        Some(match k % KINDS {
            0 => Op::Alloc {
                links: [opt(byte(b)?), opt(byte(b)?)],
                leaf: opt(byte(b)?),
                unregister: opt(byte(b)?),
            },
            1 if k >= 128 => Op::MapPrune,
            1 => Op::AllocTiny,
            2 => Op::Link {
                from: byte(b)? as usize,
                slot: (k / KINDS) as usize % 2,
                to: opt(byte(b)?),
            },
            3 => Op::Leaf {
                from: byte(b)? as usize,
                to: opt(byte(b)?),
            },
            4 if k >= 128 => Op::Map(byte(b)? as usize),
            4 => Op::Clone(byte(b)? as usize),
            5 => Op::Drop {
                at: byte(b)? as usize,
                tiny: k >= 128,
            },
            6 => Op::SetFinalizer {
                at: byte(b)? as usize,
                tiny: k >= 128,
                mode: [Mode::Plain, Mode::Resurrect, Mode::Rearm][(k / KINDS) as usize % 3],
            },
            7 => Op::ClearFinalizer {
                at: byte(b)? as usize,
                tiny: k >= 128,
            },
            8 if k >= 128 => Op::Spare(usize::from(k / KINDS) % 3 + 1),
            8 => Op::Collect,
            9 if k >= 128 => Op::DropMapped(byte(b)? as usize),
            9 => Op::Wait,
            10 => Op::Register(byte(b)? as usize),
            11 => Op::ThreadLocal(byte(b)? as usize),
            12 if k >= 128 => Op::TieSpare {
                from: byte(b)? as usize,
                to: byte(b)? as usize,
            },
            12 => Op::AllocBig {
                link: opt(byte(b)?),
            },
            13 if k >= 128 => Op::DropSpare(byte(b)? as usize),
            13 => Op::DropBig(byte(b)? as usize),
            14 => Op::Downgrade {
                at: byte(b)? as usize,
                tiny: k >= 128,
            },
            15 => Op::Upgrade {
                at: byte(b)? as usize,
                tiny: k >= 128,
            },
            16 => Op::DropWeak {
                at: byte(b)? as usize,
                tiny: k >= 128,
            },
            17 => Op::AddCleanup {
                at: byte(b)? as usize,
                tiny: k >= 128,
                arg: opt(byte(b)?),
            },
            18 if k >= 128 => Op::MapGet(byte(b)? as usize),
            18 => Op::StopCleanup(byte(b)? as usize),
            19 if k >= 128 => Op::MapInsert {
                key: byte(b)? as usize,
                value: byte(b)? as usize,
            },
            20 if k >= 128 => Op::AllocBuilt,
            20 => Op::SetBuilt {
                at: byte(b)? as usize,
                slot: (k / KINDS) as usize % 2,
                to: opt(byte(b)?),
            },
            21 if k >= 128 => Op::MapRemove(byte(b)? as usize),
            21 => Op::DropBuilt(byte(b)? as usize),
            22 => Op::Step(u32::from(k / KINDS) % 3 * 10),
            _ => Op::LinkMany {
                from: byte(b)? as usize,
                to: [opt(byte(b)?), opt(byte(b)?), opt(byte(b)?)],
                bare: (k / KINDS) % 2 == 1,
            },
        })
    }
}

#[derive(Clone, Debug)]
struct ModelObj {
    links: [Option<u64>; 2],
    leaf: Option<u64>,
    /// The targets of `Obj::many` (or `Obj::bare`), in order.
    many: Vec<u64>,
    /// They are in `Obj::bare`.
    bare: bool,
    /// An object of a built type (`Op::AllocBuilt`): no destructor, no finalizer.
    built: bool,
    /// The tiny block's address, for a tiny object.
    block: Option<usize>,
    /// Set while a finalizer is armed.
    armed: Option<Mode>,
}

impl ModelObj {
    /// The objects this one points to: its links, its leaf, its slice's elements.
    fn edges(&self) -> impl Iterator<Item = u64> + '_ {
        self.links
            .iter()
            .chain([&self.leaf])
            .flatten()
            .copied()
            .chain(self.many.iter().copied())
    }
}

/// What the model says a cycle does, from what its marking reaches.
struct Prediction {
    /// The objects marked (tiny ones by their blocks, `marked_blocks`).
    reached: BTreeSet<u64>,
    marked_blocks: BTreeSet<usize>,
    /// Armed and unmarked: resurrected, their finalizers queued.
    queued: BTreeSet<u64>,
    /// Unmarked and not resurrected (nor in a resurrected tiny block): freed.
    freed: BTreeSet<u64>,
}

impl Prediction {
    fn marked(&self, id: &u64, o: &ModelObj) -> bool {
        match o.block {
            Some(b) => self.marked_blocks.contains(&b),
            None => self.reached.contains(id),
        }
    }
}

/// A cycle in progress in steps (`Op::Step`), as the model has it.
struct Stepping {
    /// What its marking reaches from the roots: the snapshot at its start, what was
    /// allocated since, what weak handles gave back before marking ended.
    marked: BTreeSet<u64>,
    /// The destructors that ran before it started.
    early: BTreeSet<u64>,
    /// The heap's `MemStats::num_gc` at its start: it moves when marking ends.
    num_gc: u64,
    /// Set when its marking ended.
    ended: Option<Prediction>,
}

/// `model.Built { id: i64, a: Gc<Obj>, b: Gc<Obj> }`, built at run time.
fn built_type() -> &'static fing::Type {
    TypeBuilder::structure(Some("model.Built"))
        .field("id", i64::TYPE)
        .field("a", Gc::<Obj>::TYPE)
        .field("b", Gc::<Obj>::TYPE)
        .build()
}

/// A fing heap and its model, driven by `apply`.
pub struct World {
    heap: Heap,
    roots: Vec<Gc<Obj>>,
    tiny_roots: Vec<Gc<Tiny>>,
    bigs: Vec<Gc<Big>>,
    /// Objects of the built type `model.Built`, with their ids.
    built: Vec<(u64, Value)>,
    built_ty: &'static fing::Type,
    /// Handles made by `Op::Map`, with the id of the object they were mapped from.
    mapped: Vec<(u64, Gc<str>, Gc<u64>)>,
    globals: Arc<Mutex<Vec<Gc<Obj>>>>,
    tiny_globals: Arc<Mutex<Vec<Gc<Tiny>>>>,
    ran: Log,
    shared: Shared,
    /// Shared by every `Link` made (not by `Shared`, which every token clones).
    code: Arc<Code>,
    /// Spare slices (`Op::Spare`).
    spares: Vec<Gc<[Link]>>,
    next_id: u64,
    model: BTreeMap<u64, ModelObj>,
    model_globals: BTreeSet<u64>,
    /// The model's registry: the ids of its entries (one per entry).
    model_registry: Vec<u64>,
    /// What each object's destructor takes out of the registry.
    unregisters: BTreeMap<u64, u64>,
    /// Destructors that ran since the last check whose registry entries the model took
    /// already (`snapshot`): a cycle in steps that `collect()` abandons is followed by a
    /// second snapshot, which must not take them twice.
    taken_early: BTreeSet<u64>,
    /// Queued by the last collection, not yet checked against what ran.
    pending: BTreeSet<u64>,
    /// Weak handles, each with its object's id and whether the model says it is nil.
    weaks: Vec<(u64, Weak<Obj>, bool)>,
    tiny_weaks: Vec<(u64, Weak<Tiny>, bool)>,
    /// The cleanups added, by key (stopping one that ran or was queued is harmless).
    cleanup_handles: Vec<(u64, Cleanup)>,
    /// The model's armed cleanups: key -> (object id, argument's object id).
    cleanups: BTreeMap<u64, (u64, Option<u64>)>,
    /// Keys of the cleanups that ran, pushed by the cleanups themselves.
    cleanups_ran: Log,
    /// Queued by the last collection, not yet checked against what ran.
    pending_cleanups: BTreeSet<u64>,
    /// Of those, stopped after their cycle's marking ended and before it did: fing may not
    /// have queued them yet (its cleanups step comes after the weak clearing step, each
    /// over several steps), and then the stop cancels them, as Go's `Cleanup.Stop` does
    /// until the sweep queues a cleanup. Either is right.
    stopped_in_gap: BTreeSet<u64>,
    next_key: u64,
    /// The heap runs its finalizers and cleanups at safe points
    /// (`HeapConfig::finalizers_at_safe_points`): `sync` runs them
    /// (`Heap::run_finalizers`), after checking that none ran on the finalizer thread.
    safe_points: bool,
    /// The cycle in progress in steps, if any.
    stepping: Option<Stepping>,
    /// The program's weak-keyed map (ephemerons), and the model's: key id -> value id,
    /// for the entries whose key no collection has found unreachable.
    map: WeakMap<Obj, Obj>,
    model_map: BTreeMap<u64, u64>,
}

impl Default for World {
    fn default() -> World {
        World::new()
    }
}

trait HasId {
    fn id(&self) -> u64;
}

impl HasId for Obj {
    fn id(&self) -> u64 {
        self.id
    }
}

impl HasId for Tiny {
    fn id(&self) -> u64 {
        self.id
    }
}

/// The finalizer of `mode` (boxed: a re-arming finalizer sets another one).
fn finalizer<T: HasId + Trace + Send + Sync + 'static>(
    ran: Log,
    globals: Arc<Mutex<Vec<Gc<T>>>>,
    mode: Mode,
) -> Box<dyn FnOnce(Gc<T>) + Send> {
    Box::new(move |o: Gc<T>| {
        ran.lock().unwrap().push(o.id());
        match mode {
            Mode::Plain => {}
            Mode::Resurrect => globals.lock().unwrap().push(o),
            Mode::Rearm => {
                let again = finalizer(ran, globals, Mode::Plain);
                o.set_finalizer(again)
                    .expect("re-arming inside a finalizer");
            }
        }
    })
}

/// Sets or clears a finalizer on `g` and mirrors it in `m`, checking fing's answer.
fn arm<T: HasId + Trace + Send + Sync + 'static>(
    g: &Gc<T>,
    m: &mut ModelObj,
    mode: Option<Mode>,
    ran: &Log,
    globals: &Arc<Mutex<Vec<Gc<T>>>>,
) {
    match mode {
        None => {
            g.clear_finalizer().expect("clearing a finalizer");
            m.armed = None;
        }
        Some(_) if m.armed.is_some() => {
            let e = g.set_finalizer(|_| ()).expect_err("a second finalizer");
            assert!(e.to_string().contains("finalizer already set"), "{e}");
        }
        Some(mode) => {
            g.set_finalizer(finalizer(ran.clone(), globals.clone(), mode))
                .expect("setting a finalizer");
            m.armed = Some(mode);
        }
    }
}

thread_local! {
    /// A thread's own cache of handles (`Op::ThreadLocal`).
    static KEPT: std::cell::RefCell<Vec<Gc<Obj>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl World {
    /// A fresh heap (no automatic collections) and an empty model.
    pub fn new() -> World {
        let mut c = HeapConfig::default();
        c.gogc = None;
        World::on(Heap::new(c))
    }

    /// An empty model on `heap`, which may hold what earlier worlds left behind (a fuzzer
    /// reuses one heap). Those objects are never reachable from this world's; only a tiny
    /// block shared with one could be, so this first allocates throwaway tiny objects
    /// until one lands in a new block.
    pub fn on(heap: Heap) -> World {
        let block = |t: &Gc<Tiny>| Gc::object_addr(t);
        let mut prev = heap.alloc(Tiny { id: 0 });
        loop {
            let next = heap.alloc(Tiny { id: 0 });
            if block(&next) != block(&prev) {
                break;
            }
            prev = next;
        }
        World {
            shared: Shared {
                dropped: Arc::default(),
                lock: Arc::default(),
                registry: Arc::default(),
                made: Arc::default(),
                heap: heap.clone(),
            },
            heap,
            code: Arc::new(Code {
                name: "links".to_string(),
            }),
            spares: Vec::new(),
            roots: Vec::new(),
            tiny_roots: Vec::new(),
            bigs: Vec::new(),
            built: Vec::new(),
            built_ty: built_type(),
            mapped: Vec::new(),
            globals: Arc::default(),
            tiny_globals: Arc::default(),
            ran: Arc::default(),
            next_id: 1,
            model: BTreeMap::new(),
            model_globals: BTreeSet::new(),
            model_registry: Vec::new(),
            unregisters: BTreeMap::new(),
            taken_early: BTreeSet::new(),
            pending: BTreeSet::new(),
            weaks: Vec::new(),
            tiny_weaks: Vec::new(),
            cleanup_handles: Vec::new(),
            cleanups: BTreeMap::new(),
            cleanups_ran: Arc::default(),
            pending_cleanups: BTreeSet::new(),
            stopped_in_gap: BTreeSet::new(),
            next_key: 1,
            safe_points: false,
            stepping: None,
            map: WeakMap::new(),
            model_map: BTreeMap::new(),
        }
    }

    /// A fresh heap whose finalizers and cleanups run at safe points (`sync` runs them on
    /// this thread), and an empty model.
    pub fn with_safe_points() -> World {
        let mut c = HeapConfig::default();
        c.gogc = None;
        c.finalizers_at_safe_points = true;
        let mut w = World::on(Heap::new(c));
        w.safe_points = true;
        w
    }

    fn pick(n: usize, i: usize) -> Option<usize> {
        (n > 0).then(|| i % n)
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn token(&mut self, id: u64, unregister: Option<usize>) -> Token {
        let unregister = unregister
            .and_then(|i| Self::pick(self.model_registry.len(), i))
            .map(|i| self.model_registry[i]);
        if let Some(y) = unregister {
            self.unregisters.insert(id, y);
        }
        Token {
            id,
            unregister,
            shared: self.shared.clone(),
        }
    }

    /// Runs one operation on fing and on the model, and checks them where it syncs.
    pub fn apply(&mut self, op: &Op) {
        let (n, nt) = (self.roots.len(), self.tiny_roots.len());
        match *op {
            Op::Alloc {
                links,
                leaf,
                unregister,
            } => {
                let id = self.new_id();
                let to = |l: Option<usize>| l.and_then(|i| Self::pick(n, i));
                let [a, b] = links.map(|l| to(l).map(|i| self.roots[i].clone()));
                let leaf = leaf
                    .and_then(|i| Self::pick(nt, i))
                    .map(|i| self.tiny_roots[i].clone());
                let m = ModelObj {
                    links: [a.as_ref().map(|g| g.id), b.as_ref().map(|g| g.id)],
                    leaf: leaf.as_ref().map(|t| t.id),
                    many: Vec::new(),
                    bare: false,
                    built: false,
                    block: None,
                    armed: None,
                };
                let token = self.token(id, unregister);
                // Allocated holding the lock destructors take.
                let lock = self.shared.lock.clone();
                let _g = lock.lock().unwrap();
                self.roots.push(self.heap.alloc(Obj {
                    id,
                    links: [GcCell::new(a), GcCell::new(b)],
                    leaf: GcCell::new(leaf),
                    many: GcCell::new(None),
                    bare: GcCell::new(None),
                    name: format!("obj {id}"),
                    token,
                }));
                self.model.insert(id, m);
                // Allocated black inside a cycle in steps.
                self.shade(id);
            }
            Op::AllocTiny => {
                let id = self.new_id();
                let t = self.heap.alloc(Tiny { id });
                let block = Gc::object_addr(&t).expect("a tiny object is in the heap");
                let m = ModelObj {
                    links: [None; 2],
                    leaf: None,
                    many: Vec::new(),
                    bare: false,
                    built: false,
                    block: Some(block.as_ptr() as usize),
                    armed: None,
                };
                self.model.insert(id, m);
                // Allocated black inside a cycle in steps.
                self.shade(id);
                self.tiny_roots.push(t);
            }
            Op::AllocBig { link } => {
                let id = self.new_id();
                let target = link
                    .and_then(|i| Self::pick(n, i))
                    .map(|i| self.roots[i].clone());
                let m = ModelObj {
                    links: [target.as_ref().map(|g| g.id), None],
                    leaf: None,
                    many: Vec::new(),
                    bare: false,
                    built: false,
                    block: None,
                    armed: None,
                };
                let token = self.token(id, None);
                let big = self.heap.alloc(Big {
                    id,
                    link: GcCell::new(target),
                    token,
                });
                assert!(
                    (Gc::as_ptr(&big) as usize).is_multiple_of(16384),
                    "a 16 KiB-aligned object at {:p}",
                    Gc::as_ptr(&big)
                );
                self.bigs.push(big);
                self.model.insert(id, m);
                // Allocated black inside a cycle in steps.
                self.shade(id);
            }
            Op::AllocBuilt => {
                let id = self.new_id();
                let v = self
                    .heap
                    .alloc_zeroed(self.built_ty)
                    .expect("a built object");
                reflect::set_field(&v, 0, Value::from(id as i64)).expect("its id");
                self.model.insert(
                    id,
                    ModelObj {
                        links: [None; 2],
                        leaf: None,
                        many: Vec::new(),
                        bare: false,
                        built: true,
                        block: None,
                        armed: None,
                    },
                );
                self.shade(id);
                self.built.push((id, v));
            }
            Op::SetBuilt { at, slot, to } => {
                let Some(b) = Self::pick(self.built.len(), at) else {
                    return;
                };
                let target = to
                    .and_then(|t| Self::pick(n, t))
                    .map(|t| self.roots[t].clone());
                let tid = target.as_ref().map(|g| g.id);
                let (id, v) = &self.built[b];
                let new = target.map_or_else(Value::nil, Value::from);
                reflect::set_field(v, 1 + slot, new).expect("a pointer to an Obj");
                self.model.get_mut(id).unwrap().links[slot] = tid;
            }
            Op::DropBuilt(i) => {
                if let Some(i) = Self::pick(self.built.len(), i) {
                    self.built.swap_remove(i);
                }
            }
            Op::DropBig(i) => {
                if let Some(i) = Self::pick(self.bigs.len(), i) {
                    self.bigs.swap_remove(i);
                }
            }
            Op::Link { from, slot, to } => {
                let Some(f) = Self::pick(n, from) else { return };
                let target = to
                    .and_then(|t| Self::pick(n, t))
                    .map(|t| self.roots[t].clone());
                let tid = target.as_ref().map(|g| g.id);
                self.roots[f].links[slot].set(target);
                self.model.get_mut(&self.roots[f].id).unwrap().links[slot] = tid;
            }
            Op::Spare(len) => {
                let links = (0..len)
                    .map(|_| Link {
                        to: None,
                        next: GcCell::new(None),
                        code: self.code.clone(),
                    })
                    .collect::<Vec<_>>();
                self.spares.push(self.heap.alloc_slice(links));
            }
            Op::TieSpare { from, to } => {
                let n = self.spares.len();
                let (Some(f), Some(t)) = (Self::pick(n, from), Self::pick(n, to)) else {
                    return;
                };
                let target = self.spares[t].clone();
                self.spares[f][0].next.set(Some(target));
            }
            Op::DropSpare(at) => {
                if let Some(i) = Self::pick(self.spares.len(), at) {
                    self.spares.swap_remove(i);
                }
            }
            Op::LinkMany { from, to, bare } => {
                let Some(f) = Self::pick(n, from) else { return };
                if bare {
                    let targets: Vec<Gc<Obj>> = to
                        .iter()
                        .filter_map(|t| t.and_then(|t| Self::pick(n, t)))
                        .map(|t| self.roots[t].clone())
                        .collect();
                    let ids = targets.iter().map(|g| g.id).collect();
                    let slice = self.heap.alloc_slice(targets);
                    self.roots[f].bare.set(Some(slice));
                    self.roots[f].many.set(None);
                    let m = self.model.get_mut(&self.roots[f].id).unwrap();
                    (m.many, m.bare) = (ids, true);
                    return;
                }
                let targets: Vec<Link> = to
                    .iter()
                    .filter_map(|t| t.and_then(|t| Self::pick(n, t)))
                    .map(|t| Link {
                        to: Some(self.roots[t].clone()),
                        next: GcCell::new(None),
                        code: self.code.clone(),
                    })
                    .collect();
                let ids = targets
                    .iter()
                    .filter_map(|l| l.to.as_ref())
                    .map(|g| g.id)
                    .collect();
                let slice = self.heap.alloc_slice(targets);
                self.roots[f].many.set(Some(slice));
                self.roots[f].bare.set(None);
                let m = self.model.get_mut(&self.roots[f].id).unwrap();
                (m.many, m.bare) = (ids, false);
            }
            Op::Leaf { from, to } => {
                let Some(f) = Self::pick(n, from) else { return };
                let target = to
                    .and_then(|t| Self::pick(nt, t))
                    .map(|t| self.tiny_roots[t].clone());
                let tid = target.as_ref().map(|g| g.id);
                self.roots[f].leaf.set(target);
                self.model.get_mut(&self.roots[f].id).unwrap().leaf = tid;
            }
            Op::Clone(i) => {
                if let Some(i) = Self::pick(n, i) {
                    self.roots.push(self.roots[i].clone());
                }
            }
            Op::Register(i) => {
                if let Some(i) = Self::pick(n, i) {
                    let g = self.roots[i].clone();
                    self.model_registry.push(g.id);
                    self.shared.registry.lock().unwrap().push((g.id, g));
                }
            }
            Op::ThreadLocal(i) => {
                if let Some(i) = Self::pick(n, i) {
                    let g = self.roots[i].clone();
                    std::thread::spawn(move || {
                        // Touched first: its destructor runs after fing's thread state is
                        // gone, and drops the handle then.
                        KEPT.with(|k| k.borrow_mut().reserve(1));
                        drop(g.clone()); // fing's thread state, made now
                        KEPT.with(|k| k.borrow_mut().push(g));
                    })
                    .join()
                    .expect("a thread exits cleanly with a handle in a thread-local");
                }
            }
            Op::Map(i) => {
                if let Some(i) = Self::pick(n, i) {
                    let g = &self.roots[i];
                    self.mapped
                        .push((g.id, g.map(|o| o.name.as_str()), g.map(|o| &o.id)));
                }
            }
            Op::DropMapped(i) => {
                if let Some(i) = Self::pick(self.mapped.len(), i) {
                    self.mapped.swap_remove(i);
                }
            }
            Op::Drop { at, tiny: false } => {
                if let Some(i) = Self::pick(n, at) {
                    self.roots.swap_remove(i);
                }
            }
            Op::Drop { at, tiny: true } => {
                if let Some(i) = Self::pick(nt, at) {
                    self.tiny_roots.swap_remove(i);
                }
            }
            Op::SetFinalizer { at, tiny, mode } => self.arm(at, tiny, Some(mode)),
            Op::ClearFinalizer { at, tiny } => self.arm(at, tiny, None),
            Op::Collect => self.collect_and_check(),
            Op::Wait => self.sync(),
            Op::Downgrade { at, tiny: false } => {
                if let Some(i) = Self::pick(n, at) {
                    let g = &self.roots[i];
                    self.weaks.push((g.id, g.downgrade(), false));
                }
            }
            Op::Downgrade { at, tiny: true } => {
                if let Some(i) = Self::pick(nt, at) {
                    let g = &self.tiny_roots[i];
                    self.tiny_weaks.push((g.id, g.downgrade(), false));
                }
            }
            Op::Upgrade { at, tiny: false } => {
                if let Some(i) = Self::pick(self.weaks.len(), at) {
                    let (id, w, nil) = &self.weaks[i];
                    match w.upgrade() {
                        Some(g) => {
                            assert!(
                                !nil,
                                "a weak handle of {id} upgraded after the model cleared it"
                            );
                            assert_eq!(g.id, *id, "a weak handle upgraded to another object");
                            self.shade(g.id);
                            self.roots.push(g);
                        }
                        None => assert!(
                            nil,
                            "a weak handle of {id} is nil while the model has it live"
                        ),
                    }
                }
            }
            Op::Upgrade { at, tiny: true } => {
                if let Some(i) = Self::pick(self.tiny_weaks.len(), at) {
                    let (id, w, nil) = &self.tiny_weaks[i];
                    match w.upgrade() {
                        Some(g) => {
                            assert!(
                                !nil,
                                "a weak handle of tiny {id} upgraded after the model cleared it"
                            );
                            assert_eq!(g.id, *id, "a weak handle upgraded to another tiny object");
                            self.shade(g.id);
                            self.tiny_roots.push(g);
                        }
                        None => assert!(
                            nil,
                            "a weak handle of tiny {id} is nil while the model has it live"
                        ),
                    }
                }
            }
            Op::DropWeak { at, tiny: false } => {
                if let Some(i) = Self::pick(self.weaks.len(), at) {
                    self.weaks.swap_remove(i);
                }
            }
            Op::DropWeak { at, tiny: true } => {
                if let Some(i) = Self::pick(self.tiny_weaks.len(), at) {
                    self.tiny_weaks.swap_remove(i);
                }
            }
            Op::AddCleanup { at, tiny, arg } => self.add_cleanup(at, tiny, arg),
            Op::MapInsert { key, value } => {
                if let (Some(k), Some(v)) = (Self::pick(n, key), Self::pick(n, value)) {
                    let (kid, vid) = (self.roots[k].id, self.roots[v].id);
                    let old = self.map.insert(&self.roots[k], self.roots[v].clone());
                    assert_eq!(
                        old.map(|o| o.id),
                        self.model_map.insert(kid, vid),
                        "the value a map insert replaced"
                    );
                }
            }
            Op::MapGet(at) => {
                if let Some(i) = Self::pick(n, at) {
                    let (k, id) = (&self.roots[i], self.roots[i].id);
                    let want = self.model_map.get(&id).copied();
                    assert_eq!(self.map.contains_key(k), want.is_some(), "map holds {id}");
                    let got = self.map.get(k).map(|v| v.id);
                    assert_eq!(got, want, "the map's value of {id}");
                    // An upgrade of the value: a cycle marking keeps it.
                    if let Some(v) = got {
                        self.shade(v);
                    }
                }
            }
            Op::MapRemove(at) => {
                if let Some(i) = Self::pick(n, at) {
                    let id = self.roots[i].id;
                    let got = self.map.remove(&self.roots[i]).map(|v| v.id);
                    assert_eq!(got, self.model_map.remove(&id), "the value map remove gave");
                    if let Some(v) = got {
                        self.shade(v);
                    }
                }
            }
            Op::MapPrune => {
                // Looks at every key without handing any out: keeps none of them.
                self.map.prune();
                assert_eq!(
                    self.map.len(),
                    self.model_map.len(),
                    "the map's live entries"
                );
            }
            Op::Step(us) => {
                self.step(Duration::from_micros(us.into()));
            }
            Op::StopCleanup(i) => {
                if let Some(i) = Self::pick(self.cleanup_handles.len(), i) {
                    let (key, c) = self.cleanup_handles[i];
                    c.stop();
                    // Stopped if still armed; a queued or run cleanup is left as it is.
                    self.cleanups.remove(&key);
                    if self.stepping.as_ref().is_some_and(|s| s.ended.is_some())
                        && self.pending_cleanups.remove(&key)
                    {
                        self.stopped_in_gap.insert(key);
                    }
                }
            }
        }
    }

    fn add_cleanup(&mut self, at: usize, tiny: bool, arg: Option<usize>) {
        let arg = arg
            .and_then(|i| Self::pick(self.roots.len(), i))
            .map(|i| self.roots[i].clone());
        let key = self.next_key;
        let ran = self.cleanups_ran.clone();
        let f = move |a: Option<Gc<Obj>>| {
            ran.lock().unwrap().push(key);
            drop(a);
        };
        let arg_id = arg.as_ref().map(|a| a.id);
        let (id, r) = if tiny {
            let Some(i) = Self::pick(self.tiny_roots.len(), at) else {
                return;
            };
            let g = &self.tiny_roots[i];
            (g.id, g.add_cleanup(arg, f))
        } else {
            let Some(i) = Self::pick(self.roots.len(), at) else {
                return;
            };
            let g = &self.roots[i];
            (g.id, g.add_cleanup(arg, f))
        };
        if arg_id == Some(id) {
            let e = r.expect_err("a cleanup whose argument is its object");
            assert_eq!(e, fing::FinalizerError::ArgIsObject);
            return;
        }
        let c = r.expect("adding a cleanup");
        self.next_key += 1;
        self.cleanup_handles.push((key, c));
        self.cleanups.insert(key, (id, arg_id));
    }

    fn arm(&mut self, at: usize, tiny: bool, mode: Option<Mode>) {
        if tiny {
            let Some(i) = Self::pick(self.tiny_roots.len(), at) else {
                return;
            };
            let g = &self.tiny_roots[i];
            let m = self.model.get_mut(&g.id).unwrap();
            arm(g, m, mode, &self.ran, &self.tiny_globals);
        } else {
            let Some(i) = Self::pick(self.roots.len(), at) else {
                return;
            };
            let g = &self.roots[i];
            let m = self.model.get_mut(&g.id).unwrap();
            arm(g, m, mode, &self.ran, &self.globals);
        }
    }

    /// The objects reachable from `start` in the model (links and leaves).
    fn closure(&self, start: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<u64> = start.into_iter().collect();
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                let m = &self.model[&id];
                todo.extend(m.edges());
                // An ephemeron: its value is reached exactly when its key is.
                todo.extend(self.model_map.get(&id));
            }
        }
        seen
    }

    /// Every root of the model: the program's handles, the globals finalizers resurrected
    /// into, and the registry (as `registry` has it).
    fn roots_with(&self, registry: &[u64]) -> Vec<u64> {
        self.roots
            .iter()
            .map(|g| g.id)
            .chain(self.tiny_roots.iter().map(|g| g.id))
            .chain(self.bigs.iter().map(|g| g.id))
            .chain(self.built.iter().map(|b| b.0))
            .chain(self.mapped.iter().map(|m| m.0))
            .chain(self.model_globals.iter().copied())
            .chain(registry.iter().copied())
            .chain(self.cleanups.values().filter_map(|c| c.1))
            .collect()
    }

    /// The registry once the destructors of `dead` have taken their entries.
    fn registry_after(&self, dead: &BTreeSet<u64>) -> Vec<u64> {
        let mut r = self.model_registry.clone();
        for d in dead {
            if let Some(y) = self.unregisters.get(d) {
                if let Some(i) = r.iter().position(|e| e == y) {
                    r.swap_remove(i);
                }
            }
        }
        r
    }

    /// Waits for the finalizers of the last collection and checks that exactly the
    /// model's queued set ran, each once; then applies what they did to the model.
    fn sync(&mut self) {
        // A cycle in steps whose marking ended queues its finalizers over its next steps
        // (and may have handed some over already): it is finished first, so that all of
        // them are queued.
        if self.stepping.as_ref().is_some_and(|s| s.ended.is_some()) {
            while !self.step(Duration::from_secs(1)) {}
        }
        if self.safe_points {
            // Queued on the heap, not on the finalizer thread: nothing ran until now.
            fing::wait_finalizers();
            assert!(
                self.ran.lock().unwrap().is_empty() && self.cleanups_ran.lock().unwrap().is_empty(),
                "a safe-point heap's finalizer or cleanup ran before run_finalizers"
            );
            self.heap.run_finalizers();
            assert_eq!(self.heap.pending_finalizers(), 0);
        }
        fing::wait_finalizers();
        let ran = std::mem::take(&mut *self.cleanups_ran.lock().unwrap());
        let mut ran_set: BTreeSet<u64> = ran.iter().copied().collect();
        assert_eq!(ran.len(), ran_set.len(), "a cleanup ran twice: {ran:?}");
        for k in std::mem::take(&mut self.stopped_in_gap) {
            ran_set.remove(&k);
        }
        assert_eq!(
            ran_set,
            std::mem::take(&mut self.pending_cleanups),
            "cleanups that ran vs the model's queued set"
        );
        let ran = std::mem::take(&mut *self.ran.lock().unwrap());
        let ran_set: BTreeSet<u64> = ran.iter().copied().collect();
        assert_eq!(ran.len(), ran_set.len(), "a finalizer ran twice: {ran:?}");
        assert_eq!(
            ran_set, self.pending,
            "finalizers that ran vs the model's queued set"
        );
        for id in std::mem::take(&mut self.pending) {
            // Gone already: its finalizer dropped the last handle, and that drop freed it.
            let Some(o) = self.model.get_mut(&id) else {
                continue;
            };
            match o.armed.take().expect("a queued object was armed") {
                Mode::Plain => {}
                Mode::Resurrect => {
                    self.model_globals.insert(id);
                }
                Mode::Rearm => o.armed = Some(Mode::Plain),
            }
        }
    }

    /// The start of a cycle, on the model's side (after syncing the last one's
    /// finalizers): the registry without the entries destructors took, and the objects
    /// reachable now, the cycle's snapshot. Returns them with the destructors that ran
    /// before it.
    fn snapshot(&mut self) -> (BTreeSet<u64>, BTreeSet<u64>) {
        self.sync();
        // Destructors that ran since the last check (at count zero) took their registry
        // entries already: the collection sees the registry without them.
        let early: BTreeSet<u64> = self
            .shared
            .dropped
            .lock()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let fresh: BTreeSet<u64> = early.difference(&self.taken_early).copied().collect();
        self.model_registry = self.registry_after(&fresh);
        self.taken_early.extend(fresh);
        (self.closure(self.roots_with(&self.model_registry)), early)
    }

    /// The model's cycle from what its marking reaches from the roots (`base`): Go's
    /// markfin, then the two-pass sweep, with tiny blocks marked as a whole.
    fn predict(&self, base: &BTreeSet<u64>) -> Prediction {
        let fin_children: Vec<u64> = self
            .model
            .iter()
            .filter(|(id, o)| o.armed.is_some() && !base.contains(id))
            .flat_map(|(_, o)| o.edges())
            .collect();
        let reached = self.closure(base.iter().copied().chain(fin_children));
        let marked_blocks: BTreeSet<usize> = reached
            .iter()
            .filter_map(|id| self.model[id].block)
            .collect();
        let mut p = Prediction {
            reached,
            marked_blocks,
            queued: BTreeSet::new(),
            freed: BTreeSet::new(),
        };
        p.queued = self
            .model
            .iter()
            .filter(|(id, o)| o.armed.is_some() && !p.marked(id, o))
            .map(|(id, _)| *id)
            .collect();
        let resurrected_blocks: BTreeSet<usize> = p
            .queued
            .iter()
            .filter_map(|id| self.model[id].block)
            .collect();
        p.freed = self
            .model
            .iter()
            .filter(|(id, o)| !p.marked(id, o) && !p.queued.contains(id))
            .filter(|(_, o)| o.block.is_none_or(|b| !resurrected_blocks.contains(&b)))
            .map(|(id, _)| *id)
            .collect();
        p
    }

    /// One collection on both sides (after syncing the last one's finalizers), then the
    /// checks of what was freed and of what is left. A cycle in progress in steps is
    /// finished first if its marking ended, else `collect()` abandons it.
    pub fn collect_and_check(&mut self) {
        if self.stepping.as_ref().is_some_and(|s| s.ended.is_some()) {
            while !self.step(Duration::from_secs(1)) {}
        }
        self.stepping = None;
        let (base, early) = self.snapshot();
        let p = self.predict(&base);
        self.heap.collect();
        self.marking_ended(&p);
        self.cycle_ended(&p, &early);
    }

    /// `Op::Step`: one step on both sides. A cycle starts with a snapshot of what is
    /// reachable (and waits for the last one's finalizers first, so that none runs inside
    /// it); what is allocated while it runs is marked (black), and so is what a weak handle
    /// gives back before its marking ends (shaded), with all it reaches; everything else
    /// that was reachable at the snapshot stays marked however the program relinks and
    /// drops it (the snapshot barrier). When the heap's `num_gc` moves, marking ended: weak
    /// handles and finalizers are checked from then on as after a collection; when the step
    /// says the cycle ended, what it freed is checked. Returns whether it ended.
    fn step(&mut self, work: Duration) -> bool {
        if self.stepping.is_none() {
            let (marked, early) = self.snapshot();
            self.stepping = Some(Stepping {
                marked,
                early,
                num_gc: self.heap.stats().num_gc,
                ended: None,
            });
        }
        let done = self.heap.collect_step(work);
        let s = self.stepping.as_ref().expect("a cycle in steps");
        if s.ended.is_none() && self.heap.stats().num_gc > s.num_gc {
            let p = self.predict(&s.marked);
            self.marking_ended(&p);
            self.stepping.as_mut().expect("a cycle in steps").ended = Some(p);
        }
        if done {
            let s = self.stepping.take().expect("a cycle in steps");
            let p = s
                .ended
                .expect("fing::Heap::collect_step: a cycle ended before its marking");
            self.cycle_ended(&p, &s.early);
        }
        done
    }

    /// Marks, in a cycle in steps whose marking goes on, what the program reached from
    /// outside the snapshot (a weak handle's object) or allocated.
    fn shade(&mut self, id: u64) {
        if self.stepping.as_ref().is_some_and(|s| s.ended.is_none()) {
            let reached = self.closure([id]);
            let s = self.stepping.as_mut().expect("a cycle in steps");
            s.marked.extend(reached);
        }
    }

    /// A cycle's marking ended: its weak handles went nil, its finalizers and cleanups are
    /// queued (and may run from now on).
    fn marking_ended(&mut self, p: &Prediction) {
        // A weak handle goes nil when marking leaves its object unmarked (queued or
        // freed), and stays nil.
        let now_nil = |id: &u64, nil: bool| {
            nil || !p.marked(
                id,
                self.model
                    .get(id)
                    .expect("a live weak handle's object is in the model"),
            )
        };
        for (id, w, nil) in &mut self.weaks {
            *nil = now_nil(id, *nil);
            assert_eq!(
                w.upgrade().is_none(),
                *nil,
                "weak handle of {id} after a collection"
            );
        }
        for (id, w, nil) in &mut self.tiny_weaks {
            *nil = now_nil(id, *nil);
            assert_eq!(
                w.upgrade().is_none(),
                *nil,
                "weak handle of tiny {id} after a collection"
            );
        }
        // An ephemeron goes when marking leaves its key unmarked (freed or queued for its
        // finalizer), and takes its value's count with it.
        self.model_map.retain(|k, _| p.reached.contains(k));
        // The cleanups of what this cycle frees (an object with cleanups is never freed
        // at count zero, so only `freed` has them) are queued, and may run and drop their
        // arguments from now on (on the finalizer thread, as the collection goes on):
        // those arguments are roots no more.
        let fired: Vec<u64> = self
            .cleanups
            .iter()
            .filter(|(_, (id, _))| p.freed.contains(id))
            .map(|(k, _)| *k)
            .collect();
        for k in fired {
            self.cleanups.remove(&k);
            self.pending_cleanups.insert(k);
        }
        // An object whose finalizer ran and dropped its last handle may be freed by that
        // drop, on the finalizer thread: `sync` finds it gone.
        self.pending = p.queued.clone();
    }

    /// A cycle ended: the checks of what it freed (with what was freed at count zero since
    /// `early`) and of what is left.
    fn cycle_ended(&mut self, p: &Prediction, early: &BTreeSet<u64>) {
        let dropped = std::mem::take(&mut *self.shared.dropped.lock().unwrap());
        self.taken_early.clear();
        let dropped_set: BTreeSet<u64> = dropped.iter().copied().collect();
        assert_eq!(dropped.len(), dropped_set.len(), "a destructor ran twice");
        // Every object the model calls garbage was destroyed...
        let freed_objs: BTreeSet<u64> = p
            .freed
            .iter()
            .filter(|id| self.model[id].block.is_none() && !self.model[id].built)
            .copied()
            .collect();
        assert!(
            freed_objs.is_subset(&dropped_set),
            "garbage not destroyed: {:?}",
            freed_objs.difference(&dropped_set).collect::<Vec<_>>()
        );
        // ... and what else was (at count zero, after the destructors of the garbage took
        // registry entries) is unreachable once those entries are gone, and had no
        // finalizer to run first.
        for (k, (id, _)) in &self.cleanups {
            assert!(
                p.freed.contains(id) || !dropped_set.contains(id),
                "object {id} with cleanup {k} was destroyed outside a collection"
            );
        }
        let later: BTreeSet<u64> = dropped_set.difference(early).copied().collect();
        let registry = self.registry_after(&later);
        let live = self.closure(self.roots_with(&registry));
        for id in dropped_set.difference(&freed_objs) {
            let o = &self.model[id];
            assert!(
                !live.contains(id),
                "object {id} was destroyed while reachable"
            );
            // An armed object dies only after its finalizer ran: queued by this
            // collection, with a plain finalizer, which dropped the last handle (on the
            // finalizer thread, which may have run it already).
            assert!(
                o.armed.is_none() || (p.queued.contains(id) && o.armed == Some(Mode::Plain)),
                "object {id} was destroyed before its finalizer ran"
            );
        }
        self.model_registry = registry;
        for id in p.freed.iter().chain(&dropped_set) {
            self.model.remove(id);
        }
        self.check_intact();
    }

    /// Every handle the program holds reaches intact objects, as the model has them, and
    /// every object a destructor made is intact.
    fn check_intact(&self) {
        let mut seen = BTreeSet::new();
        let globals = self.globals.lock().unwrap().clone();
        let registry: Vec<Gc<Obj>> = self
            .shared
            .registry
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.1.clone())
            .collect();
        for g in self.roots.iter().chain(&globals).chain(&registry) {
            self.check_obj(g, &mut seen);
        }
        for b in &self.bigs {
            assert!(
                self.model.contains_key(&b.id),
                "reachable object {} was freed",
                b.id
            );
            assert_eq!(b.token.id, b.id, "object {} corrupted", b.id);
            let l = b.link.borrow().clone();
            assert_eq!(l.as_ref().map(|x| x.id), self.model[&b.id].links[0]);
            if let Some(x) = l {
                self.check_obj(&x, &mut seen);
            }
        }
        for (id, v) in &self.built {
            assert!(
                self.model.contains_key(id),
                "reachable built object {id} was freed"
            );
            let got = reflect::field(v, 0).expect("its id").downcast::<i64>().ok();
            assert_eq!(got, Some(*id as i64), "built object {id} corrupted");
            for slot in 0..2 {
                let l = reflect::field(v, 1 + slot).expect("a pointer field");
                let l = l.downcast_ref::<Gc<Obj>>().cloned();
                assert_eq!(
                    l.as_ref().map(|x| x.id),
                    self.model[id].links[slot],
                    "pointer {slot} of built object {id}"
                );
                if let Some(x) = l {
                    self.check_obj(&x, &mut seen);
                }
            }
        }
        let tiny_globals = self.tiny_globals.lock().unwrap().clone();
        for t in self.tiny_roots.iter().chain(&tiny_globals) {
            self.check_tiny(t);
        }
        for (id, name, own) in &self.mapped {
            assert!(
                self.model.contains_key(id),
                "mapped-from object {id} was freed"
            );
            assert_eq!(
                (&**name, **own),
                (&*format!("obj {id}"), *id),
                "mapped handles of {id}"
            );
        }
        for m in self.shared.made.lock().unwrap().iter() {
            assert_eq!(m.check, Made::check(m.id), "an object a destructor made");
        }
    }

    fn check_tiny(&self, t: &Gc<Tiny>) {
        let m = self.model.get(&t.id);
        let m = m.unwrap_or_else(|| panic!("reachable tiny object {} was freed", t.id));
        let block = Gc::object_addr(t).map(|b| b.as_ptr() as usize);
        assert_eq!(block, m.block, "tiny object {} moved or corrupted", t.id);
    }

    fn check_obj(&self, g: &Gc<Obj>, seen: &mut BTreeSet<u64>) {
        let m = self.model.get(&g.id);
        let m = m.unwrap_or_else(|| panic!("reachable object {} was freed", g.id));
        assert_eq!(g.token.id, g.id, "object {} corrupted", g.id);
        if !seen.insert(g.id) {
            return;
        }
        let leaf = g.leaf.borrow().clone();
        assert_eq!(leaf.as_ref().map(|t| t.id), m.leaf, "leaf of {}", g.id);
        if let Some(t) = leaf {
            self.check_tiny(&t);
        }
        let many = g.many.borrow().clone();
        let bare = g.bare.borrow().clone();
        assert!(many.is_none() || bare.is_none(), "both slices of {}", g.id);
        let real: Vec<u64> = many
            .iter()
            .flat_map(|s| s.iter().filter_map(|x| x.to.as_ref().map(|g| g.id)))
            .chain(bare.iter().flat_map(|s| s.iter().map(|x| x.id)))
            .collect();
        assert_eq!(real, m.many, "the slice of {}", g.id);
        for x in bare.iter().flat_map(|s| s.iter()) {
            self.check_obj(x, seen);
        }
        for x in many.iter().flat_map(|s| s.iter()) {
            assert_eq!(x.code.name, "links", "a link of {}", g.id);
            assert!(x.next.borrow().is_none(), "a link of {}", g.id);
            if let Some(to) = &x.to {
                self.check_obj(to, seen);
            }
        }
        for (slot, l) in g.links.iter().enumerate() {
            let real = l.borrow().clone();
            assert_eq!(
                real.as_ref().map(|x| x.id),
                m.links[slot],
                "links of {}",
                g.id
            );
            if let Some(x) = real {
                self.check_obj(&x, seen);
            }
        }
    }

    /// Collects until nothing changes, dropping what finalizers resurrect.
    fn settle(&mut self) {
        let mut last = usize::MAX;
        while self.model.len() != last
            || !self.pending.is_empty()
            || !self.pending_cleanups.is_empty()
        {
            last = self.model.len();
            self.sync();
            self.globals.lock().unwrap().clear();
            self.tiny_globals.lock().unwrap().clear();
            self.model_globals.clear();
            self.collect_and_check();
        }
    }

    /// Drops every handle and collects until nothing changes: every object is freed and
    /// every armed finalizer has run, each exactly once, except what Go's rule keeps
    /// forever: objects in or under a cycle through a finalizable object.
    pub fn finish(&mut self) {
        for s in &self.spares {
            for l in s.iter() {
                assert!(l.to.is_none(), "a spare link");
                assert_eq!(l.code.name, "links", "a spare link");
            }
        }
        self.spares.clear();
        self.roots.clear();
        self.tiny_roots.clear();
        self.bigs.clear();
        self.built.clear();
        self.mapped.clear();
        // Out of the lock first: the drops run destructors that take it.
        let registry = std::mem::take(&mut *self.shared.registry.lock().unwrap());
        drop(registry);
        self.model_registry.clear();
        self.settle();
        // What is left may be kept by cleanups' arguments (an argument that reaches its
        // own object keeps it forever, as in Go): stop those cleanups, and settle again.
        for (key, c) in std::mem::take(&mut self.cleanup_handles) {
            if self.cleanups.remove(&key).is_some() {
                c.stop();
            }
        }
        self.settle();
        let children = |id: &u64| self.model[id].edges().collect::<Vec<_>>();
        let stuck: Vec<u64> = self
            .model
            .iter()
            .filter(|(id, o)| o.armed.is_some() && self.closure(children(id)).contains(id))
            .map(|(id, _)| *id)
            .collect();
        let kept = self.closure(stuck);
        let kept_blocks: BTreeSet<usize> =
            kept.iter().filter_map(|id| self.model[id].block).collect();
        for (id, o) in &self.model {
            assert!(
                kept.contains(id) || o.block.is_some_and(|b| kept_blocks.contains(&b)),
                "object {id} is left in the heap and not under a cycle through a finalizable object: {o:?}"
            );
        }
        // Every slice freed was dropped exactly once (at count zero, or in a collection's
        // release step), and no slice still held was dropped.
        let links: usize = self
            .model
            .values()
            .filter(|o| !o.bare)
            .map(|o| o.many.len())
            .sum();
        assert_eq!(
            Arc::strong_count(&self.code),
            1 + links,
            "the links alive (the shares of `Code` not dropped) against the model's"
        );
        let made = std::mem::take(&mut *self.shared.made.lock().unwrap());
        drop(made);
    }
}
