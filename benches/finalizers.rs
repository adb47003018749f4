//! Finalizer costs: one `set_finalizer` call, and the whole cycle for 1 000 000 small
//! objects with a finalizer each (allocate and set, drop, collect, wait until all have
//! run), for fing and for the peers that can express it: `gc`'s `Finalize`, `rust-cc`'s
//! `Finalize`, `dumpster` (a `Drop` impl) and `boa_gc`'s `Finalize`.
//!
//! Go's figures come from its twin, `benches/go/fin_cycle.go` (`cd benches/go && go run .`), run
//! beside `cargo run --release --example fin_cycle 1000000 5 linked`: Go 1.19 took about
//! 0.4 s for the whole 1 000 000 cycle on this kind of machine.
//!
//! `cargo bench --bench finalizers`

#![allow(missing_docs, non_local_definitions)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fing::{Gc, Heap, HeapConfig, Trace};

const N: usize = 1_000_000;

#[derive(Trace)]
struct Small {
    id: u64,
    next: Option<Gc<Small>>,
}

fn quiet_heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

fn set_finalizer(c: &mut Criterion) {
    let h = quiet_heap();
    c.bench_function("set_finalizer/one call", |b| {
        b.iter_custom(|iters| {
            let objs: Vec<Gc<Small>> = (0..iters)
                .map(|i| h.alloc(Small { id: i, next: None }))
                .collect();
            let t = Instant::now();
            for o in &objs {
                black_box(o.set_finalizer(|o| drop(black_box(o)))).unwrap();
            }
            let took = t.elapsed();
            // Newest first: each record is then its span's last (no shifting).
            for o in objs.iter().rev() {
                o.clear_finalizer().unwrap();
            }
            drop(objs);
            h.collect();
            took
        })
    });
}

static RAN: AtomicUsize = AtomicUsize::new(0);

/// An 8-byte object, as the peers': a tiny noscan object in fing (packed two to a block).
#[derive(Trace)]
struct Leaf {
    id: u64,
}

/// fing's 1M cycle for objects made by `new`: allocate and `arm` each (a finalizer or a
/// cleanup that counts in `RAN`, as the peers' finalizers do), drop, collect, wait until
/// all have run.
///
/// One heap serves every iteration, as each peer's one heap (thread-local or global) does:
/// a fresh heap per iteration would time the kernel's first touch of its pages as well.
fn fing_cycle<T: Trace + Send + Sync + 'static>(new: fn(u64) -> T, arm: fn(&Gc<T>)) -> Duration {
    static HEAP: std::sync::OnceLock<Heap> = std::sync::OnceLock::new();
    let h = HEAP.get_or_init(quiet_heap);
    RAN.store(0, Ordering::Relaxed);
    let t = Instant::now();
    {
        let objs: Vec<Gc<T>> = (0..N as u64).map(|i| h.alloc(new(i))).collect();
        objs.iter().for_each(arm);
    }
    h.collect();
    fing::wait_finalizers();
    let took = t.elapsed();
    assert_eq!(RAN.load(Ordering::Relaxed), N);
    // Free the resurrected objects (not timed: Go frees them a cycle later too; a cleanup's
    // object is already freed).
    h.collect();
    took
}

fn count() {
    RAN.fetch_add(1, Ordering::Relaxed);
}

fn finalizer<T: Trace + Send + Sync + 'static>(o: &Gc<T>) {
    o.set_finalizer(|_| count()).unwrap();
}

/// The same cycle with a cleanup per object (`Gc::add_cleanup`) instead of a finalizer:
/// no resurrection, so the objects are freed by the timed collection itself.
fn fing_cleanup_cycle() -> Duration {
    fing_cycle(
        |id| Small { id, next: None },
        |o| {
            o.add_cleanup((), |()| count()).unwrap();
        },
    )
}

fn fing_leaf() -> Duration {
    fing_cycle(|id| Leaf { id }, finalizer)
}

fn fing_linked() -> Duration {
    fing_cycle(|id| Small { id, next: None }, finalizer)
}

/// One peer's 1M cycle: allocate `N` objects whose finalizer (or `Drop`) counts in `RAN`,
/// drop them, collect, check every one ran.
macro_rules! peer_cycle {
    ($name:ident, $new:expr, $collect:expr) => {
        pub(crate) fn $name() -> Duration {
            RAN.store(0, Ordering::Relaxed);
            let t = Instant::now();
            {
                let objs: Vec<_> = (0..N as u64).map($new).collect();
                black_box(&objs);
            }
            $collect;
            let took = t.elapsed();
            assert_eq!(RAN.load(Ordering::Relaxed), N);
            took
        }
    };
}

#[allow(dead_code)] // the ids only give the objects a size
mod peers {
    use super::*;

    pub(super) mod rustgc {
        use super::*;
        use gc::{Finalize, Trace};
        #[derive(Trace)]
        pub(crate) struct Small(u64);
        impl Finalize for Small {
            fn finalize(&self) {
                RAN.fetch_add(1, Ordering::Relaxed);
            }
        }
        peer_cycle!(cycle, |id| gc::Gc::new(Small(id)), gc::force_collect());
    }

    pub(super) mod cc {
        use super::*;
        use rust_cc::{Finalize, Trace};
        #[derive(Trace)]
        pub(crate) struct Small(u64);
        impl Finalize for Small {
            fn finalize(&self) {
                RAN.fetch_add(1, Ordering::Relaxed);
            }
        }
        peer_cycle!(
            cycle,
            |id| rust_cc::Cc::new(Small(id)),
            rust_cc::collect_cycles()
        );
    }

    pub(super) mod dump {
        use super::*;
        #[derive(dumpster::Trace)]
        pub(crate) struct Small(u64);
        impl Drop for Small {
            fn drop(&mut self) {
                RAN.fetch_add(1, Ordering::Relaxed);
            }
        }
        peer_cycle!(
            cycle,
            |id| dumpster::unsync::Gc::new(Small(id)),
            dumpster::unsync::collect()
        );
    }

    pub(super) mod boa {
        use super::*;
        use boa_gc::{Finalize, Trace};
        #[derive(Trace)]
        pub(crate) struct Small(#[unsafe_ignore_trace] u64);
        impl Finalize for Small {
            fn finalize(&self) {
                RAN.fetch_add(1, Ordering::Relaxed);
            }
        }
        peer_cycle!(
            cycle,
            |id| boa_gc::Gc::new(Small(id)),
            boa_gc::force_collect()
        );
    }
}

fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("finalize_1m_objects");
    g.sample_size(10);
    let per_iter = |f: fn() -> Duration| {
        move |b: &mut criterion::Bencher<'_>| b.iter_custom(|iters| (0..iters).map(|_| f()).sum())
    };
    g.bench_function("fing (8-byte object, as the peers')", per_iter(fing_leaf));
    g.bench_function("fing (16-byte object with a link)", per_iter(fing_linked));
    g.bench_function(
        "fing cleanups (16-byte object with a link)",
        per_iter(fing_cleanup_cycle),
    );
    g.bench_function("gc 0.5 (Finalize)", per_iter(peers::rustgc::cycle));
    g.bench_function("rust-cc 0.6 (Finalize)", per_iter(peers::cc::cycle));
    g.bench_function("dumpster 2.1 (Drop)", per_iter(peers::dump::cycle));
    g.bench_function("boa_gc 0.22 (Finalize)", per_iter(peers::boa::cycle));
    g.finish();
}

criterion_group!(benches, set_finalizer, cycle);
criterion_main!(benches);
