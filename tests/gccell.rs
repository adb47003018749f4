//! `GcCell` borrows behave like `RefCell`'s on one thread and like `RwLock`'s across
//! threads: a conflicting borrow on the thread that holds the cell panics with a message
//! (it could never be granted), `try_borrow` and `try_borrow_mut` say who holds the cell,
//! and shared borrows nest on one thread even while another thread waits to write.

#![allow(missing_docs)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fing::{Gc, GcCell, Heap, HeapConfig};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

/// Runs `f` on a thread and fails (instead of hanging) if it does not finish in time; a
/// panic in `f` is passed on.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: deadlocked"),
    }
}

#[test]
#[should_panic(expected = "fing::GcCell::borrow_mut: already borrowed by this thread")]
fn borrow_mut_while_this_thread_reads_panics() {
    within(30, "borrow_mut under a borrow", || {
        let h = heap();
        let pair = h.alloc(GcCell::new((1u64, 2u64)));
        let r = pair.borrow();
        let mut w = pair.borrow_mut(); // `set-car!` while a caller still reads the pair
        w.0 = r.1;
    });
}

#[test]
#[should_panic(expected = "fing::GcCell::borrow_mut: already mutably borrowed by this thread")]
fn borrow_mut_twice_panics() {
    within(30, "borrow_mut under a borrow_mut", || {
        let h = heap();
        let c = h.alloc(GcCell::new(0u64));
        let _a = c.borrow_mut();
        let _b = c.borrow_mut();
    });
}

#[test]
#[should_panic(expected = "fing::GcCell::borrow: already mutably borrowed by this thread")]
fn borrow_while_this_thread_writes_panics() {
    within(30, "borrow under a borrow_mut", || {
        let h = heap();
        let c = h.alloc(GcCell::new(0u64));
        let _w = c.borrow_mut();
        let _r = c.borrow();
    });
}

/// The thread's record of its shared borrows (which `borrow_mut` reads to panic rather
/// than deadlock) stays right when guards go out of order and when more are held than it
/// lists (16).
#[test]
fn shared_borrows_released_out_of_order_are_forgotten() {
    within(30, "out-of-order releases", || {
        let h = heap();
        let cells: Vec<Gc<GcCell<u64>>> = (0..20).map(|i| h.alloc(GcCell::new(i))).collect();
        // Out of order: the oldest first, then one from the middle.
        let a = cells[0].borrow();
        let b = cells[1].borrow();
        let c = cells[2].borrow();
        drop(a);
        *cells[0].borrow_mut() += 1;
        drop(b);
        *cells[1].borrow_mut() += 1;
        assert!(cells[2].try_borrow_mut().is_err(), "cell 2 is still read");
        drop(c);
        *cells[2].borrow_mut() += 1;
        // More than the list holds, released oldest first.
        let guards: Vec<_> = cells.iter().map(|c| c.borrow()).collect();
        assert_eq!(guards.iter().map(|g| **g).sum::<u64>(), 190 + 3);
        drop(guards);
        for c in &cells {
            *c.borrow_mut() += 1;
        }
        // The same cell twice, released newest first and oldest first.
        let x = cells[5].borrow();
        let y = cells[5].borrow();
        drop(x);
        assert!(cells[5].try_borrow_mut().is_err());
        drop(y);
        *cells[5].borrow_mut() += 1;
    });
}

#[test]
#[should_panic(expected = "fing::GcCell::borrow_mut: already borrowed by this thread")]
fn borrow_mut_under_a_read_released_out_of_order_still_panics() {
    within(30, "borrow_mut under a read", || {
        let h = heap();
        let a = h.alloc(GcCell::new(0u64));
        let b = h.alloc(GcCell::new(0u64));
        let ra = a.borrow();
        let rb = b.borrow();
        drop(ra);
        let _w = b.borrow_mut();
        drop(rb);
    });
}

#[test]
fn try_borrow_says_who_holds_the_cell() {
    let h = heap();
    let c = h.alloc(GcCell::new(String::from("x")));
    {
        let r1 = c.try_borrow().expect("free");
        let r2 = c.try_borrow().expect("shared borrows share");
        let e = c.try_borrow_mut().unwrap_err();
        assert_eq!(
            e.to_string(),
            "fing::GcCell::try_borrow_mut: the GcCell<alloc::string::String> is borrowed (2 shared borrows)"
        );
        assert_eq!((r1.as_str(), r2.as_str()), ("x", "x"));
    }
    {
        let mut w = c.try_borrow_mut().expect("free again");
        w.push('y');
        let e = c.try_borrow().unwrap_err();
        assert_eq!(
            e.to_string(),
            "fing::GcCell::try_borrow: the GcCell<alloc::string::String> is mutably borrowed by this thread"
        );
        let e = c.try_borrow_mut().unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is mutably borrowed by this thread"),
            "{e}"
        );
    }
    // Held on another thread.
    let (held, release) = (mpsc::channel(), mpsc::channel::<()>());
    let c2 = c.clone();
    let t = thread::spawn(move || {
        let _w = c2.borrow_mut();
        held.0.send(()).unwrap();
        release.1.recv().unwrap();
    });
    held.1.recv().unwrap();
    let e = c.try_borrow().unwrap_err();
    assert!(
        e.to_string()
            .ends_with("is mutably borrowed by another thread"),
        "{e}"
    );
    release.0.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(&*c.borrow(), "xy");
}

#[test]
fn shared_borrows_nest_while_another_thread_waits_to_write() {
    let h = heap();
    let c: Gc<GcCell<u64>> = h.alloc(GcCell::new(1));
    let c2 = c.clone();
    within(60, "nested reads with a waiting writer", move || {
        let outer = c2.borrow();
        let c3 = c2.clone();
        let (started, waiting) = mpsc::channel();
        let writer = thread::spawn(move || {
            started.send(()).unwrap();
            *c3.borrow_mut() += 1;
        });
        waiting.recv().unwrap();
        // Give the writer time to queue behind the read (not needed for correctness:
        // the nested read must succeed whether or not it is already waiting).
        thread::sleep(Duration::from_millis(20));
        let inner = c2.borrow();
        assert_eq!(*outer + *inner, 2);
        drop((inner, outer));
        writer.join().unwrap();
    });
    assert_eq!(*c.borrow(), 2);
}

/// Four threads read and write a few cells (reads nested, writes that allocate and drop
/// handles) while collections run: every read sees a pair written whole, and no wait is
/// lost (the test ends).
#[test]
fn readers_and_writers_on_many_threads_with_collections() {
    let h = heap();
    /// A counter, seven times it, and a handle to it.
    type Pair = (u64, u64, Option<Gc<u64>>);
    let cells: Vec<Gc<GcCell<Pair>>> = (0..3).map(|_| h.alloc(GcCell::new((0, 0, None)))).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (cells, h) = (cells.clone(), h.clone());
            thread::spawn(move || {
                for i in 0..20_000u64 {
                    let c = &cells[(i + t) as usize % cells.len()];
                    if (i + t) % 3 == 0 {
                        let mut w = c.borrow_mut();
                        let v = w.0 + 1;
                        *w = (v, v.wrapping_mul(7), Some(h.alloc(v)));
                    } else {
                        let r = c.borrow();
                        let again = c.borrow();
                        assert_eq!(r.1, r.0.wrapping_mul(7), "a pair written whole");
                        assert_eq!(r.2.as_ref().map_or(0, |g| **g), r.0);
                        assert_eq!(again.0, r.0);
                    }
                }
            })
        })
        .collect();
    let collector = {
        let (h, stop) = (h.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                h.collect();
            }
        })
    };
    within(120, "cells on many threads", move || {
        for w in workers {
            w.join().unwrap();
        }
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    collector.join().unwrap();
    let total: u64 = cells.iter().map(|c| c.borrow().0).sum();
    assert_eq!(
        total,
        (0..4u64)
            .map(|t| (0..20_000u64).filter(|i| (i + t) % 3 == 0).count() as u64)
            .sum()
    );
}
