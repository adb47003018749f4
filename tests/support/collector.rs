//! A thread that collects a heap in a loop, for the tests that race mutators against
//! collections (`tests/weak.rs`, `tests/cleanups.rs`, `tests/ephemerons.rs`).

#![allow(unreachable_pub, dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use fing::Heap;

/// Collects its heap over and over on a thread of its own until `stop`.
pub struct Collector {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Collector {
    /// Starts collecting `h`.
    pub fn start(h: &Heap) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let (h, flag) = (h.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                h.collect();
                std::thread::yield_now();
            }
        });
        Collector { stop, thread }
    }

    /// Stops collecting, once the collection under way is done.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the collector thread panicked");
    }
}
