//! Handles held in a thread's own `thread_local!` are dropped when the thread exits, in
//! whatever order the thread's destructors run: one whose destructor runs after fing's
//! thread state is gone is still counted (never a panic, which in a thread-local's
//! destructor aborts the process), and its object is freed.
//!
//! This file holds the one test: before issue 13 it aborted the whole test process.

#![allow(missing_docs)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use fing::{Gc, Heap, HeapConfig, Trace};

struct Count(Arc<AtomicUsize>);

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Trace)]
struct Cached {
    id: u64,
    #[gc(untraced)]
    count: Count,
}

thread_local! {
    /// An interpreter's per-thread cache of handles.
    static CACHE: RefCell<Vec<Gc<Cached>>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn handles_in_a_thread_local_touched_before_fing_are_dropped_at_thread_exit() {
    let mut c = HeapConfig::default();
    c.gogc = None;
    let h = Heap::new(c);
    let dropped = Arc::new(AtomicUsize::new(0));
    let n = 1000;
    for _ in 0..4 {
        let (h, d) = (h.clone(), dropped.clone());
        thread::spawn(move || {
            // First touched before any fing call: its destructor runs after fing's.
            CACHE.with(|c| c.borrow_mut().reserve(n));
            for id in 0..n as u64 {
                let g = h.alloc(Cached {
                    id,
                    count: Count(d.clone()),
                });
                CACHE.with(|c| c.borrow_mut().push(g));
            }
        })
        .join()
        .expect("the thread exits cleanly");
    }
    h.collect();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        4 * n,
        "every cached object freed"
    );
    assert_eq!(h.stats().heap_objects, 0);
}

/// A list whose nodes have destructors, held by a thread-local touched before fing's and
/// so dropped after fing's thread state is gone: its chain of destructors runs in
/// constant stack, as any other drop's does.
#[derive(Trace)]
struct Named {
    name: String,
    next: Option<Gc<Named>>,
}

thread_local! {
    static LIST: RefCell<Option<Gc<Named>>> = const { RefCell::new(None) };
}

#[test]
fn a_long_list_in_a_thread_local_is_freed_at_exit_in_constant_stack() {
    let mut c = HeapConfig::default();
    c.gogc = None;
    let h = Heap::new(c);
    let h2 = h.clone();
    thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            LIST.with(|l| l.borrow_mut().take());
            let mut head = None;
            for i in 0..100_000 {
                head = Some(h2.alloc(Named {
                    name: format!("node {i}"),
                    next: head,
                }));
            }
            LIST.with(|l| *l.borrow_mut() = head);
        })
        .unwrap()
        .join()
        .expect("the thread exits cleanly");
    h.collect();
    assert_eq!(h.stats().heap_objects, 0, "every node freed");
}
