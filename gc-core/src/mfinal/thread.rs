//! The finalizer thread (Go's runfinq goroutine): one per process, started once on the
//! first `set_finalizer` that passes rows 1–9 of its check table, named `fing-finalizer` (it shows in a
//! debugger). It takes the whole queue, runs each finalizer in turn, and parks ("finalizer
//! wait") when the queue is empty; a collection that queues work wakes it.
//!
//! A finalizer that panics is caught, counted, and reported on stderr with its object's
//! type; the thread goes on with the next. `wait_finalizers()` returns once the queue is
//! empty and no finalizer is running.

use crate::world::Role;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gc_types::Value;

use super::queue::{Blocks, FinQueue};
use super::reflectcall;
use crate::handle::Gc;
use crate::handoff::{Handoff, Queue};

/// The type of the object whose finalizer is running (null: none), for the timeout's
/// report; written by the thread without the lock.
static RUNNING: core::sync::atomic::AtomicPtr<gc_types::Type> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

impl Queue for FinQueue {
    type Batch = Blocks;
    fn len(&self) -> usize {
        self.len
    }
    fn take_all(&mut self) -> Blocks {
        FinQueue::take_all(self)
    }
}

#[cfg(not(loom))]
static FING: Handoff<FinQueue> = Handoff::new(FinQueue::new());

// Under loom, primitives are made inside a model only; the models build their own.
#[cfg(loom)]
static FING: std::sync::LazyLock<Handoff<FinQueue>> =
    std::sync::LazyLock::new(|| Handoff::new(FinQueue::new()));

/// Finalizers queued, run, and panicked, ever (all heaps).
pub(crate) static QUEUED: AtomicU64 = AtomicU64::new(0);
pub(crate) static RUN: AtomicU64 = AtomicU64::new(0);
pub(crate) static PANICKED: AtomicU64 = AtomicU64::new(0);

/// Starts the thread, once.
#[inline]
pub(crate) fn start() {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.get().is_none() {
        start_once(&STARTED);
    }
}

#[cold]
#[inline(never)]
fn start_once(started: &OnceLock<()>) {
    started.get_or_init(|| {
        std::thread::Builder::new()
            .name("fing-finalizer".into())
            .spawn(run)
            .expect("fing::set_finalizer: cannot start the finalizer thread");
    });
}

/// A queue for a collection to fill, with the spare blocks of the global one.
pub(crate) fn batch() -> FinQueue {
    FING.with(FinQueue::split_spare)
}

/// Queues finalizers the collector found. The collector calls it with the world
/// stopped, in parts while it resurrects (between the slices of a cycle run in slices,
/// the finalizers handed over so far run) and once after the sweep. In a slice's stop it
/// wakes the thread once the world has resumed ([`wake`]): woken inside the stop, the
/// thread took a core from the collector on a two-core machine, and the short stop lasted
/// that much longer. In a whole collection's stop the thread starts at once, on the core
/// the stopped mutators leave free.
///
/// The thread may be running finalizers when a stop begins,
/// like any mutator running outside a section during a collection: their objects were
/// resurrected (marked), so this cycle frees neither them nor what they point to, and
/// whatever a finalizer does in a section (allocate, write a `GcCell`) waits until the
/// world resumes. Its handle drops do not wait: the thread spills them to its world slot
/// (`world::spill_drops`), for the next collection to apply with the world stopped, as it
/// applies every thread's ring. Between two finalizers it waits for a stop to end
/// (`world::yield_to_collector`).
pub(crate) fn enqueue(batch: FinQueue) {
    QUEUED.fetch_add(batch.len as u64, Ordering::Relaxed);
    if batch.len == 0 {
        FING.with(|q| q.append(batch));
    } else if crate::world::in_short_stop() {
        FING.push_quiet(|q| q.append(batch));
    } else {
        FING.push(|q| q.append(batch));
    }
}

/// Wakes the finalizer thread for what `enqueue` queued while the world was stopped. Called
/// by whoever stopped it, once it has resumed.
pub(crate) fn wake() {
    FING.wake_owed();
}

/// Counts `n` entries queued for a safe-point heap (`mfinal::enqueue`), which the
/// finalizer thread does not see.
pub(crate) fn count_queued(n: usize) {
    QUEUED.fetch_add(n as u64, Ordering::Relaxed);
}

/// Hands entries counted already (a retired safe-point heap's pending ones) to the
/// finalizer thread.
pub(crate) fn requeue(batch: FinQueue) {
    start();
    FING.push(|q| q.append(batch));
}

fn run() {
    crate::world::set_role(Role::Finalizer);
    // Batches come while their collection is still running: drops must not wait for it.
    crate::release::spill_drops();
    let mut inv = reflectcall::Invoker::default();
    while let Some(batch) = FING.take() {
        let empty = run_batch(&mut inv, batch, true);
        crate::release::flush_held();
        FING.finished(|q| q.recycle(empty));
    }
}

/// Runs every entry of `batch` in Go's order on this thread (the finalizer thread, or a
/// program's thread at a safe point: `run_pending`), each in `catch_unwind`: a panic is
/// counted, reported (`panic_hook`), and the next entry runs. Returns the emptied blocks.
/// `on_thread`: this is the finalizer thread, which keeps `RUNNING` for the timeout's
/// report.
fn run_batch(inv: &mut reflectcall::Invoker, batch: Blocks, on_thread: bool) -> Blocks {
    // `RUN` is published every 256 finalizers and at the end of the batch (before the
    // thread can count as idle), not with an atomic add per finalizer.
    let mut ran = 0;
    inv.begin_batch();
    let run_one = |f: *mut super::queue::Finalizer| {
        // SAFETY: `run_each` hands out initialised entries.
        let ty = unsafe { (*f).obj_ty };
        let is_cleanup = core::ptr::eq(ty, &super::cleanup::CLEANUP);
        if on_thread {
            crate::world::yield_to_collector();
            RUNNING.store((ty as *const gc_types::Type).cast_mut(), Ordering::Relaxed);
        }
        // With a hook installed, the object is kept for its report: one more count,
        // dropped after the call (a finalizer's entry holds one on its object, which the
        // call moves into the argument). Read before the call takes the entry over.
        let kept = if !is_cleanup && super::panic_hook::installed() {
            // SAFETY: an initialised entry (`run_each`), not yet taken over; its object
            // is allocated and the entry's count keeps it so.
            Some(unsafe { reflectcall::keep_object(inv, f) })
        } else {
            None
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if is_cleanup {
                // SAFETY: `run_each` hands out initialised entries, read in place.
                let func = unsafe { &mut (*f).func };
                // SAFETY: the entry is `run_each`'s to hand over; a cleanup's holds
                // only its function (no object, no count), which `run` takes over.
                unsafe { super::cleanup::run(func) }
            } else {
                // SAFETY: the entry is `run_each`'s to hand over, and `call` takes it
                // over.
                unsafe { reflectcall::call(inv, f) }
            }
        }));
        ran += 1;
        if ran == 256 {
            RUN.fetch_add(core::mem::take(&mut ran), Ordering::Relaxed);
        }
        match r {
            Ok(()) => drop(kept),
            Err(payload) => {
                PANICKED.fetch_add(1, Ordering::Relaxed);
                let object = kept.map(|(h, obj_ty)| {
                    let h = core::mem::ManuallyDrop::new(h);
                    // SAFETY: `obj_ty` is the object's pointer type, whose representation
                    // is a handle's; the value takes over the kept handle's count.
                    unsafe { Value::from_raw(obj_ty, (&*h as *const Gc<u8>).cast()) }
                });
                let ty = (!is_cleanup).then_some(ty);
                super::panic_hook::report(&*payload, ty, object);
                // A payload whose own drop panics must not end the thread.
                crate::mdrop::drop_payload(payload);
            }
        }
    };
    // SAFETY: `run_one` takes each entry over through `call`, which reads it once
    // (a panic there leaves the rest of it unread: leaked, never read twice).
    let empty = unsafe { batch.run_each(run_one) };
    RUN.fetch_add(ran, Ordering::Relaxed);
    if on_thread {
        RUNNING.store(core::ptr::null_mut(), Ordering::Relaxed);
    }
    empty
}

/// Runs `batch` (a safe-point heap's pending entries: `Heap::run_finalizers`) on this
/// thread, then gives its emptied blocks to the global queue's spares. Returns how many
/// ran.
pub(crate) fn run_pending(mut batch: FinQueue) -> usize {
    let n = batch.len;
    let blocks = batch.take_all();
    let mut inv = reflectcall::Invoker::default();
    let empty = run_batch(&mut inv, blocks, false);
    // The emptied blocks go back to the queue they came with (which counts them), and
    // its spares to the global queue's.
    batch.recycle(empty);
    FING.with(|q| q.append(batch));
    n
}

/// Is this the finalizer thread? (`wait_finalizers` there would wait for itself.)
pub(crate) fn on_finalizer_thread() -> bool {
    crate::world::role() == Role::Finalizer
}

/// Blocks until every queued finalizer has run and the finalizer thread is idle, and
/// every destructor that collections had handed to the drop thread by then has run. Call
/// it after `collect()` to see the finalizers of what that collection found (a finalizer
/// that never returns makes this wait forever; see `wait_finalizers_timeout`). From a
/// destructor on the drop thread, it waits for the finalizer thread only.
///
/// # Panics
/// If called from a finalizer (it would wait for itself), or from a `Trace` impl (inside
/// a collection).
pub fn wait_finalizers() {
    let _ = wait_all("fing::wait_finalizers", None);
}

/// Waits for the finalizer thread and the drop thread, until both are idle at once (a
/// finalizer may make garbage for the drop thread, a destructor work for the finalizer
/// thread); `Err` with what is left if `deadline` passes first.
fn wait_all(api: &str, deadline: Option<Instant>) -> Result<(), usize> {
    assert_not_in_finalizer(api);
    crate::world::assert_not_collecting(api);
    loop {
        FING.wait_idle(deadline)?;
        // The drop thread's batches handed over until now (not later ones: a thread
        // making garbage quickly cannot keep this waiting).
        crate::mdrop::wait_for(crate::mdrop::ticket(), deadline)?;
        if !FING.busy() {
            return Ok(());
        }
    }
}

fn assert_not_in_finalizer(api: &str) {
    assert!(
        !on_finalizer_thread(),
        "{api}: called from a finalizer, which runs on the finalizer thread: it would wait for itself"
    );
}

/// A finalizer that did not finish in time: the type of the object it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    wait_all(
        "fing::wait_finalizers_timeout",
        Some(Instant::now() + limit),
    )
    .map_err(|queued| {
        // SAFETY: RUNNING is null or a `&'static Type`.
        let running = unsafe { RUNNING.load(Ordering::Relaxed).as_ref() };
        FinalizerStuck {
            running: running.map(|t| t.to_string()),
            queued,
        }
    })
}
