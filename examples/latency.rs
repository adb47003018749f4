//! The latency benchmark: how long fing stops the world, and how the mutator feels it.
//!
//! It builds a live heap of interpreter-like records (a `GcCell` link to the next record
//! of a ring of 64, a `GcCell` cross link to anything, a tiny leaf, one record in 64 with
//! a finalizer) of the given size, then runs a steady workload for the given time on one
//! or more threads: each step makes a ring of four records and links it into the cross
//! link of one of the first 4096 live records through `GcCell` (the ring it replaces
//! becomes cyclic garbage, so the live heap stays at its size), relinks a random live
//! record's cross link to another random record (a cross-ring relink), and every 16th
//! step also drops a record with a finalizer. It records every
//! stop-the-world pause (`MemStats::recent_pauses`, polled) and, from the mutator's side,
//! the longest gap between two steps of its loop.
//!
//! `cargo run --release --example latency -- [live_mb (256)] [secs (10)] [threads (1)]
//! [weak (0)]`
//!
//! With `weak` 1, the program also keeps weak handles, as an interpreter's weak tables
//! and intern tables do: one to every live record, and one to the first record of each
//! ring the workload makes, in a table of 65 536 per thread whose old entries are
//! dropped as new ones come (their cells are reaped, and the rings' are cleared, by the
//! cycles). No Go twin: it measures the collector's walks over weak cells.
//!
//! Its Go twin is `benches/go/latency` (`cd benches/go/latency && go run . 256 10 1`).
//! The last line, for scripts:
//! `max_pause_ms=… p99_pause_ms=… mmu_10ms=… heap_mb=… alloc_mb_s=… cycles=…`, after a
//! line with the mutator's view: `steps=… max_stall_ms=…`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};

/// A record of an interpreter's heap: a slot value, a link, a cross link and a leaf.
#[derive(Trace)]
struct Rec {
    id: u64,
    val: u64,
    next: GcCell<Option<Gc<Rec>>>,
    other: GcCell<Option<Gc<Rec>>>,
    leaf: Option<Gc<u32>>,
}

fn rec(h: &Heap, id: u64) -> Gc<Rec> {
    h.alloc(Rec {
        id,
        val: id.wrapping_mul(0x9E37_79B9),
        next: GcCell::new(None),
        other: GcCell::new(None),
        leaf: id.is_multiple_of(4).then(|| h.alloc(id as u32)),
    })
}

/// A ring of `n` records; returns its first.
fn ring(h: &Heap, id: u64, n: u64) -> Gc<Rec> {
    let first = rec(h, id);
    let mut last = first.clone();
    for i in 1..n {
        let r = rec(h, id + i);
        last.next.set(Some(r.clone()));
        last = r;
    }
    last.next.set(Some(first.clone()));
    first
}

/// The live records whose cross links hold the workload's rings of four.
const SLOTS: u64 = 4096;

/// The weak handles each thread keeps to rings it made (with `weak` 1).
const WEAKS: u64 = 1 << 16;

/// A small xorshift generator (no dependency, the same sequence as the Go twin's).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The minimum mutator utilisation over windows of `w`: the smallest share of any window
/// of the run `[0, end]` not spent in pauses (`(end, length)` on the same clock).
fn mmu(pauses: &[(Duration, Duration)], end: Duration, w: Duration) -> f64 {
    let spans: Vec<(f64, f64)> = pauses
        .iter()
        .map(|&(e, l)| ((e.saturating_sub(l)).as_secs_f64(), e.as_secs_f64()))
        .collect();
    let w = w.as_secs_f64();
    let end = end.as_secs_f64();
    // The worst window starts where a pause starts or ends where one ends.
    let starts = spans
        .iter()
        .flat_map(|&(s, e)| [s, e - w])
        .map(|s| s.clamp(0.0, (end - w).max(0.0)));
    let mut worst: f64 = 1.0;
    for s in starts {
        let paused: f64 = spans
            .iter()
            .map(|&(a, b)| (b.min(s + w) - a.max(s)).max(0.0))
            .sum();
        worst = worst.min(1.0 - paused / w);
    }
    worst.max(0.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let live_mb: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let threads: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let weak = args.next().is_some_and(|a| a == "1");

    let heap = Heap::new(HeapConfig::default());
    // Build the live heap: rings of 64 records, cross-linked.
    let t = Instant::now();
    let mut live: Vec<Gc<Rec>> = Vec::new();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut id = 0u64;
    while (heap.stats().heap_alloc as u64) < live_mb << 20 {
        let first = ring(&heap, id, 64);
        id += 64;
        let mut r = first.clone();
        for _ in 0..64 {
            if rng.next().is_multiple_of(64) {
                r.set_finalizer(|_: Gc<Rec>| ()).expect("a finalizer");
            }
            live.push(r.clone());
            let n = r.next.borrow().clone().expect("a ring");
            r = n;
        }
    }
    for i in 0..live.len() {
        let j = (rng.next() % live.len() as u64) as usize;
        live[i].other.set(Some(live[j].clone()));
    }
    let built = heap.stats();
    eprintln!(
        "latency: built {} MB live in {:.1} s ({} records), {} collections so far",
        built.heap_alloc >> 20,
        t.elapsed().as_secs_f64(),
        live.len(),
        built.num_gc
    );

    let live_weak: Vec<fing::Weak<Rec>> = if weak {
        live.iter().map(Gc::downgrade).collect()
    } else {
        Vec::new()
    };
    let live = Arc::new(live);
    let before = heap.stats();
    let seen_gc = before.num_gc;
    // One ring entry per stop of the world (a cycle run in slices stops it many times).
    let seen_pauses = before.num_pauses;
    let stop = Arc::new(AtomicBool::new(false));
    let steps = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (heap, live, stop, steps) =
                (heap.clone(), live.clone(), stop.clone(), steps.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let mut id = 1 << 40 | t << 36;
                let mut last = Instant::now();
                let mut max_stall = Duration::ZERO;
                let mut n = 0u64;
                let mut weaks: Vec<fing::Weak<Rec>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = ring(&heap, id, 4);
                    id += 4;
                    if weak {
                        let w = r.downgrade();
                        match weaks.get_mut((n % WEAKS) as usize) {
                            Some(old) => *old = w,
                            None => weaks.push(w),
                        }
                    }
                    let slot = &live[(rng.next() % SLOTS.min(live.len() as u64)) as usize];
                    slot.other.set(Some(r));
                    let a = (rng.next() % live.len() as u64) as usize;
                    let b = (rng.next() % live.len() as u64) as usize;
                    if a >= SLOTS as usize {
                        live[a].other.set(Some(live[b].clone()));
                    }
                    if n.is_multiple_of(16) {
                        rec(&heap, id)
                            .set_finalizer(|_: Gc<Rec>| ())
                            .expect("a finalizer");
                        id += 1;
                    }
                    n += 1;
                    let now = Instant::now();
                    max_stall = max_stall.max(now - last);
                    last = now;
                }
                steps.fetch_add(n, Ordering::Relaxed);
                max_stall
            })
        })
        .collect();
    // Poll the pauses (the ring keeps 256) until the time is up.
    let mut pauses: Vec<(Duration, Duration)> = Vec::new();
    let poll = |pauses: &mut Vec<(Duration, Duration)>| {
        let s = heap.stats();
        let fresh = (s.num_pauses - seen_pauses - pauses.len() as u64) as usize;
        let ring = &s.recent_pauses;
        pauses.extend_from_slice(&ring[ring.len().saturating_sub(fresh)..]);
    };
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(20));
        poll(&mut pauses);
    }
    stop.store(true, Ordering::Relaxed);
    let max_stall = workers
        .into_iter()
        .map(|w| w.join().expect("a mutator panicked"))
        .max()
        .unwrap_or_default();
    let elapsed = start.elapsed();
    poll(&mut pauses);
    let after = heap.stats();

    // Pauses on the run's clock (the heap's clock read `before.uptime` at its start).
    let on_run: Vec<(Duration, Duration)> = pauses
        .iter()
        .map(|&(e, l)| (e.saturating_sub(before.uptime), l))
        .collect();
    let mut lens: Vec<Duration> = pauses.iter().map(|p| p.1).collect();
    lens.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let max = lens.last().copied().unwrap_or_default();
    let p99 = lens
        .get((lens.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    let mmu10 = mmu(&on_run, elapsed, Duration::from_millis(10));
    let alloc = after.total_alloc - before.total_alloc;
    println!(
        "steps={} max_stall_ms={:.3} threads={threads} secs={:.1} paused_ms={:.1}",
        steps.load(Ordering::Relaxed),
        ms(max_stall),
        elapsed.as_secs_f64(),
        ms(lens.iter().sum())
    );
    println!(
        "max_pause_ms={:.3} p99_pause_ms={:.3} mmu_10ms={:.3} heap_mb={} alloc_mb_s={:.1} cycles={}",
        ms(max),
        ms(p99),
        mmu10,
        after.heap_alloc >> 20,
        alloc as f64 / (1 << 20) as f64 / elapsed.as_secs_f64(),
        after.num_gc - seen_gc
    );
    // The live records' weak handles still upgrade (and were kept to the end).
    assert!(live_weak.iter().take(64).all(|w| w.upgrade().is_some()));
    drop(live);
}
