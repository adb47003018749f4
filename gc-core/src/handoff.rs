//! The hand-off between a producer, a worker thread and its waiters (Go's finq lock,
//! fing, and the "finalizer wait" park), generic over the queue so that the loom models
//! below check this very code with a counter for a queue. Two instances: the finalizer
//! queue (mfinal) and the drop thread's batches (mdrop).
//!
//! - `push` (the collector, every `HANDOFF_EVERY` finalizers it resurrects, or a batch of
//!   destructors for the drop thread): appends under the lock, then wakes the thread.
//!   `push_quiet` appends without waking it, and owes the wake-up to `wake_owed`: a
//!   collector holding the stopped world pays it once the world has resumed (a thread
//!   woken inside the stop took a core from it on two cores, 0.8 to 1.9 ms at a time,
//!   and every mutator waited that much longer). `wait_idle` pays what is owed first, so
//!   a waiter never waits for a wake-up no one sends.
//! - `take` (the thread): waits while the queue is empty, announcing idleness each time
//!   it finds it so; then takes the whole queue and records the batch as in flight.
//! - `finished` (the thread, after running a batch): nothing is in flight any more.
//! - `wait_idle` (any other thread): waits until the queue is empty and nothing is in
//!   flight.
//!
//! Invariant: `busy()` (queued or in flight) is false only when every finalizer pushed
//! before has finished. The thread announces idleness (`idle.notify_all`) only under the
//! lock with the queue empty, and it always passes through `take` after `finished`, so a
//! waiter that saw `busy()` is woken.

#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// A queue of work as the hand-off sees it.
pub(crate) trait Queue {
    /// What `take` returns.
    type Batch;
    fn len(&self) -> usize;
    fn take_all(&mut self) -> Self::Batch;
}

pub(crate) struct State<Q> {
    pub(crate) queue: Q,
    /// Taken by the thread and not finished yet.
    in_flight: usize,
    /// Only the models close a hand-off (their threads must end); see `close`.
    closed: bool,
    /// `push_quiet` queued work and did not wake the thread.
    owed: bool,
}

impl<Q: Queue> State<Q> {
    fn busy(&self) -> bool {
        self.queue.len() > 0 || self.in_flight > 0
    }
}

/// The one body of `Handoff::new`, const or not.
macro_rules! handoff {
    ($queue:expr) => {
        Handoff {
            state: Mutex::new(State {
                queue: $queue,
                in_flight: 0,
                closed: false,
                owed: false,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
        }
    };
}

pub(crate) struct Handoff<Q> {
    state: Mutex<State<Q>>,
    /// Signalled when work is queued.
    work: Condvar,
    /// Signalled when the thread finds the queue empty.
    idle: Condvar,
}

impl<Q: Queue> Handoff<Q> {
    /// A hand-off around `queue` (const for the real one, a static; loom's primitives
    /// are made at run time, inside a model).
    #[cfg(not(loom))]
    pub(crate) const fn new(queue: Q) -> Handoff<Q> {
        handoff!(queue)
    }

    #[cfg(loom)]
    pub(crate) fn new(queue: Q) -> Handoff<Q> {
        handoff!(queue)
    }

    /// The lock. Every update of the state completes before unlocking, and finalizers run
    /// outside it, so poisoning carries no meaning here.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<Q>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the queue under the lock, waking no one.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Q) -> R) -> R {
        f(&mut self.lock().queue)
    }

    /// Adds work (`add` runs under the lock) and wakes the thread.
    pub(crate) fn push(&self, add: impl FnOnce(&mut Q)) {
        self.with(add);
        self.work.notify_one();
    }

    /// Adds work without waking the thread (see the module docs): the wake-up is owed to
    /// [`wake_owed`](Self::wake_owed).
    pub(crate) fn push_quiet(&self, add: impl FnOnce(&mut Q)) {
        let mut s = self.lock();
        add(&mut s.queue);
        s.owed = true;
    }

    /// Wakes the thread if `push_quiet` queued work since the last wake-up it owed.
    pub(crate) fn wake_owed(&self) {
        let mut s = self.lock();
        if core::mem::take(&mut s.owed) {
            drop(s);
            self.work.notify_one();
        }
    }

    /// The thread's wait for work: the whole queue, now in flight. `None` only once a
    /// model closed the hand-off and the queue is empty.
    pub(crate) fn take(&self) -> Option<Q::Batch> {
        let mut s = self.lock();
        while s.queue.len() == 0 {
            self.idle.notify_all();
            if s.closed {
                return None;
            }
            s = self.work.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.in_flight = s.queue.len();
        Some(s.queue.take_all())
    }

    /// Is work queued or in flight?
    pub(crate) fn busy(&self) -> bool {
        self.lock().busy()
    }

    /// The thread finished the batch it took; `after` runs on the queue under the lock.
    pub(crate) fn finished(&self, after: impl FnOnce(&mut Q)) {
        let mut s = self.lock();
        s.in_flight = 0;
        after(&mut s.queue);
    }

    /// Waits until nothing is queued or in flight, or until `deadline`; on time-out,
    /// returns how many are still queued.
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> Result<(), usize> {
        let mut s = self.lock();
        while s.busy() {
            // Owed and not yet paid (the payer may be later, or have unwound): pay it here.
            if core::mem::take(&mut s.owed) {
                self.work.notify_one();
            }
            match deadline {
                None => s = self.idle.wait(s).unwrap_or_else(|e| e.into_inner()),
                #[cfg(not(loom))]
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(s.queue.len());
                    }
                    s = self
                        .idle
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                #[cfg(loom)]
                Some(_) => unreachable!("fing::wait_finalizers: the models wait without a limit"),
            }
        }
        Ok(())
    }

    /// Lets `take` return `None` once the queue is empty (the models' threads must end;
    /// the real finalizer thread runs for the life of the process).
    #[cfg(all(test, loom))]
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_one();
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    /// A queue of `n` pending items; a batch is how many were taken.
    struct Count(usize);

    impl Queue for Count {
        type Batch = usize;
        fn len(&self) -> usize {
            self.0
        }
        fn take_all(&mut self) -> usize {
            core::mem::take(&mut self.0)
        }
    }

    /// The finalizer thread's loop, ending when the model closes the hand-off.
    fn runner(h: Arc<Handoff<Count>>, ran: Arc<AtomicUsize>) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            while let Some(n) = h.take() {
                ran.fetch_add(n, Ordering::Relaxed);
                h.finished(|_| ());
            }
        })
    }

    /// Property: a finalizer queued before `wait_idle` has run when `wait_idle` returns,
    /// and no interleaving of the collector's push, the thread's park and the waiter loses
    /// a wake-up (loom reports a deadlock if every thread ends up blocked).
    #[test]
    fn queued_work_has_run_when_wait_returns() {
        loom::model(|| {
            let h = Arc::new(Handoff::new(Count(0)));
            let ran = Arc::new(AtomicUsize::new(0));
            let t = runner(h.clone(), ran.clone());
            h.push(|q| q.0 += 1);
            h.wait_idle(None).unwrap();
            assert_eq!(ran.load(Ordering::Relaxed), 1);
            h.close();
            t.join().unwrap();
        });
    }

    /// Property: work pushed quietly (by a collector holding the stopped world) runs once
    /// the collector pays the wake-up it owes, or once a waiter does: `wait_idle` alone
    /// returns with it run, and a payment racing the waiter's loses no wake-up.
    #[test]
    fn quiet_pushes_run_once_the_wake_is_paid() {
        loom::model(|| {
            let h = Arc::new(Handoff::new(Count(0)));
            let ran = Arc::new(AtomicUsize::new(0));
            let t = runner(h.clone(), ran.clone());
            let h2 = h.clone();
            let collector = thread::spawn(move || {
                h2.push_quiet(|q| q.0 += 1);
                h2.wake_owed();
            });
            h.push_quiet(|q| q.0 += 1);
            h.wait_idle(None).unwrap();
            collector.join().unwrap();
            h.wait_idle(None).unwrap();
            assert_eq!(ran.load(Ordering::Relaxed), 2);
            h.close();
            t.join().unwrap();
        });
    }

    /// Property: with pushes from another thread (the collector) racing the thread's park
    /// and a waiter, every push is run exactly once, none is lost while the thread parks,
    /// and a waiter that started after both pushes sees both run.
    #[test]
    fn pushes_racing_the_park_are_all_run_once() {
        loom::model(|| {
            let h = Arc::new(Handoff::new(Count(0)));
            let ran = Arc::new(AtomicUsize::new(0));
            let t = runner(h.clone(), ran.clone());
            let h2 = h.clone();
            let collector = thread::spawn(move || {
                h2.push(|q| q.0 += 1);
                h2.push(|q| q.0 += 1);
            });
            collector.join().unwrap();
            h.wait_idle(None).unwrap();
            assert_eq!(ran.load(Ordering::Relaxed), 2);
            h.close();
            t.join().unwrap();
            assert_eq!(ran.load(Ordering::Relaxed), 2);
        });
    }
}
