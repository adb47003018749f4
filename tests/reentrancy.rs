//! Re-entrancy is an error, never a deadlock: a fing call that would stop the world, wait
//! for a collection or allocate, made from a context that cannot (a `Trace` impl, which
//! runs with the world stopped), panics with a message that names the call and why. (A
//! thread holding a `GcCell` write guard calling `collect()` is `tests/world.rs`'s.)

#![allow(missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fing::{Gc, Heap, HeapConfig, Kind, Trace, Tracer, Type, Typed};

/// What `Rude::trace` does on purpose.
static MISCHIEF: AtomicU8 = AtomicU8::new(0);

struct Rude {
    next: Option<Gc<Rude>>,
}

// SAFETY: describes `Rude` itself, from the compiler.
unsafe impl Typed for Rude {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<Rude>(Kind::Struct) }.named("reentrancy::Rude");
}

// SAFETY: reports the one handle `Rude` owns; what else it does is the test.
unsafe impl Trace for Rude {
    const NO_SCAN: bool = false;
    fn trace(&self, t: &mut Tracer) {
        match MISCHIEF.load(Ordering::SeqCst) {
            1 => fing::collect(),
            2 => drop(Gc::new(5u64)),
            3 => fing::wait_finalizers(),
            _ => {}
        }
        self.next.trace(t);
    }
}

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
fn fing_calls_from_a_trace_impl_panic_with_a_message() {
    let messages = within(60, "fing calls inside a collection", || {
        let mut c = HeapConfig::default();
        c.gogc = None;
        let h = Heap::new(c);
        let keep = h.alloc(Rude { next: None });
        let mut out = Vec::new();
        for mischief in 1..=3 {
            MISCHIEF.store(mischief, Ordering::SeqCst);
            let p = catch_unwind(AssertUnwindSafe(|| h.collect())).unwrap_err();
            MISCHIEF.store(0, Ordering::SeqCst);
            out.push(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            );
        }
        // The heap is whole after the abandoned collections.
        h.collect();
        assert!(keep.next.is_none());
        out
    });
    assert!(
        messages[0].starts_with("fing::collect: called from inside a collection"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].starts_with("fing::Heap::alloc: called from inside a collection"),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].starts_with("fing::wait_finalizers: called from inside a collection"),
        "{}",
        messages[2]
    );
}

/// A cell a writer takes in a loop while `Reader::trace` reads it during collections.
static CELL: GcCellStatic = GcCellStatic(std::sync::OnceLock::new());

struct GcCellStatic(std::sync::OnceLock<Gc<fing::GcCell<u64>>>);

struct Reader;

// SAFETY: describes `Reader` itself, from the compiler.
unsafe impl Typed for Reader {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<Reader>(Kind::Struct) }.named("reentrancy::Reader");
}

// SAFETY: holds no handle; what `trace` does is the test.
unsafe impl Trace for Reader {
    const NO_SCAN: bool = false;
    fn trace(&self, _: &mut Tracer) {
        if let Some(c) = CELL.0.get() {
            drop(c.borrow());
        }
    }
}

/// A `Trace` impl reading a cell whose writer took its lock and waits for the world (this
/// collection's) would wait forever: it panics instead, and the collection is abandoned.
#[test]
fn a_trace_impl_reading_a_cell_a_writer_holds_panics_instead_of_deadlocking() {
    let outcome = within(120, "a cell read inside a collection", || {
        let mut c = HeapConfig::default();
        c.gogc = None;
        let h = Heap::new(c);
        let cell = CELL
            .0
            .get_or_init(|| h.alloc(fing::GcCell::new(0u64)))
            .clone();
        let _reader = h.alloc(Reader);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    *cell.borrow_mut() += 1;
                }
            })
        };
        let mut panicked = 0;
        for _ in 0..2_000 {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| h.collect())) {
                let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
                assert!(
                    msg.starts_with("fing::GcCell::borrow: called from inside a collection"),
                    "{msg}"
                );
                panicked += 1;
            }
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        panicked
    });
    // How often the writer was caught waiting depends on the machine; never a hang.
    let _ = outcome;
}
