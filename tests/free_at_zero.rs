//! Freeing at count zero (gc-core's `mfree`): what the last handle's drop frees at once
//! (objects whose destructors only drop handles, and, through `mdrop`, those whose
//! destructors run user code), what it leaves to the collector (cycles, finalizable
//! objects), and that the two never free one object twice.

#![allow(missing_docs, dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

#[derive(Trace)]
struct Link {
    value: u64,
    next: Option<Gc<Link>>,
}

#[derive(Trace)]
struct Cell {
    value: u64,
    next: GcCell<Option<Gc<Cell>>>,
}

/// Counts its drops.
struct Token(Arc<AtomicUsize>);
impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace)]
struct WithDrop {
    #[gc(untraced)]
    token: Token,
    next: Option<Gc<Link>>,
}

/// The tests of this file run one at a time: a drop that meets a collection (anywhere in
/// the process) waits in its thread's ring, as drops never wait for a collector, which
/// would move one test's frees to a later point.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Under Miri or valgrind (whose preload library is in `LD_PRELOAD`), the tests run small.
fn small() -> bool {
    cfg!(miri) || std::env::var("LD_PRELOAD").is_ok_and(|v| v.contains("vgpreload"))
}

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None; // only explicit collections
    Heap::new(c)
}

/// A list of `n` links, head first, holding `n - 1 ..= 0`.
fn list(h: &Heap, n: u64) -> Gc<Link> {
    let mut head: Option<Gc<Link>> = None;
    for value in 0..n {
        head = Some(h.alloc(Link { value, next: head }));
    }
    head.expect("list: n > 0")
}

fn sum(mut l: &Gc<Link>) -> u64 {
    let mut s = 0;
    loop {
        s += l.value;
        match &l.next {
            Some(n) => l = n,
            None => return s,
        }
    }
}

// `heap_objects` counts the free slots of the spans that thread caches hold as allocated
// (Go's accounting) until a collection flushes the caches: the tests compare `frees` and
// `mallocs`, which are exact, and `heap_objects` only after a collection.

#[test]
fn a_dropped_list_is_freed_at_once_and_its_slots_are_reused() {
    let _serial = serial();
    let h = heap();
    let n = if small() { 2_000 } else { 1_000_000 };
    let l = list(&h, n);
    let built = h.stats();
    drop(l); // one chain of frees, in constant stack
    let dropped = h.stats();
    assert_eq!(dropped.num_gc, built.num_gc, "no collection ran");
    assert_eq!(dropped.frees - built.frees, n, "every link freed at once");
    assert_eq!(dropped.heap_objects, built.heap_objects - n);
    assert!(
        dropped.heap_alloc < built.heap_alloc,
        "heap_alloc falls with the frees"
    );
    // The next list takes the freed slots: the heap does not grow.
    let again = list(&h, n);
    assert_eq!(sum(&again), n * (n - 1) / 2);
    let rebuilt = h.stats();
    assert_eq!(rebuilt.heap_in_use, built.heap_in_use, "slots reused");
    assert_eq!(
        rebuilt.mallocs - dropped.mallocs,
        n,
        "every slot from the free lists"
    );
    drop(again);
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn cycles_and_finalizers_wait_for_the_collector_destructors_do_not() {
    let _serial = serial();
    let h = heap();
    // A destructor other than handle drops: run by the drop, outside its section, once;
    // the list it held is freed with it.
    let drops = Arc::new(AtomicUsize::new(0));
    drop(h.alloc(WithDrop {
        token: Token(drops.clone()),
        next: Some(list(&h, 3)),
    }));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the destructor ran at the drop"
    );
    assert_eq!(
        h.stats().frees,
        4,
        "the object with a destructor and its list"
    );
    // A cycle: its counts never reach zero.
    let a = h.alloc(Cell {
        value: 1,
        next: GcCell::new(None),
    });
    let b = h.alloc(Cell {
        value: 2,
        next: GcCell::new(Some(a.clone())),
    });
    a.next.set(Some(b.clone()));
    drop((a, b));
    // A finalizer: the object is resurrected for it by a collection, not freed by the drop.
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let f = h.alloc(Link {
        value: 42,
        next: None,
    });
    f.set_finalizer(|l| {
        SEEN.store(l.value as usize, Ordering::SeqCst);
    })
    .unwrap();
    drop(f);
    assert_eq!(h.stats().frees, 4, "nothing more freed by the drops");
    h.collect();
    let s = h.stats();
    assert_eq!(s.frees, 6, "the cycle");
    assert_eq!(s.heap_objects, 1, "the finalizable object, resurrected");
    fing::wait_finalizers();
    assert_eq!(
        SEEN.load(Ordering::SeqCst),
        42,
        "the finalizer saw its object intact"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the destructor ran once");
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn the_last_drop_on_a_thread_without_a_cache_frees_the_values_and_the_sweep_the_slots() {
    let _serial = serial();
    let h = heap();
    let n = if small() { 500 } else { 10_000 };
    let l = list(&h, n);
    // The other thread never allocated from `h`: it drops the values (lowering the counts
    // down the list) and leaves the slots dead for the sweep.
    thread::spawn(move || drop(l)).join().unwrap();
    assert_eq!(h.stats().frees, 0, "no slot listed");
    h.collect();
    let s = h.stats();
    assert_eq!(s.frees, n, "the sweep freed the dead slots");
    assert_eq!(s.heap_objects, 0);
    // And they are free for this thread again.
    let again = list(&h, n);
    assert_eq!(sum(&again), n * (n - 1) / 2);
}

#[test]
fn chains_of_frees_racing_collections_free_everything_once() {
    let _serial = serial();
    let h = heap();
    let (rounds, n) = match (small(), cfg!(debug_assertions)) {
        (true, _) => (4, 3_000),
        (false, true) => (50, 20_000),
        (false, false) => (200, 20_000),
    };
    let keep = list(&h, 1000);
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let hc = h.clone();
    let collector = thread::spawn(move || {
        let h = hc;
        let mut k = 0;
        while !d2.load(Ordering::SeqCst) || k < 3 {
            h.collect();
            k += 1;
        }
    });
    let mutators: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            thread::spawn(move || {
                for r in 0..rounds {
                    let l = list(&h, n + r);
                    assert_eq!(sum(&l), (n + r) * (n + r - 1) / 2);
                    drop(l); // may be cut short by a collector waiting: it frees the rest
                }
            })
        })
        .collect();
    for m in mutators {
        m.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    collector.join().unwrap();
    assert_eq!(sum(&keep), 1000 * 999 / 2, "the kept list is intact");
    h.collect();
    assert_eq!(h.stats().heap_objects, 1000, "only the kept list");
}

#[test]
fn an_interior_handle_keeps_its_owner_until_it_goes() {
    let _serial = serial();
    let h = heap();
    let owner = h.alloc(Link {
        value: 7,
        next: Some(list(&h, 2)),
    });
    let inner = owner.map(|l| &l.value);
    let before = h.stats().frees;
    drop(owner);
    assert_eq!(
        h.stats().frees,
        before,
        "the interior handle counts on the owner"
    );
    assert_eq!(*inner, 7);
    drop(inner);
    assert_eq!(
        h.stats().frees - before,
        3,
        "the owner and its list, at once"
    );
}

#[test]
fn a_drop_frees_across_heaps() {
    let _serial = serial();
    let (a, b) = (heap(), heap());
    let target = list(&b, 100); // this thread has a cache for `b`
    let holder = a.alloc(Link {
        value: 0,
        next: Some(target),
    });
    let (fa, fb) = (a.stats().frees, b.stats().frees);
    drop(holder);
    assert_eq!(a.stats().frees - fa, 1);
    assert_eq!(
        b.stats().frees - fb,
        100,
        "the other heap's list, in the same chain"
    );
}

/// A record with a string and a vector of handles: its drop drops handles and frees
/// memory, no user code (`Trace::DROP_ONLY_FREES`).
#[derive(Trace)]
struct Record {
    name: String,
    kids: Vec<Gc<Link>>,
    next: GcCell<Option<Gc<Record>>>,
}

#[test]
fn a_drop_that_only_frees_memory_runs_at_count_zero_and_after_collections() {
    use fing::Typed;
    let _s = serial();
    let t = <Record as Typed>::TYPE;
    assert!(t.needs_drop() && !t.handles_only_drop());
    // Freed in the section, as a handles-only `Link` is; `WithDrop`'s destructor is user
    // code: doomed, destroyed outside every section.
    assert_eq!(t.at_zero(), <Link as Typed>::TYPE.at_zero());
    assert_ne!(t.at_zero(), <WithDrop as Typed>::TYPE.at_zero());
    let h = heap();
    // At count zero: the record and the list only its vector holds go with the last drop
    // (repeated until one drop runs clear of other tests' collections, which defer it).
    let freed_at_zero = (0..100).any(|_| {
        let r = h.alloc(Record {
            name: "r".repeat(100),
            kids: vec![list(&h, 10)],
            next: GcCell::new(None),
        });
        let before = h.stats().heap_objects;
        drop(r);
        h.stats().heap_objects == before - 11
    });
    assert!(
        freed_at_zero,
        "a record and its list of 10 freed by the last drop"
    );
    // By collections: cycles of records with 256 KiB strings, collected round after round,
    // free their strings (the collection destroys such garbage after the world resumes;
    // skipping the drop as for handles-only garbage would leak 25 MiB here).
    let rss0 = fing::resident_bytes();
    let rounds = if small() { 10 } else { 100 };
    for _ in 0..rounds {
        let a = h.alloc(Record {
            name: "x".repeat(256 << 10),
            kids: Vec::new(),
            next: GcCell::new(None),
        });
        a.next.set(Some(a.clone()));
        drop(a);
        h.collect();
    }
    // (`resident_bytes` is `None` where the OS does not say; AddressSanitizer quarantines
    // freed memory, so resident memory says nothing under it.)
    let asan = std::env::var_os("ASAN_OPTIONS").is_some();
    if let (false, Some(rss0), Some(rss1)) = (asan, rss0, fing::resident_bytes()) {
        let grown = rss1.saturating_sub(rss0);
        assert!(grown < 12 << 20, "resident memory grew by {grown} bytes");
    }
}

static PROBES: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Probe {
    id: u64,
}

// SAFETY: `drop` touches no handle.
unsafe impl fing::AllowDrop for Probe {}

impl Drop for Probe {
    fn drop(&mut self) {
        PROBES.fetch_add(1, Ordering::SeqCst);
    }
}

/// A large object whose drop only frees memory (a slice of `(String, Gc<_>)`, a span of
/// its own) is destroyed by its last drop, as a small one is, not left for a collection
/// with everything it holds (the review's finding: 4000 elements waited for `collect`).
#[test]
fn a_large_object_whose_drop_frees_memory_goes_with_its_last_handle() {
    let _s = serial();
    let h = heap();
    let n = if small() { 100 } else { 4000 };
    for &n in &[10usize, n] {
        // Repeated until one drop runs clear of other tests' collections (which defer it).
        let freed = (0..20).any(|_| {
            let before = PROBES.load(Ordering::SeqCst);
            let elems: Vec<(String, Gc<Probe>)> = (0..n)
                .map(|i| (format!("s{i}"), h.alloc(Probe { id: i as u64 })))
                .collect();
            drop(h.alloc_slice(elems));
            PROBES.load(Ordering::SeqCst) - before == n
        });
        assert!(freed, "{n} elements dropped with the slice's last handle");
    }
}
