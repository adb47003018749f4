//! The collector through the public API: reachability, cycles, roots outside the heap,
//! destructors, deep structures, `GcCell`, interior pointers, memory given back.

#![allow(missing_docs, dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

/// Counts its drops: a destructor that must run exactly once per freed object.
struct Token(Arc<AtomicUsize>);
impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace)]
struct Node {
    id: u64,
    next: GcCell<Option<Gc<Node>>>,
    name: String,
    #[gc(untraced)]
    token: Token,
}

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None; // only explicit collections: the tests count frees exactly
    Heap::new(c)
}

fn node(h: &Heap, id: u64, drops: &Arc<AtomicUsize>) -> Gc<Node> {
    h.alloc(Node {
        id,
        next: GcCell::new(None),
        name: format!("node {id}"),
        token: Token(drops.clone()),
    })
}

#[test]
fn unreachable_objects_and_cycles_are_freed_once() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    {
        let a = node(&h, 1, &drops);
        let b = node(&h, 2, &drops);
        let c = node(&h, 3, &drops);
        a.next.set(Some(b.clone()));
        b.next.set(Some(c.clone()));
        c.next.set(Some(a.clone())); // a cycle a -> b -> c -> a
        h.collect();
        assert_eq!(drops.load(Ordering::SeqCst), 0, "held by locals");
    }
    h.collect();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        3,
        "the unreachable cycle is freed, each node once"
    );
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 3, "and never again");
    assert_eq!(h.stats().heap_objects, 0);
    assert_eq!(h.stats().frees, 3);
}

#[test]
fn handles_in_rust_collections_are_roots() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut v = Vec::new();
    let mut m = HashMap::new();
    for i in 0..1000 {
        let n = node(&h, i, &drops);
        if i % 2 == 0 {
            v.push(n);
        } else {
            m.insert(i, n);
        }
    }
    for _ in 0..3 {
        h.collect();
    }
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert!(v
        .iter()
        .enumerate()
        .all(|(k, n)| n.id == 2 * k as u64 && n.name == format!("node {}", n.id)));
    assert!(m.iter().all(|(k, n)| n.id == *k));
    v.truncate(100);
    m.clear();
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 900);
    assert_eq!(h.stats().heap_objects, 100);
}

#[test]
fn a_million_node_list_marks_without_recursion() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let head = node(&h, 0, &drops);
    let mut tail = head.clone();
    for i in 1..1_000_000 {
        let n = node(&h, i, &drops);
        tail.next.set(Some(n.clone()));
        tail = n;
    }
    drop(tail);
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    let mut len = 0;
    let mut cur = Some(head.clone());
    while let Some(n) = cur {
        assert_eq!(n.id, len);
        len += 1;
        cur = n.next.borrow().clone();
    }
    assert_eq!(len, 1_000_000);
    drop(head);
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 1_000_000);
}

#[derive(Trace)]
struct Strings {
    s: String,
    v: Vec<String>,
    #[gc(untraced)]
    token: Token,
}

#[test]
fn destructors_of_fields_run_exactly_once() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    for i in 0..10_000 {
        let s = h.alloc(Strings {
            s: "x".repeat(i % 100),
            v: vec![String::from("a"); i % 7],
            token: Token(drops.clone()),
        });
        assert_eq!(s.s.len(), i % 100);
    }
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 10_000);
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 10_000);
}

#[test]
fn a_dead_object_pointing_at_a_live_one_decrements_its_count() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let live = node(&h, 1, &drops);
    {
        let dead = node(&h, 2, &drops);
        dead.next.set(Some(live.clone()));
    }
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(live);
    // If the dead object's handle had not been dropped, `live` would still look referenced
    // from outside the heap.
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn objects_moved_through_cells_live_exactly_while_reachable() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let root = node(&h, 0, &drops);
    root.next.set(Some(node(&h, 1, &drops)));
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    // Take the child out into a local, collect, put a new one in.
    let taken = root.next.take().unwrap();
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 0, "the local keeps it");
    let old = root.next.replace(Some(node(&h, 2, &drops)));
    assert!(old.is_none());
    drop(taken);
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "node 1 is gone");
    assert_eq!(root.next.borrow().as_ref().unwrap().id, 2);
    drop(root);
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn find_object_maps_interior_pointers_and_never_the_next_object() {
    let h = heap();
    let a = h.alloc([7u64; 4]);
    let b = h.alloc([8u64; 4]);
    let (slot_a, size) = fing::find_object(Gc::as_ptr(&a).cast()).expect("a is in the heap");
    let (slot_b, _) = fing::find_object(Gc::as_ptr(&b).cast()).expect("b is in the heap");
    assert_ne!(slot_a, slot_b);
    let inner = a.map(|x| &x[2]);
    assert_eq!(
        fing::find_object(Gc::as_ptr(&inner).cast()).unwrap().0,
        slot_a
    );
    assert!(Gc::same_object(&inner, &a));
    // One past the end of a's slot is the start of the next slot: it still maps to a.
    let end = slot_a.as_ptr().wrapping_add(size);
    assert_eq!(fing::find_object(end).map(|o| o.0), Some(slot_a));
    static OUTSIDE: u64 = 0;
    assert!(fing::find_object(&OUTSIDE as *const u64 as *const u8).is_none());
}

#[test]
fn tiny_noscan_objects_share_a_block() {
    let h = heap();
    let a = h.alloc(1u8);
    let b = h.alloc(2u32);
    let c = h.alloc(3u16);
    assert!(
        Gc::same_object(&a, &b) && Gc::same_object(&b, &c),
        "packed into one 16-byte block"
    );
    assert_eq!((*a, *b, *c), (1, 2, 3));
    drop((a, b));
    h.collect();
    assert_eq!(*c, 3, "the block lives while any of its objects does");
    let before = h.stats().heap_objects;
    drop(c);
    h.collect();
    assert_eq!(h.stats().heap_objects, before - 1);
}

#[test]
fn a_tiny_block_counts_every_object_past_its_first_objects_reserve() {
    let h = heap();
    // An 8-byte object starts the block, which holds counts for two 8-byte objects in
    // advance; eight 1-byte objects then fill the rest, each counted as it comes.
    let first = h.alloc(0x0123_4567_89ab_cdefu64);
    let mut bytes: Vec<Gc<u8>> = (0..8).map(|i| h.alloc(i as u8)).collect();
    assert!(
        bytes.iter().all(|b| Gc::same_object(b, &first)),
        "one block"
    );
    drop(first);
    h.collect();
    let before = h.stats().heap_objects;
    while let Some(last) = bytes.pop() {
        drop(last);
        h.collect();
        if bytes.is_empty() {
            break;
        }
        let s = h.stats();
        assert_eq!(
            s.heap_objects,
            before,
            "{} handles keep the block: {s:?}",
            bytes.len()
        );
        assert!(bytes.iter().enumerate().all(|(i, b)| **b == i as u8));
    }
    assert_eq!(
        h.stats().heap_objects,
        before - 1,
        "the last handle freed it"
    );
}

#[test]
fn zero_sized_values_need_no_memory() {
    let h = heap();
    let before = h.stats().mallocs;
    let z = h.alloc(());
    let _copy = z.clone();
    assert_eq!(h.stats().mallocs, before);
    h.collect();
}

#[test]
fn large_objects_and_memory_given_back() {
    let h = heap();
    let big: Vec<Gc<[u64; 8192]>> = (0..64).map(|i| h.alloc([i as u64; 8192])).collect();
    assert!(big.iter().enumerate().all(|(i, b)| b[8191] == i as u64));
    let small: Vec<Gc<(u64, u64)>> = (0..200_000).map(|i| h.alloc((i, i))).collect();
    let s = h.stats();
    assert!(s.heap_in_use >= 64 * 65536 + 200_000 * 32, "{s:?}");
    drop(big);
    drop(small);
    h.collect();
    let after = h.stats();
    assert_eq!(after.heap_objects, 0);
    assert_eq!(after.heap_in_use, 0, "{after:?}");
    assert!(
        after.heap_released < after.heap_sys,
        "pages freed by a collection are kept through the next cycle: {after:?}"
    );
    h.collect();
    let after = h.stats();
    assert_eq!(
        after.heap_released, after.heap_sys,
        "every page free through a whole cycle was given back: {after:?}"
    );
}

#[derive(Trace)]
struct Link {
    to: Gc<Node>,
}

#[derive(Trace)]
struct Holder {
    far: GcCell<Option<Gc<u64>>>,
}

/// A `Gc::map` result that is not near its object (a `String`'s buffer, another object, deep
/// inside a large object) is a far handle: it points there and keeps the object it was mapped
/// from alive, through a small cell, freed with the last such handle.
#[test]
fn far_interior_handles_keep_their_object_and_free_their_cell() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let base = h.stats().heap_objects;
    let a = node(&h, 1, &drops);
    let b = node(&h, 2, &drops);
    let link = h.alloc(Link { to: b.clone() });

    // Into a `String`'s buffer, outside the heap: a `Gc<str>`, a wide handle.
    let name: Gc<str> = a.map(|n| n.name.as_str());
    // Into another object, through a handle field.
    let other: Gc<u64> = link.map(|l| &l.to.id);
    // As a trait object.
    let shown: Gc<dyn std::fmt::Display> = a.map(|n| &n.name as &dyn std::fmt::Display);
    // Mapped again from a far handle.
    let tail: Gc<str> = name.map(|s| &s[5..]);
    assert_eq!(
        (&*name, *other, shown.to_string(), &*tail),
        ("node 1", 2, "node 1".into(), "1")
    );
    assert!(Gc::same_object(&name, &a) && Gc::same_object(&tail, &a));
    assert!(
        Gc::same_object(&other, &link),
        "counts on the object it came from"
    );
    assert_eq!(Gc::as_ptr(&name).cast::<u8>(), a.name.as_ptr());
    assert!(Gc::ptr_eq(&tail, &tail.clone()));

    // A far handle stored inside a heap object is traced like any other.
    let holder = h.alloc(Holder {
        far: GcCell::new(Some(other.clone())),
    });
    drop((a, b, link, other));
    h.collect();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "all kept by the far handles"
    );
    assert_eq!(**holder.far.borrow().as_ref().unwrap(), 2);
    drop((name, shown));
    h.collect();
    assert_eq!(&*tail, "1");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "a is kept by `tail`'s cells"
    );
    drop(tail);
    h.collect();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "a went with the last handle mapped from it"
    );
    drop(holder);
    h.collect();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(h.stats().heap_objects, base, "the cells are freed too");

    // Deep inside a large object: past the distance a near handle stores.
    let big = h.alloc([7u64; 9000]);
    let deep: Gc<u64> = big.map(|x| &x[8999]);
    let near: Gc<u64> = big.map(|x| &x[100]);
    assert_eq!(Gc::as_ptr(&deep), &big[8999] as *const u64);
    assert_eq!(Gc::as_ptr(&near), &big[100] as *const u64);
    assert!(Gc::same_object(&deep, &big) && Gc::same_object(&near, &big));
    drop(big);
    h.collect();
    assert_eq!((*deep, *near), (7, 7));
    drop((deep, near));
    h.collect();
    assert_eq!(h.stats().heap_objects, base);

    // Outside every heap, a map counts on nothing.
    static PAIR: (u64, u64) = (3, 4);
    let s = Gc::from_static(&PAIR).map(|p| &p.1);
    assert_eq!((*s, Gc::is_in_heap(&s)), (4, false));
}

/// `MemStats` keeps Go's ring of recent pauses: the last 256, oldest first, each with when
/// it ended; `pause_max` is the longest, and the ring's pauses add up to `pause_total`
/// while it has not wrapped.
#[test]
fn recent_pauses_are_a_ring_of_256() {
    let mut c = fing::HeapConfig::default();
    c.gogc = None;
    let h = fing::Heap::new(c);
    let keep = h.alloc(7u64);
    for _ in 0..10 {
        h.collect();
    }
    let s = h.stats();
    assert_eq!(s.num_gc, 10);
    assert_eq!(s.recent_pauses.len(), 10);
    let sum: std::time::Duration = s.recent_pauses.iter().map(|p| p.1).sum();
    assert_eq!(sum, s.pause_total);
    assert_eq!(s.recent_pauses.iter().map(|p| p.1).max(), Some(s.pause_max));
    assert_eq!(s.recent_pauses.last().map(|p| p.1), Some(s.last_pause));
    assert!(
        s.recent_pauses.windows(2).all(|w| w[0].0 <= w[1].0),
        "oldest first"
    );
    for _ in 0..300 {
        h.collect();
    }
    let s = h.stats();
    assert_eq!(s.recent_pauses.len(), 256);
    assert!(s.recent_pauses.iter().all(|p| p.1 <= s.pause_max));
    assert_eq!(*keep, 7);
}

/// A record with two links, for a graph linked at random.
#[derive(Trace)]
struct Vertex {
    id: u64,
    a: GcCell<Option<Gc<Vertex>>>,
    b: GcCell<Option<Gc<Vertex>>>,
}

/// xorshift64: a seeded generator for the graphs linked at random.
struct Xorshift(u64);

impl Xorshift {
    /// A number below `n`.
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// `n` vertices in `h`; each of a vertex's two cells links to a random vertex where
/// `edge` (drawn first) says so. Returns them, and each one's links by index.
fn random_graph(
    h: &Heap,
    n: usize,
    rng: &mut Xorshift,
    edge: impl Fn(&mut Xorshift) -> bool,
) -> (Vec<Gc<Vertex>>, Vec<Vec<usize>>) {
    let nodes: Vec<Gc<Vertex>> = (0..n as u64)
        .map(|id| {
            h.alloc(Vertex {
                id,
                a: GcCell::new(None),
                b: GcCell::new(None),
            })
        })
        .collect();
    let mut edges = vec![Vec::new(); n];
    for (i, v) in nodes.iter().enumerate() {
        for cell in [&v.a, &v.b] {
            if edge(rng) {
                let j = rng.below(n);
                cell.set(Some(nodes[j].clone()));
                edges[i].push(j);
            }
        }
    }
    (nodes, edges)
}

/// The vertices `from` reaches in the graph `edges`: from `from` on with `itself`, else
/// through at least one link.
fn reachable(edges: &[Vec<usize>], from: &[usize], itself: bool) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut todo: Vec<usize> = if itself {
        from.to_vec()
    } else {
        from.iter()
            .flat_map(|&i| edges[i].iter().copied())
            .collect()
    };
    while let Some(i) = todo.pop() {
        if seen.insert(i) {
            todo.extend(&edges[i]);
        }
    }
    seen
}

/// A heap large enough that a collection shares its count of references with the
/// collector's helper thread (over 512 spans of objects with handles; `mgchelp`), linked
/// at random so that both threads add to the same objects' counts: exactly what the roots
/// reach survives, with its links, and a collection in one thread's share (an abandoned
/// count would leave scratch counts behind) finds the same again.
#[test]
fn a_count_shared_with_the_helper_keeps_exactly_what_is_reachable() {
    let h = heap();
    const N: usize = 150_000;
    let mut rng = Xorshift(0x2545_F491_4F6C_DD1D);
    let (nodes, edges) = random_graph(&h, N, &mut rng, |r| r.below(4) != 0);
    let roots: Vec<Gc<Vertex>> = (0..50).map(|_| nodes[rng.below(N)].clone()).collect();
    let reach = reachable(
        &edges,
        &roots.iter().map(|r| r.id as usize).collect::<Vec<_>>(),
        true,
    );
    assert!(
        reach.len() > N / 2 && reach.len() < N,
        "a giant component and garbage"
    );
    drop(nodes);
    for _ in 0..2 {
        h.collect();
        assert_eq!(h.stats().heap_objects as usize, reach.len());
    }
    let mut seen = HashSet::new();
    let mut todo = roots.clone();
    while let Some(v) = todo.pop() {
        if seen.insert(v.id as usize) {
            let targets: Vec<usize> = [&v.a, &v.b]
                .iter()
                .filter_map(|c| c.borrow().as_ref().map(|t| t.id as usize))
                .collect();
            assert_eq!(
                targets, edges[v.id as usize],
                "vertex {} keeps its links",
                v.id
            );
            for c in [&v.a, &v.b] {
                todo.extend(c.borrow().clone());
            }
        }
    }
    assert_eq!(seen, reach);
    drop((roots, todo));
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

/// Markfin over a heap large enough that the drain after it is shared with the collector's
/// helper (it scans each unreachable finalizable object in place, so both threads drain
/// marked objects only): a graph linked at random, one vertex in 16 with a finalizer, a
/// few held from outside. Each collection finalizes exactly Go's set: the unreachable
/// finalizable vertices that no unreachable finalizable vertex (itself included, through a
/// cycle) reaches; the others wait for a later cycle, or for ever on a cycle.
#[test]
fn markfin_over_a_shared_drain_finalizes_exactly_go_s_set() {
    let h = heap();
    const N: usize = 150_000;
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    // About one edge a vertex: components of every size, many of them trees.
    let (nodes, edges) = random_graph(&h, N, &mut rng, |r| r.below(2) == 0);
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut fin = Vec::new();
    for (i, v) in nodes.iter().enumerate() {
        if rng.below(16) == 0 {
            let ran = ran.clone();
            v.set_finalizer(move |v: Gc<Vertex>| ran.lock().unwrap().push(v.id as usize))
                .expect("a finalizer");
            fin.push(i);
        }
    }
    let roots: Vec<Gc<Vertex>> = (0..20).map(|_| nodes[rng.below(N)].clone()).collect();
    let live = reachable(
        &edges,
        &roots.iter().map(|r| r.id as usize).collect::<Vec<_>>(),
        true,
    );
    let mut pending: Vec<usize> = fin.into_iter().filter(|i| !live.contains(i)).collect();
    drop(nodes);
    for round in 0..2 {
        let reached = reachable(&edges, &pending, false);
        let (mut due, rest): (Vec<usize>, Vec<usize>) =
            pending.iter().partition(|i| !reached.contains(i));
        assert!(
            !due.is_empty() && !rest.is_empty(),
            "round {round}: some finalizers due, some held back"
        );
        h.collect();
        fing::wait_finalizers();
        let mut got = std::mem::take(&mut *ran.lock().unwrap());
        got.sort_unstable();
        due.sort_unstable();
        assert_eq!(got, due, "round {round}: Go's set of finalizers runs");
        pending = rest;
    }
    drop(roots);
}
