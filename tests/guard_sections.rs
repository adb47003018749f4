//! A `GcCell` write guard keeps the collector out of the heap for as long as it lives,
//! wherever it is kept: its mutator section never ends before it does. Each test puts a
//! guard where fing's own bookkeeping used to end its section early, then checks that a
//! collection on another thread waits for the guard to go.
//!
//! Found by a red-team review (session 21): in each case the section ended with the guard
//! still live, and a collection could free the object the guard's `&mut` pointed into
//! (shown under valgrind as a write into a freed slot).
//!
//! What the tests observe is that the collection does not end while the guard is held:
//! they give it a quarter of a second to do so. A build with the bug can pass by luck;
//! the fixed build cannot fail by it.

#![allow(missing_docs)]

use std::cell::RefCell;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use fing::{Gc, GcCell, GcRefMut, Heap, HeapConfig, Trace};

#[derive(Trace)]
struct Obj {
    id: u64,
    kids: GcCell<Vec<u64>>,
}

fn quiet_heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

/// A leaked object of `h`: a `'static` cell whose guards can be put anywhere.
fn leaked(h: &Heap, id: u64) -> &'static Gc<Obj> {
    Box::leak(Box::new(h.alloc(Obj {
        id,
        kids: GcCell::new(Vec::new()),
    })))
}

/// Waits for `held` (a guard is live and put away), then runs `h.collect()` on a thread of
/// its own: asserts that it does not end within 250 ms, then sends `go` (the guard may
/// go) and waits for the collection to end.
fn collection_waits_for_the_guard(
    h: &Heap,
    held: mpsc::Receiver<()>,
    go: mpsc::Sender<()>,
    holder: thread::JoinHandle<()>,
) {
    held.recv_timeout(Duration::from_secs(30))
        .expect("the holder put its guard away");
    let (done_tx, done) = mpsc::channel();
    let h2 = h.clone();
    let collector = thread::spawn(move || {
        h2.collect();
        let _ = done_tx.send(());
    });
    match done.recv_timeout(Duration::from_millis(250)) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(()) => panic!("a collection ended while a write guard was live"),
        Err(RecvTimeoutError::Disconnected) => panic!("the collector thread panicked"),
    }
    go.send(()).expect("the holder waits for go");
    done.recv_timeout(Duration::from_secs(30))
        .expect("the collection ends once the guard is dropped");
    collector.join().unwrap();
    holder.join().expect("the holder exits cleanly");
}

/// A guard kept in a thread-local that the thread's exit destroys after fing's own thread
/// state (first touched before any fing call).
mod kept_past_thread_state {
    use super::*;

    pub(crate) struct Late {
        pub(crate) guard: Option<GcRefMut<'static, Vec<u64>>>,
        pub(crate) signals: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    }

    impl Drop for Late {
        fn drop(&mut self) {
            if let Some((held, go)) = self.signals.take() {
                held.send(()).unwrap();
                go.recv().unwrap();
            }
            self.guard.take();
        }
    }

    thread_local! {
        pub(crate) static LATE: RefCell<Late> = const {
            RefCell::new(Late { guard: None, signals: None })
        };
    }
}

#[test]
fn a_guard_kept_past_the_threads_fing_state_keeps_the_collector_out() {
    use kept_past_thread_state::LATE;
    let h = quiet_heap();
    let o = leaked(&h, 1);
    let (held_tx, held) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let holder = thread::spawn(move || {
        // First touched before any fing call: destroyed after fing's thread state.
        LATE.with(|_| ());
        let mut g = o.kids.borrow_mut();
        g.push(o.id);
        LATE.with(|l| {
            let mut l = l.borrow_mut();
            l.guard = Some(g);
            l.signals = Some((held_tx, go_rx));
        });
    });
    collection_waits_for_the_guard(&h, held, go, holder);
    assert_eq!(*o.kids.borrow(), vec![1]);
}

/// Two guards taken inside a thread-local's destructor after fing's thread state is gone
/// (the first makes a temporary one), the first dropped first.
mod nested_after_thread_state {
    use super::*;

    pub(crate) struct Late {
        pub(crate) cells: Option<(&'static Gc<Obj>, &'static Gc<Obj>)>,
        pub(crate) signals: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    }

    impl Drop for Late {
        fn drop(&mut self) {
            let (Some((a, b)), Some((held, go))) = (self.cells.take(), self.signals.take()) else {
                return;
            };
            let g1 = a.kids.borrow_mut();
            let mut g2 = b.kids.borrow_mut();
            drop(g1);
            held.send(()).unwrap();
            go.recv().unwrap();
            g2.push(b.id);
        }
    }

    thread_local! {
        pub(crate) static LATE: RefCell<Late> = const {
            RefCell::new(Late { cells: None, signals: None })
        };
    }
}

#[test]
fn nested_guards_after_the_threads_fing_state_end_in_any_order() {
    use nested_after_thread_state::LATE;
    let h = quiet_heap();
    let (a, b) = (leaked(&h, 1), leaked(&h, 2));
    let (held_tx, held) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let holder = thread::spawn(move || {
        LATE.with(|_| ());
        // The thread's first fing call: its state is made now, after `LATE`.
        drop(Gc::clone(a));
        LATE.with(|l| {
            let mut l = l.borrow_mut();
            l.cells = Some((a, b));
            l.signals = Some((held_tx, go_rx));
        });
    });
    collection_waits_for_the_guard(&h, held, go, holder);
    assert_eq!(*b.kids.borrow(), vec![2]);
}

/// A guard that a destructor (run outside every section when its object's count reaches
/// zero) takes and puts away in a thread-local: the freeing that follows the destructors
/// must happen inside the guard's section, not end it.
mod kept_by_a_destructor {
    use super::*;

    thread_local! {
        pub(crate) static STASH: RefCell<Option<GcRefMut<'static, Vec<u64>>>> =
            const { RefCell::new(None) };
    }

    pub(crate) struct Stasher(pub &'static Gc<Obj>);

    impl Drop for Stasher {
        fn drop(&mut self) {
            let g = self.0.kids.borrow_mut();
            STASH.with(|s| *s.borrow_mut() = Some(g));
        }
    }

    #[derive(Trace)]
    pub(crate) struct Doomy {
        #[gc(untraced)]
        pub(crate) stasher: Stasher,
    }
}

#[test]
fn a_guard_a_destructor_puts_away_keeps_the_collector_out() {
    use kept_by_a_destructor::{Doomy, Stasher, STASH};
    let h = quiet_heap();
    let o = leaked(&h, 3);
    let (held_tx, held) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let h2 = h.clone();
    let holder = thread::spawn(move || {
        // The last handle: the destructor runs here, and puts the guard away.
        drop(h2.alloc(Doomy {
            stasher: Stasher(o),
        }));
        assert!(
            STASH.with(|s| s.borrow().is_some()),
            "the destructor ran at the drop"
        );
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        STASH.with(|s| {
            let mut g = s.borrow_mut().take().expect("the guard");
            g.push(o.id);
        });
    });
    collection_waits_for_the_guard(&h, held, go, holder);
    assert_eq!(*o.kids.borrow(), vec![3]);
}
