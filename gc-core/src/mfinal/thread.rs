//! The finalizer thread (Go's runfinq goroutine): one per process, started once on the
//! first `set_finalizer` that adds a record, named `fing-finalizer` (it shows in a
//! debugger). It takes the whole queue, runs each finalizer in turn, and parks ("finalizer
//! wait") when the queue is empty; a collection that queues work wakes it.
//!
//! A finalizer that panics is caught, counted, and reported on stderr with its object's
//! type; the thread goes on with the next. `wait_finalizers()` returns once the queue is
//! empty and no finalizer is running.

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::queue::{FinQueue, Finalizer};
use super::reflectcall;

struct State {
    queue: FinQueue,
    /// Finalizers taken from the queue and not finished yet (the batch being run).
    in_flight: usize,
}

/// The type of the object whose finalizer is running (null: none), for the timeout's
/// report; written by the thread without the lock.
static RUNNING: core::sync::atomic::AtomicPtr<gc_types::Type> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

impl State {
    fn busy(&self) -> bool {
        self.queue.len > 0 || self.in_flight > 0
    }
}

struct Fing {
    state: Mutex<State>,
    /// Signalled when work is queued.
    work: Condvar,
    /// Signalled when the queue empties and the thread goes idle.
    idle: Condvar,
}

static FING: Fing = Fing {
    state: Mutex::new(State {
        queue: FinQueue {
            head: None,
            free: None,
            all_blocks: 0,
            len: 0,
        },
        in_flight: 0,
    }),
    work: Condvar::new(),
    idle: Condvar::new(),
};

/// Finalizers queued, run, and panicked, ever (all heaps).
pub(crate) static QUEUED: AtomicU64 = AtomicU64::new(0);
pub(crate) static RUN: AtomicU64 = AtomicU64::new(0);
pub(crate) static PANICKED: AtomicU64 = AtomicU64::new(0);

fn state() -> MutexGuard<'static, State> {
    // The state's updates are completed before unlocking; a finalizer's panic is caught
    // outside the lock, so poisoning carries no meaning here.
    FING.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the thread, once.
pub(crate) fn start() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("fing-finalizer".into())
            .spawn(run)
            .expect("fing::set_finalizer: cannot start the finalizer thread");
    });
}

/// Queues finalizers (the collector, world stopped; the thread wakes when the world
/// resumes and it gets the lock).
pub(crate) fn enqueue(batch: Vec<Finalizer>) {
    if batch.is_empty() {
        return;
    }
    QUEUED.fetch_add(batch.len() as u64, Ordering::Relaxed);
    let mut s = state();
    for f in batch {
        s.queue.push(f);
    }
    drop(s);
    FING.work.notify_one();
}

std::thread_local! {
    /// Set on the finalizer thread: `wait_finalizers` there would wait for itself.
    static ON_FINALIZER_THREAD: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

fn run() {
    ON_FINALIZER_THREAD.with(|f| f.set(true));
    let mut inv = reflectcall::Invoker::default();
    loop {
        let batch = {
            let mut s = state();
            while s.queue.len == 0 {
                FING.idle.notify_all();
                s = FING.work.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            let batch = s.queue.take_all();
            s.in_flight = batch.len();
            batch
        };
        for f in batch {
            let ty = f.obj_ty;
            RUNNING.store((ty as *const gc_types::Type).cast_mut(), Ordering::Relaxed);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                reflectcall::call(&mut inv, f)
            }));
            RUN.fetch_add(1, Ordering::Relaxed);
            if r.is_err() {
                PANICKED.fetch_add(1, Ordering::Relaxed);
                eprintln!("fing: a finalizer of a {ty} panicked; the finalizer thread goes on");
            }
        }
        RUNNING.store(core::ptr::null_mut(), Ordering::Relaxed);
        state().in_flight = 0;
    }
}

/// Blocks until every queued finalizer has run and the finalizer thread is idle. Call it
/// after `collect()` to see the finalizers of what that collection found (a finalizer
/// that never returns makes this wait forever; see `wait_finalizers_timeout`).
///
/// # Panics
/// If called from a finalizer (it would wait for itself).
pub fn wait_finalizers() {
    assert_not_in_finalizer("fing::wait_finalizers");
    let mut s = state();
    while s.busy() {
        s = FING.idle.wait(s).unwrap_or_else(|e| e.into_inner());
    }
}

fn assert_not_in_finalizer(api: &str) {
    assert!(
        !ON_FINALIZER_THREAD.with(|f| f.get()),
        "{api}: called from a finalizer, which runs on the finalizer thread: it would wait for itself"
    );
}

/// A finalizer that did not finish in time: the type of the object it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalizerStuck {
    /// The object's type (`Gc<demo::File>`), or `None` if the thread was between
    /// finalizers with some still queued.
    pub running: Option<String>,
    /// Finalizers still queued.
    pub queued: usize,
}

impl core::fmt::Display for FinalizerStuck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.running {
            Some(t) => write!(
                f,
                "fing::wait_finalizers: a finalizer of a {t} is still running; {} queued",
                self.queued
            ),
            None => write!(
                f,
                "fing::wait_finalizers: {} finalizers still queued",
                self.queued
            ),
        }
    }
}

impl std::error::Error for FinalizerStuck {}

/// `wait_finalizers` with a limit: says which finalizer is still running when time is up.
///
/// # Panics
/// If called from a finalizer (it would wait for itself).
pub fn wait_finalizers_timeout(limit: Duration) -> Result<(), FinalizerStuck> {
    assert_not_in_finalizer("fing::wait_finalizers_timeout");
    let deadline = Instant::now() + limit;
    let mut s = state();
    while s.busy() {
        let now = Instant::now();
        if now >= deadline {
            // SAFETY: RUNNING is null or a `&'static Type`.
            let running = unsafe { RUNNING.load(Ordering::Relaxed).as_ref() };
            return Err(FinalizerStuck {
                running: running.map(|t| t.to_string()),
                queued: s.queue.len,
            });
        }
        s = FING
            .idle
            .wait_timeout(s, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    Ok(())
}
