//! Cycles run in steps, with the program running between them (`Heap::collect_step`,
//! `HeapConfig::gc_slice`): what a mutator does between two steps (moving handles through
//! cells, dropping them, allocating, upgrading weak handles, exiting a thread) never frees
//! a live object, and the garbage of the snapshot is still freed.

#![allow(missing_docs)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fing::{Gc, GcCell, Heap, HeapConfig, Trace, Weak, WeakMap};

/// Records the id of each node dropped.
struct Token(u64, Arc<Mutex<HashSet<u64>>>);
impl Drop for Token {
    fn drop(&mut self) {
        assert!(
            self.1.lock().unwrap().insert(self.0),
            "node {} dropped twice",
            self.0
        );
    }
}

#[derive(Trace)]
struct Node {
    id: u64,
    next: GcCell<Option<Gc<Node>>>,
    #[gc(untraced)]
    token: Token,
}

/// Steps are serialized: one cycle runs at a time in the process, and these tests count
/// steps of their own heaps' cycles.
static SERIAL: Mutex<()> = Mutex::new(());

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    c.gc_slice = None;
    Heap::new(c)
}

struct World {
    h: Heap,
    dropped: Arc<Mutex<HashSet<u64>>>,
    next_id: u64,
}

impl World {
    fn new() -> World {
        World {
            h: heap(),
            dropped: Arc::default(),
            next_id: 0,
        }
    }

    fn node(&mut self) -> Gc<Node> {
        self.next_id += 1;
        self.h.alloc(Node {
            id: self.next_id,
            next: GcCell::new(None),
            token: Token(self.next_id, self.dropped.clone()),
        })
    }

    /// Every node reachable from `roots` is alive (its id was never dropped) and reads
    /// as it was written.
    fn check(&self, roots: &[Gc<Node>]) {
        let dropped = self.dropped.lock().unwrap();
        let mut seen = HashSet::new();
        let mut todo: Vec<Gc<Node>> = roots.to_vec();
        while let Some(n) = todo.pop() {
            assert!(n.id >= 1 && n.id <= self.next_id, "a freed node was read");
            assert!(!dropped.contains(&n.id), "live node {} was dropped", n.id);
            if seen.insert(n.id) {
                if let Some(m) = n.next.borrow().clone() {
                    todo.push(m);
                }
            }
        }
    }
}

/// A small deterministic generator (no dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Random mutations between the least steps there are, over many cycles: links made and
/// broken through cells, handles moved out of cells onto the stack and back, roots
/// dropped, nodes allocated. No live node is ever freed, and once the program lets go of
/// everything, two whole collections free every node.
#[test]
fn mutations_between_steps_never_free_a_live_object() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    let mut rng = Lcg(7);
    let mut roots: Vec<Gc<Node>> = (0..64).map(|_| w.node()).collect();
    let mut cycles = 0;
    for op in 0..40_000 {
        match rng.next(6) {
            0 => {
                let n = w.node();
                roots.push(n);
            }
            1 if roots.len() > 2 => {
                let (a, b) = (rng.next(roots.len()), rng.next(roots.len()));
                roots[a].next.set(Some(roots[b].clone()));
            }
            2 if !roots.is_empty() => {
                // Move a handle out of a cell onto the stack: no count changes.
                let a = rng.next(roots.len());
                if let Some(m) = roots[a].next.take() {
                    roots.push(m);
                }
            }
            3 if roots.len() > 8 => {
                let a = rng.next(roots.len());
                roots.swap_remove(a);
            }
            4 if !roots.is_empty() => {
                // Move a stack handle into a cell, dropping what was there.
                let (a, b) = (rng.next(roots.len()), rng.next(roots.len()));
                let m = roots.swap_remove(b);
                if a < roots.len() {
                    roots[a].next.set(Some(m));
                }
            }
            _ => {}
        }
        if w.h.collect_step(Duration::ZERO) {
            cycles += 1;
        }
        if op % 1000 == 0 {
            w.check(&roots);
        }
    }
    w.check(&roots);
    assert!(cycles > 0, "cycles ended between the mutations");
    drop(roots);
    w.h.collect();
    w.h.collect();
    assert_eq!(w.dropped.lock().unwrap().len() as u64, w.next_id);
    assert_eq!(w.h.stats().heap_objects, 0);
}

/// Objects allocated during a cycle are black: kept by it even when only a cell of an
/// object counted before refers to them; garbage made before the cycle began is freed by
/// it.
#[test]
fn objects_allocated_during_a_cycle_survive_it() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    let holder = w.node();
    // Garbage: a ring of two.
    let (a, b) = (w.node(), w.node());
    a.next.set(Some(b.clone()));
    b.next.set(Some(a.clone()));
    drop((a, b));
    assert!(
        !w.h.collect_step(Duration::ZERO),
        "the least step ends no cycle"
    );
    let fresh = w.node();
    holder.next.set(Some(fresh));
    while !w.h.collect_step(Duration::ZERO) {}
    w.check(std::slice::from_ref(&holder));
    assert_eq!(w.dropped.lock().unwrap().len(), 2, "the ring went");
    assert!(holder.next.borrow().is_some());
}

/// A weak handle upgraded between steps keeps its object: the cycle that began while
/// only the weak handle referred to it does not free it.
#[test]
fn a_weak_upgrade_between_steps_keeps_the_object() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    let n = w.node();
    let weak: Weak<Node> = Gc::downgrade(&n);
    let holder = w.node();
    holder.next.set(Some(n));
    assert!(!w.h.collect_step(Duration::ZERO));
    // The only strong handle goes into the stack, through an upgrade, and the cell lets go.
    let up = weak.upgrade().expect("alive");
    holder.next.set(None);
    while !w.h.collect_step(Duration::ZERO) {}
    w.check(&[up.clone(), holder.clone()]);
    assert!(weak.upgrade().is_some());
    drop(up);
    w.h.collect();
    w.h.collect();
    assert!(weak.upgrade().is_none());
}

/// A `WeakMap` looked up and pruned between steps keeps none of its dead keys for the
/// cycle in progress: the lookups ask whether a key's cell is cleared without upgrading
/// the key (an upgrade shades what it hands out). They once upgraded every key they
/// looked at, and the soak in slices, which prunes its map every 64 rounds, never freed
/// a list the map had seen: its heap grew by half each cycle.
#[test]
fn weak_map_lookups_between_steps_keep_no_dead_key() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    let mut map: WeakMap<Node, Node> = WeakMap::new();
    let live = w.node();
    let dead = w.node();
    let (live_id, dead_id) = (live.id, dead.id);
    // Each value points back to its key: only the key's other handles keep the entry.
    let (lv, dv) = (w.node(), w.node());
    lv.next.set(Some(live.clone()));
    dv.next.set(Some(dead.clone()));
    let dv_id = dv.id;
    map.insert(&live, lv);
    map.insert(&dead, dv);
    drop(dead);
    assert!(
        !w.h.collect_step(Duration::ZERO),
        "the least step ends no cycle"
    );
    loop {
        assert!(map.contains_key(&live));
        assert!(map.get(&live).is_some());
        map.prune();
        if w.h.collect_step(Duration::ZERO) {
            break;
        }
    }
    assert!(
        w.dropped.lock().unwrap().contains(&dead_id),
        "the dead key went in the cycle that found it unreachable"
    );
    assert!(
        w.dropped.lock().unwrap().contains(&dv_id),
        "and its value with it"
    );
    assert_eq!(map.len(), 1);
    w.check(std::slice::from_ref(&live));
    assert!(!w.dropped.lock().unwrap().contains(&live_id));
}

/// `collect()` during a cycle still runs a whole cycle: garbage made after the cycle in
/// progress began is freed when it returns.
#[test]
fn collect_during_a_cycle_frees_what_died_since() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    let keep = w.node();
    assert!(!w.h.collect_step(Duration::ZERO));
    let (a, b) = (w.node(), w.node());
    a.next.set(Some(b.clone()));
    b.next.set(Some(a.clone()));
    drop((a, b));
    w.h.collect();
    assert_eq!(w.dropped.lock().unwrap().len(), 2);
    w.check(&[keep]);
}

/// A thread that shades objects between steps and exits hands its grey objects over.
#[test]
fn a_thread_exiting_between_steps_hands_its_greys_over() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    let keep: Vec<Gc<Node>> = (0..100).map(|_| w.node()).collect();
    for p in keep.windows(2) {
        p[0].next.set(Some(p[1].clone()));
    }
    let extra: Vec<Gc<Node>> = keep.iter().map(Gc::clone).collect();
    assert!(!w.h.collect_step(Duration::ZERO));
    // The thread's drops leave counts above zero: each shades its object.
    std::thread::spawn(move || drop(extra)).join().unwrap();
    while !w.h.collect_step(Duration::ZERO) {}
    w.check(&keep);
}

/// With `gc_slice`, the pacer's cycles run on the collector thread and in assists while
/// two threads allocate and relink: every live node stays intact.
#[test]
fn sliced_cycles_beside_two_mutators() {
    sliced_cycles(0);
}

/// As above, beside a live list large enough (150 000 nodes: more than 512 spans and 4 MB)
/// that each slice shares its count and marking with a second thread: the helper, or a
/// mutator waiting out the stop, which stops at the slice's deadline and hands back what
/// it had left (`mgchelp`). The list stays whole, and so does every node the mutators hold.
#[test]
fn sliced_cycles_shared_with_waiting_mutators() {
    sliced_cycles(150_000);
}

/// `sliced_cycles_beside_two_mutators` beside a live list of `live` nodes.
fn sliced_cycles(live: u64) {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = HeapConfig::default();
    c.gogc = Some(50);
    c.min_heap = 1 << 20;
    c.gc_slice = Some(Duration::from_micros(100));
    let h = Heap::new(c);
    let dropped: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut lw = World {
        h: h.clone(),
        dropped: dropped.clone(),
        next_id: 3_000_000_000,
    };
    let mut list: Option<Gc<Node>> = None;
    for _ in 0..live {
        let n = lw.node();
        n.next.set(list.take());
        list = Some(n);
    }
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (h, dropped) = (h.clone(), dropped.clone());
            std::thread::spawn(move || {
                let mut w = World {
                    h,
                    dropped,
                    next_id: t * 1_000_000_000,
                };
                let base = w.next_id;
                let mut rng = Lcg(t + 1);
                let mut roots: Vec<Gc<Node>> = (0..256).map(|_| w.node()).collect();
                for i in 0..200_000 {
                    let (a, b) = (rng.next(roots.len()), rng.next(roots.len()));
                    let n = w.node();
                    if i % 2 == 0 {
                        n.next.set(Some(n.clone())); // cyclic garbage once replaced
                    } else if a != b {
                        n.next.set(Some(roots[b].clone()));
                    }
                    roots[a] = n;
                }
                let dropped = w.dropped.lock().unwrap();
                let mut todo = roots.clone();
                let mut seen = HashSet::new();
                while let Some(n) = todo.pop() {
                    assert!(n.id > base && n.id <= w.next_id, "a freed node was read");
                    assert!(!dropped.contains(&n.id), "live node {} dropped", n.id);
                    if seen.insert(n.id) {
                        if let Some(m) = n.next.borrow().clone() {
                            todo.push(m);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(h.stats().num_gc > 0, "cycles ran");
    // The list is held while the lock is (a node freed here would take it to record
    // its drop).
    let seen = dropped.lock().unwrap();
    let (mut n, mut id) = (list.clone(), 3_000_000_000 + live);
    while let Some(node) = n {
        assert_eq!(node.id, id, "the list reads as it was written");
        assert!(!seen.contains(&id), "live list node {id} dropped");
        id -= 1;
        n = node.next.borrow().clone();
    }
    drop(seen);
    assert_eq!(id, 3_000_000_000, "the whole list is there");
    drop(list);
}

/// Holds objects whose destructor runs user code; its own destructor only drops handles,
/// so it is freed at count zero inside the section that drops it.
#[derive(Trace)]
struct Holder {
    kids: [Option<Gc<Loud>>; 8],
}

/// An object whose destructor runs user code: it waits until the test opens the gate,
/// then checks its payload and records its id.
#[derive(Trace)]
struct Loud {
    id: u64,
    #[gc(untraced)]
    gate: Gate,
}

struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    done: Arc<Mutex<Vec<u64>>>,
    payload: Vec<u64>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let (open, cv) = &*self.open;
        let mut o = open.lock().unwrap();
        while !*o {
            o = cv.wait(o).unwrap();
        }
        drop(o);
        let id = self.payload[0];
        assert_eq!(
            self.payload,
            vec![id; 8],
            "a destroyed object's value was overwritten"
        );
        self.done.lock().unwrap().push(id);
    }
}

/// An object whose destructor runs user code, whose last handle goes while its heap's
/// cycle is marking and only a holder not yet scanned pointed to it, is kept by that
/// cycle and destroyed once, intact, later. (Doomed at once, it read as `DYING`, with no
/// edges and no mark: the cycle freed its slot while its destructor waited to run.) The
/// destructors wait until the cycle is over, so those doomed wait on the dropping
/// thread's list across the cycle's steps.
#[test]
fn an_object_doomed_at_zero_while_marking_is_kept_by_the_cycle() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let h = heap();
    let open: Arc<(Mutex<bool>, std::sync::Condvar)> = Arc::default();
    let done: Arc<Mutex<Vec<u64>>> = Arc::default();
    let holder = h.alloc(Holder {
        kids: core::array::from_fn(|i| {
            Some(h.alloc(Loud {
                id: i as u64,
                gate: Gate {
                    open: open.clone(),
                    done: done.clone(),
                    payload: vec![i as u64; 8],
                },
            }))
        }),
    });
    // Roots pushed after the holder are popped before it: marking reaches it last.
    let others: Vec<Gc<Holder>> = (0..4096)
        .map(|_| {
            h.alloc(Holder {
                kids: Default::default(),
            })
        })
        .collect();
    // Past counting and roots (one span per least step), into the drain of the others.
    let mut ended = false;
    for _ in 0..400 {
        ended |= h.collect_step(Duration::ZERO);
    }
    assert!(!ended, "the cycle ended before the holder was scanned");
    let dropper = {
        let (h, open, done) = (h.clone(), open.clone(), done.clone());
        std::thread::spawn(move || {
            drop(holder);
            // The slots freed meanwhile are handed out once each: a slot both on this
            // thread's free list and free in its span would come back twice.
            let fresh: Vec<Gc<Loud>> = (0..512)
                .map(|i| {
                    h.alloc(Loud {
                        id: 1000 + i,
                        gate: Gate {
                            open: open.clone(),
                            done: done.clone(),
                            payload: vec![1000 + i; 8],
                        },
                    })
                })
                .collect();
            let addrs: HashSet<usize> = fresh.iter().map(|g| Gc::as_ptr(g) as usize).collect();
            assert_eq!(addrs.len(), fresh.len(), "a slot was handed out twice");
            for g in &fresh {
                assert_eq!(g.gate.payload, vec![g.id; 8], "an object was overwritten");
            }
            drop(fresh);
        })
    };
    // The destructors wait for the cycle to end; the cycle goes on meanwhile.
    while !h.collect_step(Duration::ZERO) {}
    {
        let (o, cv) = &*open;
        *o.lock().unwrap() = true;
        cv.notify_all();
    }
    dropper.join().unwrap();
    for _ in 0..3 {
        h.collect();
    }
    fing::wait_finalizers();
    let mut ids = done.lock().unwrap().clone();
    ids.sort_unstable();
    let want: Vec<u64> = (0..8).chain(1000..1512).collect();
    assert_eq!(ids, want, "each destroyed once");
    drop(others);
}

#[derive(Trace)]
struct Ring {
    next: GcCell<Option<Gc<Ring>>>,
}

/// A thread allocating past its heap's goal in slices assists the cycle, and waits for the
/// world only within a bound: another thread holding a `GcCell` write guard (a section,
/// which every stop waits for) while it waits for the allocating one deadlocks neither.
#[test]
fn an_assist_does_not_wait_for_a_thread_holding_a_write_guard() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = HeapConfig::default();
    c.gogc = Some(100);
    c.min_heap = 1 << 20;
    c.gc_slice = Some(Duration::from_micros(250));
    let h = Heap::new(c);
    let held = h.alloc(Ring {
        next: GcCell::new(None),
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (guard_tx, guard_rx) = std::sync::mpsc::channel();
    let holder = {
        let held = held.clone();
        std::thread::spawn(move || {
            let _guard = held.next.borrow_mut();
            guard_tx.send(()).unwrap();
            // Waits for the allocating thread with its section held.
            done_rx
                .recv_timeout(Duration::from_secs(120))
                .expect("the allocating thread finished while a write guard was held");
        })
    };
    guard_rx.recv().unwrap();
    // Rings of two: garbage only a collection frees, far past the goal of 1 MiB.
    for _ in 0..200_000 {
        let a = h.alloc(Ring {
            next: GcCell::new(None),
        });
        let b = h.alloc(Ring {
            next: GcCell::new(Some(a.clone())),
        });
        a.next.set(Some(b));
    }
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    h.collect();
    assert_eq!(h.stats().heap_objects, 1, "only the held ring is left");
    drop(held);
}

/// The weak walks are steps of their own: with many weak handles, a cycle in the least
/// steps takes a step per cell. Weak handles of what marking left unmarked give nothing
/// from the step that ends marking on, before the clear step reaches their cells; a
/// `WeakMap` forgets those keys and their values at once; an ephemeron made meanwhile
/// keeps its value; a downgrade between the steps of the weak step is counted right.
#[test]
fn weak_handles_go_nil_when_marking_ends_while_the_clear_step_goes_on() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    const N: usize = 2_000;
    let live: Vec<Gc<Node>> = (0..N).map(|_| w.node()).collect();
    let dead: Vec<Gc<Node>> = (0..N).map(|_| w.node()).collect();
    let live_weak: Vec<Weak<Node>> = live.iter().map(Gc::downgrade).collect();
    let dead_weak: Vec<Weak<Node>> = dead.iter().map(Gc::downgrade).collect();
    let mut map: WeakMap<Node, Node> = WeakMap::new();
    map.insert(&live[0], w.node());
    map.insert(&dead[0], w.node());
    let dead_ids: Vec<u64> = dead.iter().map(|n| n.id).collect();
    drop(dead);
    let num_gc = w.h.stats().num_gc;
    let mut steps = 0;
    // The weak step: a downgrade between its steps is counted (or taken for a root).
    let late = w.node();
    assert!(!w.h.collect_step(Duration::ZERO));
    let late_weak = late.downgrade();
    drop(late);
    while w.h.stats().num_gc == num_gc {
        assert!(
            !w.h.collect_step(Duration::ZERO),
            "marking ends before the cycle"
        );
        steps += 1;
    }
    assert!(
        steps > N,
        "the weak step went over {N} cells in {steps} least steps"
    );
    // Marking is over; the clear step has thousands of cells to go.
    assert!(dead_weak.iter().all(|d| d.upgrade().is_none()));
    assert!(live_weak.iter().all(|l| l.upgrade().is_some()));
    assert_eq!(map.len(), 1, "the dead key's entry is gone from the map");
    let fresh_key = w.node();
    let fresh = fing::Ephemeron::new(&fresh_key, w.node());
    let mut clear_steps = 0;
    while !w.h.collect_step(Duration::ZERO) {
        clear_steps += 1;
        assert!(dead_weak[N - 1].upgrade().is_none(), "nil stays nil");
    }
    assert!(clear_steps > N, "the clear step took {clear_steps} steps");
    assert!(
        fresh.value().is_some(),
        "an ephemeron made while cells were cleared"
    );
    assert!(dead_weak.iter().all(|d| d.upgrade().is_none()));
    let dropped = w.dropped.lock().unwrap().clone();
    assert!(dead_ids.iter().all(|id| dropped.contains(id)));
    // The late weak handle's object was allocated black: it goes in the next cycle.
    assert!(late_weak.upgrade().is_some());
    w.h.collect();
    assert!(late_weak.upgrade().is_none());
    assert!(fresh.value().is_some());
    w.check(&live);
    drop(fresh_key);
    w.h.collect();
    assert!(fresh.value().is_none());
}

/// The ephemeron fixpoint's rounds are resumable: a chain of ephemerons whose values
/// hold the next key needs a round per link, each spread over least steps; a mutator
/// shading between steps makes a round inconclusive. Live chains keep every value, a
/// dead chain loses all of them, and an ephemeron made between the steps keeps its
/// value.
#[test]
fn the_ephemeron_fixpoint_runs_in_steps() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = World::new();
    const N: usize = 40;
    // keys[i] -> value[i], and value[i].next = keys[i + 1]: only the first key is held.
    let chain = |w: &mut World, map: &mut WeakMap<Node, Node>| {
        let keys: Vec<Gc<Node>> = (0..N).map(|_| w.node()).collect();
        for i in 0..N {
            let v = w.node();
            v.next.set(keys.get(i + 1).cloned());
            map.insert(&keys[i], v);
        }
        keys
    };
    let mut map: WeakMap<Node, Node> = WeakMap::new();
    let live_keys = chain(&mut w, &mut map);
    let dead_keys = chain(&mut w, &mut map);
    let dead_ids: Vec<u64> = dead_keys.iter().map(|k| k.id).collect();
    let first = live_keys[0].clone();
    let live_ids: Vec<u64> = live_keys.iter().map(|k| k.id).collect();
    drop(live_keys);
    drop(dead_keys);
    let other = w.node();
    let num_gc = w.h.stats().num_gc;
    let mut steps = 0;
    let mut made = None;
    while w.h.stats().num_gc == num_gc {
        assert!(!w.h.collect_step(Duration::ZERO));
        steps += 1;
        // Shade between steps: a drop that leaves a count above zero.
        drop(other.clone());
        if steps == 3 * N {
            let k = w.node();
            made = Some((fing::Ephemeron::new(&k, w.node()), k));
        }
    }
    assert!(steps > 4 * N, "the fixpoint took {steps} least steps");
    while !w.h.collect_step(Duration::ZERO) {}
    let dropped = w.dropped.lock().unwrap().clone();
    assert!(
        dead_ids.iter().all(|id| dropped.contains(id)),
        "the dead chain went"
    );
    assert!(
        live_ids.iter().all(|id| !dropped.contains(id)),
        "the live chain stayed"
    );
    // The live chain's values are all there, found key by key from the first.
    let mut k = first.clone();
    for _ in 1..N {
        let v = map.get(&k).expect("a live key's value");
        k = v.next.borrow().clone().expect("the next key");
    }
    assert!(map.get(&k).is_some());
    let (e, key) = made.expect("an ephemeron made between steps");
    assert!(e.value().is_some());
    drop(key);
    w.h.collect();
    assert!(e.value().is_none());
    w.check(&[first, other]);
}

/// A key that a round of the fixpoint saw unmarked, upgraded from a weak handle by the
/// program before the round ends (the upgrade marks it): the round is not conclusive, and
/// the key's value stays. The key holds no handles, so marking it puts nothing on a grey
/// list. The upgrade comes after a different number of least steps in each run, so that
/// some land inside a round.
#[test]
fn a_key_marked_by_an_upgrade_during_a_round_keeps_its_value() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut inside = 0;
    for at in (20..1500).step_by(37) {
        let mut w = World::new();
        let mut map: WeakMap<[u64; 4], Node> = WeakMap::new();
        let x = w.h.alloc([7u64; 4]);
        let vx = w.node();
        let vx_id = vx.id;
        map.insert(&x, vx);
        let wx = x.downgrade();
        drop(x);
        // Many live entries after it: each round takes many steps.
        let keys: Vec<Gc<[u64; 4]>> = (0..200).map(|i| w.h.alloc([i; 4])).collect();
        for k in &keys {
            map.insert(k, w.node());
        }
        let mut steps = 0;
        let mut got = None;
        let num_gc = w.h.stats().num_gc;
        while w.h.stats().num_gc == num_gc {
            assert!(!w.h.collect_step(Duration::ZERO));
            steps += 1;
            if steps == at {
                got = wx.upgrade();
            }
        }
        while !w.h.collect_step(Duration::ZERO) {}
        if let Some(x) = &got {
            inside += 1;
            assert_eq!(
                map.get(x).map(|v| v.id),
                Some(vx_id),
                "upgraded after {at} steps: the key lives, so does its value"
            );
            assert!(!w.dropped.lock().unwrap().contains(&vx_id));
        }
        assert_eq!(map.len(), 200 + usize::from(got.is_some()));
    }
    assert!(inside > 0, "some upgrade came before marking ended");
}

#[derive(Trace)]
struct Wide {
    id: u64,
    a: GcCell<Option<Gc<Wide>>>,
    b: GcCell<Option<Gc<Wide>>>,
    #[gc(untraced)]
    token: Token,
}

/// Marking's prefetch pipeline (`mgcmark::drain`) holds edges in flight across a step's
/// end: a graph whose edges go anywhere, marked one object per step (and in one stop),
/// keeps exactly what its roots reach, and its garbage is destroyed.
#[test]
fn a_graph_linked_at_random_marks_whole_in_least_steps() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for whole in [false, true] {
        let h = heap();
        let dropped: Arc<Mutex<HashSet<u64>>> = Arc::default();
        const N: usize = 4000;
        let nodes: Vec<Gc<Wide>> = (0..N as u64)
            .map(|id| {
                h.alloc(Wide {
                    id,
                    a: GcCell::new(None),
                    b: GcCell::new(None),
                    token: Token(id, dropped.clone()),
                })
            })
            .collect();
        let mut rng = Lcg(0x5EED ^ whole as u64);
        // Out-degree at most two, some links left out: a giant component and garbage.
        let mut edges = vec![Vec::new(); N];
        for (i, n) in nodes.iter().enumerate() {
            for cell in [&n.a, &n.b] {
                if rng.next(8) != 0 {
                    let j = rng.next(N);
                    cell.set(Some(nodes[j].clone()));
                    edges[i].push(j);
                }
            }
        }
        let roots: Vec<Gc<Wide>> = (0..3).map(|_| nodes[rng.next(N)].clone()).collect();
        let mut reach = HashSet::new();
        let mut todo: Vec<usize> = roots.iter().map(|r| r.id as usize).collect();
        while let Some(i) = todo.pop() {
            if reach.insert(i as u64) {
                todo.extend(&edges[i]);
            }
        }
        assert!(
            reach.len() > N / 2 && reach.len() < N,
            "a giant component and garbage"
        );
        drop(nodes);
        if whole {
            h.collect();
        } else {
            let mut steps = 1;
            while !h.collect_step(Duration::ZERO) {
                steps += 1;
            }
            assert!(steps > reach.len(), "one object marked per step at most");
        }
        let gone = dropped.lock().unwrap().clone();
        let expect: HashSet<u64> = (0..N as u64).filter(|i| !reach.contains(i)).collect();
        assert_eq!(gone, expect, "exactly the unreachable nodes were destroyed");
        // The survivors read as written.
        let mut seen = HashSet::new();
        let mut todo = roots.clone();
        while let Some(n) = todo.pop() {
            if seen.insert(n.id) {
                let targets: Vec<usize> = [&n.a, &n.b]
                    .iter()
                    .filter_map(|c| c.borrow().as_ref().map(|m| m.id as usize))
                    .collect();
                assert_eq!(targets, edges[n.id as usize], "node {}'s links", n.id);
                todo.extend([&n.a, &n.b].iter().filter_map(|c| c.borrow().clone()));
            }
        }
        assert_eq!(seen, reach);
    }
}
