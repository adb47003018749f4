//! Profiling aid: the 1 000 000-object finalizer cycle of `benches/finalizers.rs` with the
//! time of each phase, several rounds on one heap; `cleanup` times the same cycle with a
//! cleanup per object (`Gc::add_cleanup`) instead of a finalizer. Its Go twin is
//! `benches/go/fin_cycle.go`.
//!
//! `cargo run --release --example fin_cycle [n] [rounds] [leaf|linked] [finalizer|cleanup]`
#![allow(missing_docs)]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use fing::{Gc, Heap, HeapConfig, Trace};

static RAN: AtomicUsize = AtomicUsize::new(0);

/// An 8-byte object (tiny, noscan), as the benchmark's peers allocate.
#[derive(Trace)]
struct Leaf {
    id: u64,
}

/// A traced object with a link.
#[derive(Trace)]
struct Linked {
    id: u64,
    next: Option<Gc<Linked>>,
}

/// One round; returns its total (allocate to the last finalizer run), the figure the Go
/// twin's median is taken over.
fn round<T: Trace + Send + Sync + 'static>(
    h: &Heap,
    n: u64,
    new: fn(u64) -> T,
    cleanup: bool,
) -> f64 {
    RAN.store(0, Ordering::Relaxed);
    let t0 = Instant::now();
    let objs: Vec<Gc<T>> = (0..n).map(|i| h.alloc(new(i))).collect();
    let t1 = Instant::now();
    for o in &objs {
        if cleanup {
            o.add_cleanup((), |()| {
                RAN.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        } else {
            o.set_finalizer(|_| {
                RAN.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        }
    }
    let t2 = Instant::now();
    drop(objs);
    let t3 = Instant::now();
    let ran0 = h.stats().finalizers_run + h.stats().cleanups_run;
    h.collect();
    let t4 = Instant::now();
    let during = h.stats().finalizers_run + h.stats().cleanups_run - ran0;
    fing::wait_finalizers();
    let t5 = Instant::now();
    assert_eq!(RAN.load(Ordering::Relaxed), n as usize);
    h.collect();
    let t6 = Instant::now();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    println!(
        "alloc {:6.1}  set {:6.1}  drop {:6.1}  collect {:6.1}  run {:6.1}  | total {:6.1} ms  (then free {:5.1}; {during} ran during the collection)",
        ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4), ms(t4, t5), ms(t0, t5), ms(t5, t6)
    );
    ms(t0, t5)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let linked = args.next().as_deref() == Some("linked");
    let cleanup = args.next().as_deref() == Some("cleanup");
    let mut c = HeapConfig::default();
    c.gogc = None;
    let h = Heap::new(c);
    let mut totals: Vec<f64> = (0..rounds)
        .map(|_| {
            if linked {
                round(&h, n, |id| Linked { id, next: None }, cleanup)
            } else {
                round(&h, n, |id| Leaf { id }, cleanup)
            }
        })
        .collect();
    totals.sort_by(f64::total_cmp);
    if let Some(median) = totals.get(totals.len() / 2) {
        let what = if cleanup { "cleanup" } else { "finalizer" };
        println!("fing {what}: median {median:.1} ms over {rounds} rounds");
    }
}
