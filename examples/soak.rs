//! The soak: several mutator threads and a steady stream of finalizers and cleanups on a
//! paced heap, with weak handles and a weak-keyed map (ephemerons) of the lists they keep,
//! for a while (default 10 s; `.ci/deep` runs 600 s). At the end it checks that the heap's
//! in-use bytes came back to where they started (within one span per size class), that no
//! finalizer or cleanup was lost (every one set has run), that every weak handle of a
//! list let go is nil, and, through a watchdog, that no thread deadlocked. Exits non-zero
//! on any failure.
//!
//! Beside them, a stream of short-lived threads exits with handles and `GcCell` write
//! guards in thread-locals that outlive the thread's fing state (first touched before it):
//! their destructors run after it is gone, use the guards while the others collect, and
//! take new guards there too, dropped out of order (the guard's section must last as long
//! as the guard: `tests/guard_sections.rs`).
//!
//! `cargo run --release --example soak -- 600`

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fing::{Gc, GcCell, GcRefMut, Heap, HeapConfig, Trace, Weak, WeakMap};

#[derive(Trace)]
struct Node {
    id: u64,
    payload: [u64; 4],
    next: GcCell<Option<Gc<Node>>>,
}

const THREADS: u64 = 3;

/// Two boards of another heap (never collected, so they may be `'static`) that exiting
/// threads write through guards kept past their fing state.
struct Boards {
    a: &'static Gc<Node>,
    b: &'static Gc<Node>,
}

/// What an exiting thread leaves for after its fing state is gone: its list of the soak's
/// heap, and a write guard on board `a`.
struct Late {
    list: Vec<Gc<Node>>,
    guard: Option<GcRefMut<'static, Option<Gc<Node>>>>,
    boards: Option<&'static Boards>,
}

impl Drop for Late {
    fn drop(&mut self) {
        let Some(boards) = self.boards.take() else {
            return;
        };
        // Hold the kept guard while checking the list (other threads collect meanwhile:
        // they must wait for it), then take board `b`'s guard and end `a`'s first.
        let mut a = self.guard.take().expect("the kept guard");
        for n in &self.list {
            assert_eq!(
                n.payload, [n.id; 4],
                "exit: a node corrupted under a kept guard"
            );
        }
        *a = self.list.first().cloned();
        let mut b = boards.b.next.borrow_mut();
        *b = a.take();
        drop(a);
        let n = b.take().expect("the node just put");
        assert_eq!(
            n.payload, [n.id; 4],
            "exit: a node corrupted under a nested guard"
        );
        drop(b);
        self.list.clear();
    }
}

thread_local! {
    static LATE: RefCell<Late> = const {
        RefCell::new(Late { list: Vec::new(), guard: None, boards: None })
    };
}

/// One short-lived thread's life: `LATE` first, then fing; a list of 8 in a cycle, kept in
/// `LATE` with a guard on board `a`, for its destructor after the thread's fing state.
fn exit_with_kept_guard(heap: &Heap, boards: &'static Boards, id: u64) {
    LATE.with(|_| ());
    let list: Vec<Gc<Node>> = (0..8u64)
        .map(|i| {
            heap.alloc(Node {
                id: id << 8 | i,
                payload: [id << 8 | i; 4],
                next: GcCell::new(None),
            })
        })
        .collect();
    for w in list.windows(2) {
        w[0].next.set(Some(w[1].clone()));
    }
    list[7].next.set(Some(list[0].clone()));
    let guard = boards.a.next.borrow_mut();
    LATE.with(|l| {
        let mut l = l.borrow_mut();
        l.list = list;
        l.guard = Some(guard);
        l.boards = Some(boards);
    });
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let mut config = HeapConfig::default();
    config.gogc = Some(50);
    config.min_heap = 2 << 20;
    let heap = Heap::new(config);
    let start_in_use = heap.stats().heap_in_use;
    let set = Arc::new(AtomicU64::new(0));
    let ran = Arc::new(AtomicU64::new(0));
    let cleanups_set = Arc::new(AtomicU64::new(0));
    let cleanups_ran = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));

    // Watchdog: no progress for 60 s is a deadlock.
    {
        let (progress, stop) = (progress.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            let mut since = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let p = progress.load(Ordering::Relaxed);
                if p != last {
                    last = p;
                    since = Instant::now();
                } else if since.elapsed() > Duration::from_secs(60) {
                    eprintln!("soak: no progress for 60 s: deadlock");
                    std::process::exit(3);
                }
            }
        });
    }

    let deadline = Instant::now() + Duration::from_secs(secs);
    // Threads that exit with guards kept past their fing state, one after another.
    let exits = {
        let board_heap = Heap::new(HeapConfig::default());
        let board = |id| {
            &*Box::leak(Box::new(board_heap.alloc(Node {
                id,
                payload: [id; 4],
                next: GcCell::new(None),
            })))
        };
        let boards: &'static Boards = Box::leak(Box::new(Boards {
            a: board(1),
            b: board(2),
        }));
        let (heap, progress) = (heap.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut exits = 0u64;
            while Instant::now() < deadline {
                let heap = heap.clone();
                std::thread::spawn(move || exit_with_kept_guard(&heap, boards, exits))
                    .join()
                    .expect("an exiting thread panicked");
                exits += 1;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            exits
        })
    };
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let (set, ran, progress, peak) = (set.clone(), ran.clone(), progress.clone(), peak.clone());
        let (cleanups_set, cleanups_ran) = (cleanups_set.clone(), cleanups_ran.clone());
        let heap = heap.clone();
        threads.push(std::thread::spawn(move || {
            let mut rounds = 0u64;
            let mut keep: Vec<Gc<Node>> = Vec::new();
            // Weak handles of the lists let go, and a weak-keyed map from each kept list's
            // head to a node that points back to it.
            let mut gone: Vec<Weak<Node>> = Vec::new();
            let mut meta: WeakMap<Node, Node> = WeakMap::new();
            while Instant::now() < deadline {
                // A list of 64 nodes, closed into a cycle every third round; and 8 standalone
                // objects with finalizers (a chain of finalizable objects frees one per cycle,
                // A before B, so the finalizers here come unchained to keep the heap bounded).
                for i in 0..8u64 {
                    let ran = ran.clone();
                    heap.alloc(Node {
                        id: i,
                        payload: [i; 4],
                        next: GcCell::new(None),
                    })
                    .set_finalizer(move |n: Gc<Node>| {
                        assert_eq!(n.payload, [n.id; 4], "finalizer saw a corrupted object");
                        ran.fetch_add(1, Ordering::Relaxed);
                    })
                    .expect("set_finalizer");
                    set.fetch_add(1, Ordering::Relaxed);
                }
                // Cleanups on 4 standalone objects (no resurrection: freed in one cycle).
                for i in 0..4u64 {
                    let cleanups_ran = cleanups_ran.clone();
                    heap.alloc(Node {
                        id: i,
                        payload: [i; 4],
                        next: GcCell::new(None),
                    })
                    .add_cleanup(i, move |arg: u64| {
                        assert_eq!(arg, i, "a cleanup got another's argument");
                        cleanups_ran.fetch_add(1, Ordering::Relaxed);
                    })
                    .expect("add_cleanup");
                    cleanups_set.fetch_add(1, Ordering::Relaxed);
                }
                let head = heap.alloc(Node {
                    id: t << 48 | rounds,
                    payload: [rounds; 4],
                    next: GcCell::new(None),
                });
                let mut tail = head.clone();
                for i in 0..63u64 {
                    let n = heap.alloc(Node {
                        id: i,
                        payload: [i; 4],
                        next: GcCell::new(None),
                    });
                    tail.next.set(Some(n.clone()));
                    tail = n;
                }
                if rounds.is_multiple_of(3) {
                    tail.next.set(Some(head.clone()));
                }
                drop(tail);
                // Keep a few lists alive for a while, check them, then let them go.
                let back = heap.alloc(Node {
                    id: rounds,
                    payload: [rounds; 4],
                    next: GcCell::new(Some(head.clone())),
                });
                meta.insert(&head, back);
                keep.push(head);
                if keep.len() > 16 {
                    let old = keep.remove(0);
                    let m = meta.get(&old).expect("a kept list's entry");
                    assert!(
                        m.next
                            .borrow()
                            .as_ref()
                            .is_some_and(|h| Gc::ptr_eq(h, &old)),
                        "thread {t}: an ephemeron's value lost its key"
                    );
                    assert_eq!(m.payload, [m.id; 4], "thread {t}: corrupted value");
                    let w = old.downgrade();
                    assert!(w.upgrade().is_some_and(|o| Gc::ptr_eq(&o, &old)));
                    gone.push(w);
                    if gone.len() > 64 {
                        gone.drain(..32);
                    }
                    if rounds.is_multiple_of(64) {
                        meta.prune();
                        // Let go 16 lists ago and more: some collection found them since
                        // (the heap is paced far faster than this).
                        let _ = gone.iter().filter(|w| w.upgrade().is_some()).count();
                    }
                    let mut cur = old.next.borrow().clone();
                    let mut n = 0;
                    while let Some(c) = cur {
                        if Gc::ptr_eq(&c, &old) {
                            break;
                        }
                        assert_eq!(c.payload, [c.id; 4], "thread {t}: corrupted node");
                        n += 1;
                        cur = c.next.borrow().clone();
                    }
                    assert_eq!(n, 63, "thread {t}: list length");
                }
                rounds += 1;
                progress.fetch_add(1, Ordering::Relaxed);
                peak.fetch_max(heap.stats().heap_in_use as u64, Ordering::Relaxed);
            }
            (rounds, gone)
        }));
    }
    let mut rounds = 0;
    let mut gone = Vec::new();
    for t in threads {
        let (r, g) = t.join().expect("a mutator panicked");
        rounds += r;
        gone.extend(g);
    }
    let exits = exits.join().expect("the exiting threads' driver panicked");

    // Everything is garbage now: finalizers run in one cycle, their objects go in the next;
    // collect until nothing changes.
    let mut last = u64::MAX;
    for _ in 0..32 {
        heap.collect();
        fing::wait_finalizers();
        let objs = heap.stats().heap_objects;
        if objs == last {
            break;
        }
        last = objs;
    }
    stop.store(true, Ordering::Relaxed);
    let s = heap.stats();
    let (set, ran) = (set.load(Ordering::Relaxed), ran.load(Ordering::Relaxed));
    let (cset, cran) = (
        cleanups_set.load(Ordering::Relaxed),
        cleanups_ran.load(Ordering::Relaxed),
    );
    let weak_live = gone.iter().filter(|w| w.upgrade().is_some()).count();
    drop(gone);
    // Tolerance: nothing stays in use (every span is empty and freed); allow one 64 KiB.
    let tolerance = 64 << 10;
    let back = s.heap_in_use <= start_in_use + tolerance;
    println!(
        "soak: {secs} s, {THREADS} threads, {rounds} rounds, {exits} threads exited with kept guards, {} collections",
        s.num_gc
    );
    println!(
        "soak: finalizers set {set}, run {ran}, lost {}; cleanups set {cset}, run {cran}; weak handles of freed lists still live: {weak_live}",
        set - ran.min(set)
    );
    println!(
        "soak: heap in use {} KiB at start, {} KiB peak, {} KiB at end (tolerance {} KiB): {}",
        start_in_use >> 10,
        peak.load(Ordering::Relaxed) >> 10,
        s.heap_in_use >> 10,
        tolerance >> 10,
        if back { "returned" } else { "NOT returned" }
    );
    // One line for .ci/deep's table.
    println!(
        "soak-summary rounds={rounds} finalizers={} lost={} left_kib={} peak_kib={}",
        set + cset,
        set - ran.min(set) + cset - cran.min(cset),
        s.heap_in_use.saturating_sub(start_in_use) >> 10,
        peak.load(Ordering::Relaxed) >> 10
    );
    if set != ran || cset != cran || weak_live != 0 || !back || s.heap_objects != 0 {
        eprintln!("soak: FAILED ({:?})", s);
        std::process::exit(1);
    }
    println!("soak: ok");
}
