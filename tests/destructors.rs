//! Destructors of dead objects (the `Drop` of `#[gc(untraced)]` fields and of
//! `#[gc(unsafe_allow_drop)]` types) run outside the collector's stop, on a thread where
//! everything a mutator does works: allocating, dropping handles taken from elsewhere,
//! taking locks that mutators hold while they allocate, `collect()`, `wait_finalizers()`.
//! Handles hidden from the collector in untraced fields are released when their owner
//! dies. Objects with destructors are freed when their count reaches zero, like `Arc`.
//!
//! Each test was a crash, a hang or a leak before destructors left the stop (issue 13).

#![allow(missing_docs, dead_code)]

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use fing::{DropOnlyFrees, Gc, GcCell, Heap, HeapConfig, Trace};

/// A drop that meets another test's collection waits in its thread's ring and is applied
/// by that collection (drops never wait for a collector): the count then reaches zero
/// there, and the object is left to its own heap's next collection. The test that counts
/// frees at the drop runs alone.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn quiet_heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

/// A heap that collects often on its own (every 64 KiB of growth).
fn busy_heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = Some(50);
    c.min_heap = 64 << 10;
    Heap::new(c)
}

/// Runs `f` on a thread and fails (instead of hanging) if it does not finish in time.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            t.join().unwrap();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: deadlocked"),
    }
}

#[derive(Trace)]
struct Leaf {
    id: u64,
}

/// What a destructor does when its owner dies.
type Action = Box<dyn FnOnce() + Send>;

/// Runs its action when dropped (in a `Mutex` only to be `Sync`).
struct OnDrop(Mutex<Option<Action>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let f = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(f) = f {
            f();
        }
    }
}

/// An object with a destructor (its untraced field's) that can be put in a cycle.
#[derive(Trace)]
struct Owner {
    id: u64,
    next: GcCell<Option<Gc<Owner>>>,
    #[gc(untraced)]
    on_drop: OnDrop,
}

fn owner(h: &Heap, id: u64, f: impl FnOnce() + Send + 'static) -> Gc<Owner> {
    h.alloc(Owner {
        id,
        next: GcCell::new(None),
        on_drop: OnDrop(Mutex::new(Some(Box::new(f)))),
    })
}

/// Makes `o` unreachable garbage that only a collection finds: a cycle through itself.
fn into_cycle(o: Gc<Owner>) {
    o.next.set(Some(o.clone()));
}

/// What destructors allocate: 48-byte objects whose fields check each other.
#[derive(Trace)]
struct Made {
    id: u64,
    check: u64,
    next: Option<Gc<Leaf>>,
}

fn check(id: u64) -> u64 {
    id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[test]
fn a_destructor_run_by_a_collection_can_allocate() {
    let _serial = serial();
    let h = quiet_heap();
    let kept: Arc<Mutex<Vec<Gc<Made>>>> = Arc::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let per = 40u64;
    for round in 0..20u64 {
        for i in 0..500u64 {
            let (h2, kept, ran) = (h.clone(), kept.clone(), ran.clone());
            into_cycle(owner(&h, i, move || {
                // Enough allocation to take fresh spans of several classes.
                let base = (round * 500 + i) * per;
                let mine: Vec<Gc<Made>> = (base..base + per)
                    .map(|id| {
                        h2.alloc(Made {
                            id,
                            check: check(id),
                            next: Some(h2.alloc(Leaf { id })),
                        })
                    })
                    .collect();
                drop(h2.alloc([round; 64]));
                kept.lock().unwrap().extend(mine);
                ran.fetch_add(1, Ordering::SeqCst);
            }));
        }
        h.collect();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            (round as usize + 1) * 500,
            "every destructor ran, once, by the time collect() returned"
        );
    }
    h.collect();
    let kept = std::mem::take(&mut *kept.lock().unwrap());
    assert_eq!(kept.len() as u64, 20 * 500 * per);
    let mut ids: Vec<u64> = kept
        .iter()
        .map(|m| {
            assert_eq!(
                m.check,
                check(m.id),
                "what a destructor allocated is intact"
            );
            assert_eq!(m.next.as_ref().unwrap().id, m.id);
            m.id
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), kept.len(), "and no two objects share a slot");
    for m in kept.iter() {
        let addr = Gc::as_ptr(m).cast::<u8>();
        assert!(
            fing::find_object(addr).is_some(),
            "a kept object's slot is allocated"
        );
    }
    drop(kept);
    h.collect();
    h.collect();
    assert_eq!(
        h.stats().heap_objects,
        0,
        "and everything is freed once dropped"
    );
}

/// The global log a destructor takes, which a mutator holds while it allocates.
static LOG: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[test]
fn a_destructor_may_take_a_lock_that_a_mutator_holds_while_it_allocates() {
    let _serial = serial();
    let h = busy_heap();
    let stop = Arc::new(AtomicBool::new(false));
    let mutator = {
        let (h, stop) = (h.clone(), stop.clone());
        thread::spawn(move || {
            let mut steps = 0u64;
            while !stop.load(Ordering::SeqCst) || steps < 20_000 {
                let g = LOG.lock().unwrap();
                // Allocation may trigger a collection; its destructors must not run here.
                let l = h.alloc(Leaf { id: steps });
                assert_eq!(l.id, steps);
                drop(g);
                steps += 1;
            }
            steps
        })
    };
    let producer = {
        let h = h.clone();
        thread::spawn(move || {
            for i in 0..20_000u64 {
                into_cycle(owner(&h, i, move || LOG.lock().unwrap().push(i)));
                if i % 2_000 == 0 {
                    h.collect();
                }
            }
            h.collect();
        })
    };
    within(120, "destructors taking a lock mutators hold", move || {
        producer.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        mutator.join().unwrap()
    });
    within(60, "the last collection", move || {
        h.collect();
        fing::wait_finalizers();
    });
    let mut log = std::mem::take(&mut *LOG.lock().unwrap());
    log.sort_unstable();
    log.dedup();
    assert_eq!(log.len(), 20_000, "every destructor ran once");
}

#[test]
fn a_destructor_may_collect_and_wait_for_finalizers() {
    let _serial = serial();
    let h = quiet_heap();
    let ran = Arc::new(AtomicUsize::new(0));
    let fin = Arc::new(AtomicUsize::new(0));
    for i in 0..10 {
        let (h2, ran, fin) = (h.clone(), ran.clone(), fin.clone());
        into_cycle(owner(&h, i, move || {
            let leaf = h2.alloc(Leaf { id: i });
            let fin = fin.clone();
            leaf.set_finalizer(move |_| {
                fin.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
            drop(leaf);
            h2.collect();
            fing::wait_finalizers();
            ran.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let h2 = h.clone();
    within(60, "collect() whose destructors collect", move || {
        h2.collect()
    });
    assert_eq!(ran.load(Ordering::SeqCst), 10);
    assert_eq!(
        fin.load(Ordering::SeqCst),
        10,
        "each destructor's collection queued its leaf's finalizer, and its wait saw it run"
    );
}

/// A registry of handles that destructors take their entries out of.
static REGISTRY: Mutex<Vec<Gc<Leaf>>> = Mutex::new(Vec::new());

#[test]
fn a_handle_dropped_by_a_destructor_is_counted() {
    let _serial = serial();
    let h = quiet_heap();
    let finalized = Arc::new(AtomicUsize::new(0));
    let n = 100;
    for i in 0..n {
        let leaf = h.alloc(Leaf { id: i });
        let f = finalized.clone();
        leaf.set_finalizer(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        REGISTRY.lock().unwrap().push(leaf);
        // A cycle, so only a collection finds it; its destructor drops a registry entry.
        into_cycle(owner(&h, i, || drop(REGISTRY.lock().unwrap().pop())));
    }
    for _ in 0..4 {
        h.collect();
        fing::wait_finalizers();
    }
    assert!(REGISTRY.lock().unwrap().is_empty());
    assert_eq!(
        finalized.load(Ordering::SeqCst),
        n as usize,
        "every leaf whose last handle a destructor dropped was found unreachable"
    );
    h.collect();
    assert_eq!(h.stats().heap_objects, 0, "and freed after its finalizer");
}

/// A handle the untraced check cannot see: a wrapper without `Trace`.
struct Hidden(#[allow(dead_code)] Gc<Leaf>);

#[derive(Trace)]
struct HidesHandles {
    next: GcCell<Option<Gc<HidesHandles>>>,
    #[gc(untraced)]
    wrapped: Hidden,
    #[gc(untraced)]
    boxed: Box<dyn Any + Send + Sync>,
}

#[test]
fn handles_hidden_in_untraced_fields_are_released_when_their_owner_dies() {
    let _serial = serial();
    let h = quiet_heap();
    let dead = Arc::new(AtomicUsize::new(0));
    let leaf = |id: u64| {
        let l = h.alloc(Leaf { id });
        let d = dead.clone();
        l.set_finalizer(move |_| {
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        l
    };
    // One owner dropped (freed at count zero), one in a cycle (found by a collection).
    for cyclic in [false, true] {
        let o = h.alloc(HidesHandles {
            next: GcCell::new(None),
            wrapped: Hidden(leaf(1)),
            boxed: Box::new(leaf(2)),
        });
        if cyclic {
            o.next.set(Some(o.clone()));
        }
        drop(o);
    }
    for _ in 0..4 {
        h.collect();
        fing::wait_finalizers();
    }
    assert_eq!(
        dead.load(Ordering::SeqCst),
        4,
        "every hidden handle was dropped with its owner, and its object found unreachable"
    );
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[derive(Trace)]
struct WithVec {
    items: Vec<u64>,
    name: String,
    next: Option<Gc<WithVec>>,
}

#[test]
fn objects_with_destructors_are_freed_when_their_count_reaches_zero() {
    let _serial = serial();
    let h = quiet_heap();
    let n = 10_000u64;
    let mut head: Option<Gc<WithVec>> = None;
    for i in 0..n {
        head = Some(h.alloc(WithVec {
            items: vec![i; 4],
            name: format!("item {i}"),
            next: head,
        }));
    }
    let built = h.stats();
    assert_eq!(head.as_ref().unwrap().items, vec![n - 1; 4]);
    drop(head); // the whole list, with its vectors and strings, in constant stack
    let dropped = h.stats();
    assert_eq!(dropped.num_gc, built.num_gc, "no collection ran");
    assert_eq!(
        dropped.frees - built.frees,
        n,
        "every object freed by the drop"
    );
}

/// Compiled code, shared by frames: its drop only frees.
struct Code {
    name: String,
}

// SAFETY: no `Drop` of its own; a `String` only frees.
unsafe impl DropOnlyFrees for Code {}

/// An interpreter's frame: slots in a `Vec` (one of them the frame itself, a cycle), handles
/// to outside objects, and its code behind an `Arc`. Its destructor only frees
/// (`DROP_ONLY_FREES`), so a collection drops its garbage in its release step.
#[derive(Trace)]
struct Frame {
    slots: GcCell<Vec<Option<Gc<Frame>>>>,
    outside: Vec<Gc<Owner>>,
    #[gc(untraced)]
    code: Arc<Code>,
}

/// Garbage frames whose destructors only free are dropped (once each) by the collection
/// that finds them, in one stop or in steps (in its release step: mgcsweep), and the
/// counts their handles held on a live object are given back exactly: its destructor runs
/// when the test drops its own last handle, not before.
#[test]
fn garbage_whose_drop_only_frees_is_dropped_once_and_gives_its_counts_back() {
    let _serial = serial();
    const { assert!(<Frame as Trace>::DROP_ONLY_FREES) };
    let h = quiet_heap();
    let code = Arc::new(Code {
        name: "f".to_string(),
    });
    for stepped in [false, true] {
        let freed = Arc::new(AtomicBool::new(false));
        let f = freed.clone();
        let live = owner(&h, 1, move || f.store(true, Ordering::SeqCst));
        let n = 500;
        for _ in 0..n {
            let frame = h.alloc(Frame {
                slots: GcCell::new(vec![None, None]),
                outside: vec![live.clone(), live.clone(), live.clone()],
                code: code.clone(),
            });
            frame.slots.borrow_mut()[1] = Some(frame.clone());
        }
        assert_eq!(Arc::strong_count(&code), 1 + n, "the frames hold the code");
        let before = h.stats();
        if stepped {
            while !h.collect_step(Duration::from_micros(50)) {}
        } else {
            h.collect();
        }
        assert_eq!(
            Arc::strong_count(&code),
            1,
            "the cycle that found the frames dropped them (stepped: {stepped})"
        );
        assert_eq!(h.stats().frees - before.frees, n as u64);
        assert!(!freed.load(Ordering::SeqCst), "a live object was freed");
        drop(live);
        assert!(
            freed.load(Ordering::SeqCst),
            "the frames' counts on the live object were given back exactly"
        );
    }
    assert_eq!(code.name, "f");
}

/// Drops a clone of `Owner`'s own handle from its destructor: the dropping thread frees
/// the object, runs its destructor outside any section, and the destructor's own drops,
/// allocations and cell writes work there.
#[test]
fn a_destructor_run_at_count_zero_may_use_the_heap() {
    let _serial = serial();
    let h = quiet_heap();
    let made = Arc::new(Mutex::new(Vec::new()));
    let (h2, m) = (h.clone(), made.clone());
    let o = owner(&h, 1, move || {
        let cell = h2.alloc(GcCell::new(None::<Gc<Leaf>>));
        *cell.borrow_mut() = Some(h2.alloc(Leaf { id: 7 }));
        m.lock().unwrap().push(cell);
        h2.collect();
    });
    // Dropped inside a cell write guard: the destructor waits until the guard is gone.
    let holder = h.alloc(GcCell::new(Some(o)));
    *holder.borrow_mut() = None;
    let made = made.lock().unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].borrow().as_ref().unwrap().id, 7);
}

/// A destructor that panics is caught and counted; the object is freed anyway, and the
/// thread that dropped the last handle goes on.
#[test]
fn a_panicking_destructor_at_count_zero_is_contained() {
    let _serial = serial();
    let h = quiet_heap();
    let before = h.stats().destructor_panics;
    drop(owner(&h, 1, || panic!("a destructor panics on purpose")));
    let o = owner(&h, 2, || panic!("a destructor panics on purpose"));
    into_cycle(o);
    h.collect();
    assert_eq!(h.stats().destructor_panics, before + 2);
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

/// A node whose destructor is user code (its `String`, its token).
#[derive(Trace)]
struct Named {
    id: u64,
    name: String,
    next: GcCell<Option<Gc<Named>>>,
    #[gc(untraced)]
    token: Counted,
}

/// Counts the destructors that ran.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Four threads build lists of objects with destructors, cut them, and make cyclic
/// garbage of them, while automatic collections (whose destructors the drop thread runs)
/// and explicit ones race them: every object is intact while reachable, every destructor
/// runs exactly once, and one collection after the threads end leaves nothing.
#[test]
fn destructors_racing_collections_on_four_threads() {
    let _serial = serial();
    let mut c = HeapConfig::default();
    c.gogc = Some(50);
    c.min_heap = 256 << 10;
    let h = Heap::new(c);
    let made = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let node = |h: &Heap, id: u64, made: &AtomicUsize, dropped: &Arc<AtomicUsize>| {
        made.fetch_add(1, Ordering::SeqCst);
        h.alloc(Named {
            id,
            name: format!("node {id}"),
            next: GcCell::new(None),
            token: Counted(dropped.clone()),
        })
    };
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (h, made, dropped, stop) = (h.clone(), made.clone(), dropped.clone(), stop.clone());
            thread::spawn(move || {
                let head = node(&h, t << 40, &made, &dropped);
                let mut len = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = node(&h, (t << 40) + len, &made, &dropped);
                    n.next.set(head.next.take());
                    head.next.set(Some(n));
                    len += 1;
                    if len.is_multiple_of(256) {
                        // Cut the list: what follows dies at count zero, here.
                        let mut cur = head.next.borrow().clone();
                        for _ in 0..16 {
                            cur = cur.and_then(|c| c.next.borrow().clone());
                        }
                        if let Some(c) = cur {
                            c.next.set(None);
                        }
                        // Walk what is left.
                        let mut cur = head.next.borrow().clone();
                        while let Some(c) = cur {
                            assert_eq!(c.name, format!("node {}", c.id), "thread {t}");
                            cur = c.next.borrow().clone();
                        }
                    }
                    // Cyclic garbage with destructors: found by collections.
                    let a = node(&h, 1, &made, &dropped);
                    let b = node(&h, 2, &made, &dropped);
                    a.next.set(Some(b.clone()));
                    b.next.set(Some(a));
                }
            })
        })
        .collect();
    let collector = {
        let (h, stop) = (h.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                h.collect();
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a mutator panicked");
    }
    collector.join().unwrap();
    h.collect();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        made.load(Ordering::SeqCst),
        "every destructor ran, once"
    );
    assert_eq!(h.stats().heap_objects, 0, "and every slot is free");
}

/// Lists of objects with destructors built and dropped on two threads (each drop a chain
/// of destructors run outside sections) while a third collects without pause.
#[test]
fn chains_of_destructors_racing_collections() {
    let _serial = serial();
    let h = quiet_heap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let list = |h: &Heap, n: u64, d: &Arc<AtomicUsize>| {
        let mut head: Option<Gc<Named>> = None;
        for id in 0..n {
            head = Some(h.alloc(Named {
                id,
                name: format!("node {id}"),
                next: GcCell::new(head),
                token: Counted(d.clone()),
            }));
        }
        head.unwrap()
    };
    let keep = list(&h, 1000, &dropped);
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (h, done) = (h.clone(), done.clone());
        thread::spawn(move || {
            let mut k = 0;
            while !done.load(Ordering::SeqCst) || k < 3 {
                h.collect();
                k += 1;
            }
        })
    };
    let rounds = if cfg!(debug_assertions) { 20 } else { 100 };
    let mutators: Vec<_> = (0..2)
        .map(|_| {
            let (h, d) = (h.clone(), dropped.clone());
            thread::spawn(move || {
                for r in 0..rounds {
                    let l = list(&h, 5_000 + r, &d);
                    assert_eq!(l.name, format!("node {}", 5_000 + r - 1));
                    drop(l);
                }
            })
        })
        .collect();
    for m in mutators {
        m.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    collector.join().unwrap();
    // The collector's last `collect()` may have begun before the mutators' last drops
    // (a drop that meets a collection is applied by the next one, and the exiting
    // mutators spilled theirs): one more, which sees every drop.
    h.collect();
    // The mutators' own automatic collections handed their batches to the drop thread,
    // maybe after that `collect()` began (it waits only for batches of before its call):
    // wait for those too.
    h.wait_finalizers();
    let mut cur = Some(keep.clone());
    let mut n = 0;
    while let Some(c) = cur {
        assert_eq!(c.name, format!("node {}", c.id));
        n += 1;
        cur = c.next.borrow().clone();
    }
    assert_eq!(n, 1000, "the kept list is intact");
    let made: u64 = 2 * (0..rounds).map(|r| 5_000 + r).sum::<u64>();
    assert_eq!(
        dropped.load(Ordering::SeqCst) as u64,
        made,
        "every destructor once"
    );
    drop((cur, keep));
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

/// A chain of destructors that meets a collection as its thread exits. A drop that meets
/// a collection is recorded in the dropping thread's ring (drops never wait for a
/// collector), and an exiting thread applies its ring before it leaves the list of
/// threads, in a section, where the rest of the chain dies and its destructors run; a
/// drop made by one of *those* that met a second collection was left in the ring, which
/// no one drains once the thread has left: the rest of the list leaked (the test above
/// caught it 1 run in 20 on one core). Here a destructor makes each meeting certain: it
/// starts a collection and returns only once that collection holds the world (its
/// `Gate` traced, which then keeps the world 50 ms), so the drop of `next` that follows
/// is recorded; the second such drop happens while the thread exits.
#[test]
fn a_chain_of_destructors_that_meets_collections_at_thread_exit_runs_to_its_end() {
    let _serial = serial();
    let h = quiet_heap();
    let gate = h.alloc(Gate { none: None });
    let dropped = Arc::new(AtomicUsize::new(0));
    let collectors: Arc<Mutex<Vec<thread::JoinHandle<()>>>> = Arc::default();
    let n = 3000u64;
    {
        let (h, d, c) = (h.clone(), dropped.clone(), collectors.clone());
        thread::spawn(move || {
            let mut head: Option<Gc<Hooked>> = None;
            for id in 0..n {
                let hook = (id == 2000 || id == 1000).then(|| (h.clone(), c.clone()));
                head = Some(h.alloc(Hooked {
                    hook: Hook(hook),
                    next: GcCell::new(head),
                    token: Counted(d.clone()),
                }));
            }
            // The chain meets the first collection at node 2000; the rest waits in this
            // thread's ring until the thread exits, and meets the second at node 1000.
            drop(head);
        })
        .join()
        .unwrap();
    }
    let started = std::mem::take(&mut *collectors.lock().unwrap());
    for c in started {
        c.join().unwrap();
    }
    h.collect();
    h.wait_finalizers();
    assert_eq!(
        dropped.load(Ordering::SeqCst) as u64,
        n,
        "every destructor of the list ran"
    );
    // A hook that gave up waiting panicked in a destructor: caught, and counted here.
    assert_eq!(h.stats().destructor_panics, 0, "no hook gave up waiting");
    drop(gate);
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

/// A node whose destructor, on a hook node, has another thread collect, and returns once
/// that collection holds the world; then its `next` is dropped (fields drop in order).
#[derive(Trace)]
struct Hooked {
    #[gc(untraced)]
    hook: Hook,
    next: GcCell<Option<Gc<Hooked>>>,
    #[gc(untraced)]
    token: Counted,
}

type Collectors = Arc<Mutex<Vec<thread::JoinHandle<()>>>>;

struct Hook(Option<(Heap, Collectors)>);

/// The next collection's `Gate` traced holds the world (for 50 ms).
static GATE_ARMED: AtomicBool = AtomicBool::new(false);
/// A collection holds the world, at the `Gate`.
static GATE_HELD: AtomicBool = AtomicBool::new(false);

impl Drop for Hook {
    fn drop(&mut self) {
        let Some((h, collectors)) = self.0.take() else {
            return;
        };
        GATE_HELD.store(false, Ordering::SeqCst);
        GATE_ARMED.store(true, Ordering::SeqCst);
        collectors
            .lock()
            .unwrap()
            .push(thread::spawn(move || h.collect()));
        let t = std::time::Instant::now();
        while !GATE_HELD.load(Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the collection never began"
            );
            thread::yield_now();
        }
    }
}

/// An object whose `trace` keeps the world stopped for 50 ms when armed.
struct Gate {
    none: Option<Gc<Hooked>>,
}

// SAFETY: the descriptor describes `Gate`: a struct whose handle `trace` reports.
unsafe impl fing::Typed for Gate {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static fing::Type =
        &unsafe { fing::Type::rust::<Gate>(fing::Kind::Struct) }.named("destructors.Gate");
}

// SAFETY: `trace` reports the one handle `Gate` owns (after waiting, when armed).
unsafe impl Trace for Gate {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut fing::Tracer) {
        if GATE_ARMED.swap(false, Ordering::SeqCst) {
            GATE_HELD.store(true, Ordering::SeqCst);
            let began = std::time::Instant::now();
            while began.elapsed() < Duration::from_millis(50) {
                std::hint::spin_loop();
            }
        }
        self.none.trace(t);
    }
}

/// A panic payload whose own `Drop` panics.
struct Nasty;

impl Drop for Nasty {
    fn drop(&mut self) {
        panic!("the payload panics too");
    }
}

/// A destructor that panics with such a payload is contained like any other, and the
/// thread's later deaths are destroyed as usual.
#[test]
fn a_panic_payload_that_panics_when_dropped_is_contained() {
    let _serial = serial();
    let h = quiet_heap();
    drop(owner(&h, 1, || std::panic::panic_any(Nasty)));
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..10 {
        let r = ran.clone();
        drop(owner(&h, i, move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 10, "the next destructors ran");
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

/// `collect()` waits for the destructors of garbage found before it began, not for those
/// a busy thread keeps making (on another heap): it returns while that thread runs. The
/// busy thread makes a little garbage with a slow destructor per automatic collection,
/// so the drop thread always has a batch waiting and is never idle while it runs.
#[test]
fn collect_is_not_starved_by_a_thread_making_garbage() {
    let _serial = serial();
    let busy = busy_heap();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        thread::spawn(move || {
            let mut made = 0;
            while !stop.load(Ordering::SeqCst) && made < 5_000 {
                into_cycle(owner(&busy, 0, || thread::sleep(Duration::from_millis(1))));
                made += 1;
                // 64 KiB of garbage freed at once: an automatic collection every so often.
                for _ in 0..16 {
                    drop(busy.alloc([0u64; 512]));
                }
            }
        })
    };
    let quiet = quiet_heap();
    within(
        60,
        "collect() of another heap while garbage is made",
        move || {
            for _ in 0..5 {
                quiet.collect();
            }
        },
    );
    stop.store(true, Ordering::SeqCst);
    producer.join().unwrap();
}

/// A destructor run because a finalizer dropped the last handle to its object runs on
/// the drop thread, where it may wait for finalizers.
#[test]
fn a_destructor_whose_object_a_finalizer_freed_may_wait_for_finalizers() {
    let _serial = serial();
    let h = quiet_heap();
    let waited = Arc::new(AtomicUsize::new(0));
    let w = waited.clone();
    let victim = owner(&h, 1, move || {
        fing::wait_finalizers();
        w.fetch_add(1, Ordering::SeqCst);
    });
    let carrier = h.alloc(Leaf { id: 2 });
    let slot = Arc::new(Mutex::new(Some(victim)));
    let s = slot.clone();
    carrier
        .set_finalizer(move |_| drop(s.lock().unwrap().take()))
        .unwrap();
    drop((carrier, slot));
    // The finalizer may run while its collection still sweeps: its drop then waits for
    // the next collection, as every drop made while the world is stopped does.
    let (h2, w2) = (h.clone(), waited.clone());
    within(60, "wait_finalizers from a destructor", move || {
        for _ in 0..5 {
            h2.collect();
            fing::wait_finalizers();
            if w2.load(Ordering::SeqCst) == 1 {
                break;
            }
        }
    });
    assert_eq!(waited.load(Ordering::SeqCst), 1);
    assert_eq!(h.stats().destructor_panics, 0);
}

/// `Heap::new` runs no one's destructors: while this thread holds a lock that a retired
/// heap's garbage's destructor takes, a new heap can still be made (`Heap::new` collects
/// retired heaps to reuse them, and hands their destructors to the drop thread).
#[test]
fn making_a_heap_runs_no_destructors_on_the_caller() {
    let _serial = serial();
    static HELD: Mutex<()> = Mutex::new(());
    let old = quiet_heap();
    let o = owner(&old, 1, || drop(HELD.lock().unwrap()));
    into_cycle(o.clone());
    drop(old); // retired with a live object: kept
    drop(o); // now garbage, in a cycle: only a collection finds it
    let guard = HELD.lock().unwrap();
    let made = within(60, "Heap::new while holding a lock", || {
        (0..4).map(|_| quiet_heap()).collect::<Vec<_>>().len()
    });
    drop(guard);
    assert_eq!(made, 4);
    fing::wait_finalizers();
}
