//! Cleanups (Go 1.24's `runtime.AddCleanup`, mcleanup.go): functions run after an object
//! becomes unreachable, without the object.
//!
//! A cleanup is a record in its object's span (`Span::cleanups`, beside the finalizer
//! records): the address it was added on, a process-unique id for [`Cleanup::stop`], and
//! a `Func` that owns the cleanup's function and argument. Like a finalizer record it
//! names its object by raw address, so it never keeps it alive; unlike one it holds no
//! way to reach the object, and the collector neither scans nor resurrects an object for
//! its cleanups. So objects in cycles get their cleanups, and a cleanup runs in the
//! cycle that frees its object:
//! - marking, resurrection and the finalizer scan ignore cleanup records;
//! - after resurrection ([`queue_cleanups`]), every record whose object is still unmarked
//!   goes to the finalizer thread's queue, as an entry whose object type is [`CLEANUP`]
//!   and whose address is null (nothing may read the object again: the sweep frees it,
//!   or, if garbage with a destructor reaches it, the cycle after that destructor ran). An object with a finalizer was just resurrected, so its cleanups stay
//!   until a later cycle finds it unreachable with no finalizer left: a cleanup runs after
//!   the object's finalizer, two cycles on (Go's `TestCleanupAfterFinalizer`);
//! - objects in a span with cleanup records are not freed at count zero (`mfree`), as for
//!   finalizer records: the collector must see them die.
//!
//! The cleanup's argument lives in the `Func`'s body (a closure `move |()| f(arg)`: inline
//! when the function and argument fit two words, as a handle does), outside the heap, so
//! its handles are counted and are roots: if the argument (or the function's captures)
//! reaches the object, the object is never collected and the cleanup never runs (Go's
//! rule). `add_cleanup` refuses the direct cases with Go's messages (an argument that
//! holds a handle to the object, or into it). With [`HeapConfig::check_finalizers`] (Go
//! 1.25's `checkfinalizers`), `add_cleanup` also notes the objects the argument holds
//! handles to (a probe, which the argument's own counts keep valid until the cleanup
//! runs or is stopped), and every collection reports a live object reachable from a
//! cleanup's argument through the heap, naming its type ([`check_cleanups`]). The
//! function's own captures cannot be checked: a Rust closure has no descriptor.
//!
//! Cleanups run on the finalizer thread, in the order they were queued, after the
//! finalizers queued before them; `wait_finalizers()` waits for them too. A panicking
//! cleanup is caught and counted with the finalizers' panics.
//!
//! [`HeapConfig::check_finalizers`]: crate::HeapConfig::check_finalizers

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::BTreeMap;

use gc_types::rules::{identical, is_empty_interface};
use gc_types::{Func, Kind, PtrMask, Trace, Tracer, Type, Value};

use super::{queue, thread, FinalizerError, HANDOFF_EVERY};
use crate::handle::Gc;
use crate::mpagealloc::span_of;
use crate::mspan::{CleanupRecord, Record, SpanPtr};

/// The object type of a queued cleanup's entry: the finalizer thread calls it without an
/// object.
// SAFETY: the marker value type is never made: no value of it holds a handle; it is Send
// and Sync (a unit struct).
pub(crate) static CLEANUP: Type = unsafe { Type::untraced::<CleanupMarker>("cleanup", true, true) };

/// The value type of [`CLEANUP`] (never made).
struct CleanupMarker;

/// Cleanups queued and run since the process started (all heaps); included in the
/// finalizer thread's own counts too.
pub(crate) static QUEUED: AtomicU64 = AtomicU64::new(0);
pub(crate) static RUN: AtomicU64 = AtomicU64::new(0);

/// With `check_finalizers`: the objects each cleanup's argument holds handles to, by id.
static PROBES: std::sync::Mutex<BTreeMap<u64, Vec<usize>>> = std::sync::Mutex::new(BTreeMap::new());

/// Was a probe ever recorded? (Spares every other process the lock.)
static PROBING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn probes() -> std::sync::MutexGuard<'static, BTreeMap<u64, Vec<usize>>> {
    // Every update completes before unlocking: poisoning is ignored.
    PROBES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The objects of the value at `base`, of type `ty`, holds handles to, if `obj`'s heap
/// checks finalizers (`check_finalizers`).
///
/// # Safety
/// `base` must point to a live value of type `ty`.
unsafe fn probe(ty: &'static Type, base: *const u8, obj: *mut u8) -> Option<Vec<usize>> {
    if ty.is_noscan() || !crate::mheap::any_checks() {
        return None;
    }
    let heap = crate::mheap::heap_of(NonNull::new(obj)?)?;
    if !heap.config().check_finalizers {
        return None;
    }
    let mut t = Tracer::new();
    // SAFETY: the caller's contract.
    unsafe { ty.trace_value(base, &mut t) };
    let mut out = Vec::new();
    while let Some(e) = t.pop() {
        out.push(e.as_ptr() as usize);
    }
    Some(out)
}

/// The last cleanup id handed out (ids start at 1: 0 is the no-op `Cleanup`).
static LAST_ID: AtomicU64 = AtomicU64::new(0);

/// A cleanup added with [`Gc::add_cleanup`] or [`add_cleanup`]: a handle to cancel it
/// (Go's `runtime.Cleanup`). Copying it copies the handle, not the cleanup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cleanup {
    /// The address the cleanup was added on.
    ptr: usize,
    /// Its id; 0 for a cleanup that was never recorded (an object outside the heap).
    id: u64,
}

impl Cleanup {
    /// The cleanup of an object that is never collected (outside the heap, zero-sized):
    /// nothing to run, nothing to stop.
    const NOOP: Cleanup = Cleanup { ptr: 0, id: 0 };

    /// Cancels the cleanup (Go's `Cleanup.Stop`). Idempotent; does nothing once the
    /// cleanup has been queued (its object was found unreachable) or has run, and nothing
    /// for a cleanup of an object outside the heap. To be sure it cancels, keep the object
    /// alive across the call ([`keep_alive`](crate::keep_alive) on a handle to it).
    ///
    /// The cancelled function and its argument are dropped here, on this thread.
    pub fn stop(&self) {
        if self.id == 0 {
            return;
        }
        let removed = {
            // No stop meanwhile: the sweep frees the spans it empties in one (its end), and
            // this address may lie in one.
            let _section = crate::world::enter("fing::Cleanup::stop");
            // The object may be gone and its slot or span reused: the id tells its record.
            let Some(s) = span_of(self.ptr) else { return };
            if !s.has_cleanups() {
                return;
            }
            let mut records = s.cleanups.lock();
            let removed = records
                .iter()
                .position(|r| r.id == self.id)
                .map(|i| records.remove(i));
            s.set_has_cleanups(!records.is_empty());
            removed
        };
        if removed.is_some() {
            probes().remove(&self.id);
        }
        // Dropping the function runs user code (its captures' and argument's destructors),
        // which may do anything a mutator does: outside the lock and the section.
        drop(removed);
    }
}

impl<T: ?Sized + 'static> Gc<T> {
    /// Adds a cleanup (Go's `runtime.AddCleanup`): once the object this handle counts on
    /// is found unreachable, `f(arg)` runs on the finalizer thread, in the collection
    /// cycle that frees the object. The object is not passed, so it is not resurrected:
    /// objects in cycles get their cleanups. Several cleanups may be added to one object,
    /// on its start or on interior handles; each runs once, in no specified order. (A far
    /// handle that points outside the object it counts on, into a buffer the object owns,
    /// attaches its cleanup to that object.)
    ///
    /// If `arg` or `f` reaches the object, the object is never collected and the cleanup
    /// never runs: an `arg` that is a handle to this address is refused with
    /// [`FinalizerError::ArgIsObject`] (`fing::add_cleanup: ptr is equal to arg, cleanup
    /// will never run`), one into the object with [`FinalizerError::ArgWithinObject`]
    /// (unless the object is a tiny one, which shares its block). A handle outside the
    /// heap ([`Gc::from_static`], a zero-sized value) is never collected: its cleanup is a
    /// no-op that `stop` ignores.
    ///
    /// The rest is as for finalizers (see [`set_finalizer`](crate::set_finalizer)):
    /// nothing runs at process exit; tiny objects share a block and its fate; use
    /// [`keep_alive`](crate::keep_alive) where the object's last use is through a raw
    /// pointer; [`wait_finalizers`](crate::wait_finalizers) waits for queued cleanups. A
    /// cleanup that panics is caught and counted in `MemStats::finalizers_panicked`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// # use gc_core as fing;
    /// use fing::{Heap, HeapConfig};
    /// static CLOSED: AtomicUsize = AtomicUsize::new(0);
    /// let heap = Heap::new(HeapConfig::default());
    /// let file = heap.alloc(3i64);
    /// file.add_cleanup(3usize, |fd| { CLOSED.fetch_add(fd, Ordering::SeqCst); }).unwrap();
    /// drop(file);
    /// heap.collect();
    /// heap.wait_finalizers();
    /// assert_eq!(CLOSED.load(Ordering::SeqCst), 3);
    /// ```
    pub fn add_cleanup<S: Trace + Send + 'static>(
        &self,
        arg: S,
        f: impl FnOnce(S) + Send + 'static,
    ) -> Result<Cleanup, FinalizerError> {
        let (ptr, obj) = self.parts();
        if obj.is_null() {
            return Ok(Cleanup::NOOP);
        }
        let base = (&arg as *const S).cast::<u8>();
        // SAFETY: `arg` is a live `S`, whose descriptor `S::TYPE` is.
        unsafe { check_arg_handles(S::TYPE, base, ptr, obj) }?;
        // SAFETY: as above.
        let probe = unsafe { probe(S::TYPE, base, obj) };
        Ok(record(ptr, obj, Func::new(move |(): ()| f(arg)), probe))
    }
}

/// Go's checks of the argument, on every handle the argument holds itself (not what those
/// reach: that is `check_finalizers`' job): a handle, an `Option` of one, a struct of them.
/// Where the type's pointer mask says where its handles lie, each is read with its
/// address (equal to `ptr`: `ArgIsObject`; else into `obj`: `ArgWithinObject`); else its
/// `Trace` impl gives the objects its handles count on (`ArgWithinObject` for `obj`).
///
/// # Safety
/// `base` must point to a live value of type `ty`.
unsafe fn check_arg_handles(
    ty: &'static Type,
    base: *const u8,
    ptr: *const u8,
    obj: *mut u8,
) -> Result<(), FinalizerError> {
    if ty.is_noscan() {
        return Ok(());
    }
    if let PtrMask::Small(mut m) = ty.ptrmask() {
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let at = base.wrapping_add(i * core::mem::size_of::<usize>());
            // SAFETY: a mask word of a live value holds null or a handle word (the
            // descriptor's invariant).
            if unsafe { at.cast::<*const u8>().read() }.is_null() {
                continue;
            }
            // SAFETY: as above: a live handle to a sized element, read in place.
            let (arg_ptr, arg_obj) = unsafe { super::handle_parts_at(at) };
            check_arg(ptr, obj, arg_ptr, arg_obj)?;
        }
        return Ok(());
    }
    let mut t = Tracer::new();
    // SAFETY: the caller's contract: a live value of `ty`.
    unsafe { ty.trace_value(base, &mut t) };
    while let Some(e) = t.pop() {
        check_arg(ptr, obj, core::ptr::null(), e.as_ptr())?;
    }
    Ok(())
}

/// Go's checks of the argument, for an argument that is a handle (`arg_ptr` into the
/// object `arg_obj`, null outside the heap) and a cleanup on `ptr` in `obj`.
fn check_arg(
    ptr: *const u8,
    obj: *mut u8,
    arg_ptr: *const u8,
    arg_obj: *mut u8,
) -> Result<(), FinalizerError> {
    if arg_ptr == ptr {
        return Err(FinalizerError::ArgIsObject);
    }
    // Into the same object (but not a tiny block's: two tiny objects share it).
    // SAFETY: `obj` heads the object the caller's handle keeps allocated.
    let tiny = unsafe { crate::slot::header(obj) }
        .ty
        .load(Ordering::Relaxed)
        .is_null();
    if arg_obj == obj && !tiny {
        return Err(FinalizerError::ArgWithinObject);
    }
    Ok(())
}

/// Records `func` as a cleanup of the object `obj` (which the caller's handle keeps
/// allocated) at `ptr`.
fn record(ptr: *const u8, obj: *mut u8, func: Func, probe: Option<Vec<usize>>) -> Cleanup {
    let s = span_of(obj as usize).expect("fing::add_cleanup: a heap object in no span");
    // The record names its object by an address in the object's slot: `ptr`, or the
    // object's own for a far handle that points outside it (into a buffer it owns, say).
    let slot = s.slot(s.index_of(obj as usize)) as usize;
    let ptr = if (ptr as usize).wrapping_sub(slot) < s.elem_size {
        ptr
    } else {
        obj.cast_const()
    };
    thread::start();
    let id = LAST_ID.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(p) = probe {
        PROBING.store(true, Ordering::Relaxed);
        probes().insert(id, p);
    }
    let mut records = s.cleanups.lock();
    if records.capacity() == 0 {
        // The span's first record (or first since its records were queued as a run): a
        // vector the finalizer thread emptied, if one is kept (same layout: the collect
        // reuses its buffer).
        if let Some(v) = queue::VecPool::take() {
            *records = v
                .into_iter()
                .map(|_| unreachable!("an empty vector"))
                .collect();
        }
    }
    records.push(CleanupRecord { ptr, id, func });
    // Before the lock is released: a collection that finds the records also finds the
    // flag set (it takes the lock to read them).
    s.set_has_cleanups(true);
    drop(records);
    Cleanup {
        ptr: ptr as usize,
        id,
    }
}

/// An argument `Value` of a type the checks found Send and Sync, moved into the cleanup.
struct SendValue(Value);

// SAFETY: `add_cleanup` wraps only values whose type `is_send_sync` (row 11's check):
// such a value may move to the finalizer thread.
unsafe impl Send for SendValue {}

/// Adds a cleanup through reflection: Go's `runtime.AddCleanup(ptr, cleanup, arg)` with
/// its checks done at run time. `obj` is a handle (a pointer-kind value), `cleanup` a
/// function of one parameter (a [`Func`], or a `Value` holding one), and `arg` a value of that parameter's type (or of any type,
/// for a parameter that is the empty interface `Value`), Send and Sync. The cleanup's
/// results are dropped. See [`Gc::add_cleanup`] for the semantics.
///
/// Errors, each naming the types involved: [`FinalizerError::CleanupNilObject`],
/// [`CleanupNotPointer`](FinalizerError::CleanupNotPointer),
/// [`CleanupNotFunction`](FinalizerError::CleanupNotFunction),
/// [`CleanupCannotPass`](FinalizerError::CleanupCannotPass),
/// [`CleanupNotSendSync`](FinalizerError::CleanupNotSendSync),
/// [`ArgIsObject`](FinalizerError::ArgIsObject),
/// [`ArgWithinObject`](FinalizerError::ArgWithinObject).
pub fn add_cleanup(
    obj: Value,
    cleanup: impl Into<Value>,
    arg: Value,
) -> Result<Cleanup, FinalizerError> {
    let cleanup = cleanup.into();
    if obj.is_nil() {
        return Err(FinalizerError::CleanupNilObject);
    }
    let oty = obj.type_of();
    if oty.kind() != Kind::Pointer {
        return Err(FinalizerError::CleanupNotPointer {
            ty: oty.to_string(),
        });
    }
    let fty = cleanup.type_of();
    if fty.kind() != Kind::Func || fty.params().len() != 1 || fty.is_variadic() {
        return Err(FinalizerError::CleanupNotFunction {
            ty: fty.to_string(),
        });
    }
    let param = fty.params().next().expect("one parameter");
    let aty = arg.type_of();
    let boxed = if identical(aty, param) {
        false
    } else if is_empty_interface(param) {
        true
    } else {
        return Err(FinalizerError::CleanupCannotPass {
            arg: aty.to_string(),
            cleanup: fty.to_string(),
        });
    };
    if !aty.is_send_sync() {
        return Err(FinalizerError::CleanupNotSendSync {
            ty: aty.to_string(),
        });
    }
    if gc_types::FrameLayout::of(fty).is_err() {
        return Err(FinalizerError::CleanupNotFunction {
            ty: fty.to_string(),
        });
    }
    let (ptr, obj_header) = super::handle_parts(&obj);
    if obj_header.is_null() {
        return Ok(Cleanup::NOOP);
    }
    // SAFETY: a `Value` holds a live value of its type.
    unsafe { check_arg_handles(aty, arg.as_ptr(), ptr, obj_header) }?;
    // SAFETY: as above.
    let probe = unsafe { probe(aty, arg.as_ptr(), obj_header) };
    let func = cleanup
        .into_func()
        .unwrap_or_else(|_| unreachable!("fing::add_cleanup: func kind without a Func"));
    let arg = SendValue(if boxed { Value::new(arg) } else { arg });
    let run = Func::new(move |(): ()| {
        let arg = arg;
        // The arguments were checked above, and a frame can be laid out: the call is
        // made. (A panic in it is the cleanup's, caught by the finalizer thread.)
        if let Err(e) = func.call(vec![arg.0]) {
            panic!("fing::add_cleanup: the checked call failed: {e}");
        }
    });
    let c = record(ptr, obj_header, run, probe);
    // `obj` kept the object alive until the record was made.
    drop(obj);
    Ok(c)
}

/// After resurrection, with the world stopped, from span `*cursor` on: queues the cleanups
/// of every object left unmarked (garbage: freed by this cycle's sweep, or by the next if
/// a destructor of this cycle's garbage reaches it) into `out`, handing full parts to the
/// finalizer thread as resurrection does, and adds how many to `queued`. Returns whether
/// it is done; a step of the cycle (`mgc`), with the world running between steps (what a
/// mutator does meanwhile touches only live objects' records).
pub(crate) fn queue_cleanups(
    heap: &'static crate::mheap::MHeap,
    spans: &[SpanPtr],
    cursor: &mut usize,
    out: &mut queue::FinQueue,
    queued: &mut u64,
    budget: &mut crate::mgcmark::Budget,
) -> bool {
    let mut n = 0;
    // The probes of queued cleanups go with them (a mutator holding the lock is outside
    // every section, and lets it go without waiting for the world).
    let mut probes = PROBING.load(Ordering::Relaxed).then(probes);
    while let Some(s) = spans.get(*cursor).map(|s| s.get()) {
        *cursor += 1;
        if !s.has_cleanups() {
            if !budget.go_on(1) {
                break;
            }
            continue;
        }
        let mut records = s.cleanups.lock();
        // The records looked at: the step's units of work.
        let work = records.len() as u32 + 1;
        let entry = |r: CleanupRecord| Record {
            ptr: core::ptr::null(),
            func: r.func,
            obj_ty: &CLEANUP,
        };
        if !s.any_marked() {
            // Nothing in the span is live (a burst of garbage): every record goes, the
            // vector handed to the queue as a run, its entries made where they lie (a
            // record and an entry have one layout, so the collect reuses the buffer).
            let all = core::mem::take(&mut *records);
            s.set_has_cleanups(false);
            drop(records);
            n += all.len() as u64;
            if let Some(p) = probes.as_mut() {
                all.iter().for_each(|r| {
                    p.remove(&r.id);
                });
            }
            out.push_run(all.into_iter().map(entry).collect());
            if out.len >= HANDOFF_EVERY {
                super::enqueue(heap, out.take_filled());
            }
            if !budget.go_on(work) {
                break;
            }
            continue;
        }
        let dead = |r: &CleanupRecord| !s.is_marked(s.index_of(r.ptr as usize));
        if !records.iter().any(dead) {
            drop(records);
            if !budget.go_on(work) {
                break;
            }
            continue;
        }
        for r in records.extract_if(.., |r| dead(r)) {
            if let Some(p) = probes.as_mut() {
                p.remove(&r.id);
            }
            out.push(entry(r));
            n += 1;
        }
        s.set_has_cleanups(!records.is_empty());
        drop(records);
        if out.len >= HANDOFF_EVERY {
            super::enqueue(heap, out.take_filled());
        }
        if !budget.go_on(work) {
            break;
        }
    }
    QUEUED.fetch_add(n, Ordering::Relaxed);
    *queued += n;
    *cursor >= spans.len()
}

/// `check_finalizers` after marking, with the world stopped: reports each live object of
/// `heap` that one of its cleanups' arguments reaches through the heap (the cleanup will
/// never run), naming its type. Returns how many it found.
pub(crate) fn check_cleanups(heap: &crate::mheap::MHeap, spans: &[SpanPtr]) -> u64 {
    let probes = probes();
    if probes.is_empty() {
        return 0;
    }
    let mut found = 0;
    for s in spans.iter().map(|s| s.get()).filter(|s| s.has_cleanups()) {
        for r in s.cleanups.lock().iter() {
            let Some(p) = probes.get(&r.id) else { continue };
            let i = s.index_of(r.ptr as usize);
            if !s.is_marked(i) {
                continue;
            }
            let obj = NonNull::new(s.slot(i)).expect("fing::collect: a slot at null");
            // The probe's objects are allocated: the argument holds counts on them.
            let starts: Vec<NonNull<u8>> = p
                .iter()
                .filter_map(|&a| NonNull::new(a as *mut u8))
                .filter(|o| span_of(o.as_ptr() as usize).is_some_and(|t| t.heap_id == heap.id))
                .collect();
            if crate::mgcmark::reaches(heap, &starts, obj) {
                found += 1;
                // SAFETY: a marked slot is allocated.
                let ty = unsafe { crate::slot::header(obj.as_ptr()) }
                    .ty
                    .load(Ordering::Relaxed);
                // SAFETY: a header's type is null (a tiny block) or a `&'static Type`.
                let ty = unsafe { ty.as_ref() };
                eprintln!(
                    "fing: checkfinalizers: a {} at {:p} is reachable from the argument of its \
                     cleanup: the cleanup will never run and the object will never be freed",
                    ty.map_or_else(|| "tiny block".to_string(), |t| t.to_string()),
                    obj
                );
            }
        }
    }
    found
}

/// Runs a queued cleanup's function (the finalizer thread, for an entry of type
/// [`CLEANUP`]).
///
/// # Safety
/// `func` is a queued cleanup's function, which this call takes over: the caller neither
/// uses nor drops it again (also if this unwinds).
pub(crate) unsafe fn run(func: &mut Func) {
    // Counted before the call: one that panics has run too. Only the finalizer thread
    // writes it: no read-modify-write needed.
    RUN.store(RUN.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    let mut unit = ();
    // SAFETY: every cleanup's function is a one-parameter closure of `()` (`Func::new`
    // above), and `unit` is a valid `()`; the caller's contract hands the function over.
    let ran = unsafe { Func::call_unary_in_place(func, (&mut unit as *mut ()).cast()) };
    if !ran {
        // A closure too large to be held by value (the dynamic `add_cleanup`'s): through
        // a frame. Not run above, so taken over here, once.
        // SAFETY: the caller's contract: the function is this call's to take.
        let func = unsafe { core::ptr::read(func) };
        if let Err(e) = func.call(vec![Value::new(())]) {
            panic!("fing::add_cleanup: a cleanup's call of its own signature failed: {e}");
        }
    }
}
