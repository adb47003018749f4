//! Finalizers (Go's mfinal): `set_finalizer` with Go's checks in Go's order, the records
//! (Go's finalizer specials), the queue of blocks and runs, the finalizer thread,
//! `keep_alive`.
//!
//! Semantics are Go's, as `set_finalizer`'s docs state them (the rows below are that
//! check table's):
//! - A record is kept outside the heap, per object, keyed by the exact address it was set
//!   on (so each tiny object in a 16-byte block has its own). It holds the object by raw
//!   address, never by a counted handle (or the object could never die), and the
//!   finalizer `Func`, whose captures are counted handles and so roots.
//! - Marking: after the roots, each object with records that is still unmarked has its
//!   contents scanned (what it points to is marked) but is not marked itself (Go's
//!   markfin). So if A points to B and both have finalizers, only A's runs this cycle.
//! - Sweep: an unmarked object with records is resurrected (marked) and *all* its records
//!   are queued in this cycle, each with the address it was set on (Go's two-pass rule of
//!   2015). A queued entry holds a counted handle: the queue is a root until the finalizer
//!   has run, and the object can die in a later cycle.
//! - One finalizer thread, started on the first `set_finalizer` that passes rows 1–9 (as
//!   Go's `createfing`, before the already-set check), runs
//!   the queue's finalizers one at a time through the frame invoker (reflectcall). A
//!   finalizer that panics is caught, counted and reported; the thread goes on.
//!   `wait_finalizers()` blocks until the queue is empty and the thread idle.
//!
//! Costs (choices the 1M-finalizer benchmark forced; docs/log.md has the measurements):
//! - A record is 48 bytes (address, `Func`, object type): its object is the slot the
//!   address lies in, and row 9's conversion is asked again when it runs. A span's records
//!   sit in a sorted `Vec` under a spin lock (`spin`), appended in allocation order.
//! - `Gc::set_finalizer` skips the checks its types answer (`set_typed`); the dynamic
//!   `set_finalizer` runs all eleven rows.
//! - The marker's finalizer scan skips noscan spans without reading their records.
//! - Resurrection and the finalizer thread touch each object's header, long gone from the
//!   cache: both prefetch the object a few records ahead (`PREFETCH_AHEAD`).
//! - Row 5 reads the object's header only for an address that is neither right after the
//!   header nor inside a tiny-eligible object.
//! - Resurrection hands a span whose objects are all dead to the queue as its record
//!   vector itself (a run), and hands entries to the thread every `HANDOFF_EVERY` while it
//!   goes on, so finalizers run during the rest of the collection (`thread::enqueue`).
//!   The thread gives emptied run vectors back to a pool (`queue::VecPool`) that spans
//!   take their next vector from: no `malloc`, `realloc` copy or page fault per burst.
//! - Nothing of 48 bytes or 32 (a record, a `Func`) travels through the stack on the hot
//!   paths: `Gc::set_finalizer` builds the `Func` where its record is written, the thread
//!   reads each entry where it lies and calls a direct finalizer's `Func` in place
//!   (`Func::call_unary_in_place`). Copied, such values were read back in other widths
//!   than they were written in, and each read waited on a store-forwarding stall: a
//!   third of both `set_finalizer` and the thread's time per finalizer.
//! - The invoker keeps row 9's answer for the last (signature, object type) pair.
//! - The span lock's compare-and-swap is the largest part of a typed `set_finalizer`. A
//!   lock biased to the setting thread (plain stores, `membarrier` to revoke) measured no
//!   faster: the section it needs and its busy flag cost as much (docs/log.md).

use std::collections::BTreeMap;

mod cleanup;
mod panic_hook;
mod queue;
mod reflectcall;
mod thread;

use core::fmt;
use core::sync::atomic::Ordering;

use gc_types::rules::{finalizer_param, ParamMatch};
use gc_types::{Func, Itab, Kind, Type, Value};

use crate::handle::Gc;
use crate::mpagealloc::span_of;
use crate::mspan::Record;
use crate::slot::{data_offset, HEADER};

pub use cleanup::{add_cleanup, Cleanup};
pub(crate) use cleanup::{check_cleanups, queue_cleanups};
pub use panic_hook::{set_finalizer_panic_hook, take_finalizer_panic_hook, FinalizerPanic};
pub(crate) use queue::FinQueue;
pub(crate) use thread::{on_finalizer_thread, wake};
pub use thread::{wait_finalizers, wait_finalizers_timeout, FinalizerStuck};

/// What `set_finalizer` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The finalizer was recorded.
    Set,
    /// The finalizer at this address was removed (or there was none).
    Removed,
    /// The object is zero-sized: nothing was recorded (Go: it may share its address).
    ZeroSized,
    /// The object is not in the heap (`Gc::from_static`): nothing was recorded.
    NotInHeap,
}

/// Why `set_finalizer` refused. `Display` gives Go's message after `fing::set_finalizer: `.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinalizerError {
    /// `first argument is nil`
    NilObject,
    /// `first argument is {ty}, not pointer`
    NotPointer {
        /// The object's type.
        ty: String,
    },
    /// `pointer not at beginning of allocated block`
    NotAtBlockStart,
    /// `second argument is {ty}, not a function`
    NotFunction {
        /// The finalizer's type.
        ty: String,
    },
    /// `cannot pass {obj} to finalizer {finalizer}`
    CannotPass {
        /// The object's type.
        obj: String,
        /// The finalizer's type.
        finalizer: String,
    },
    /// `finalizer already set`
    AlreadySet,
    /// `{ty} is not Send + Sync; its finalizer would run on another thread`
    NotSendSync {
        /// The object's type.
        ty: String,
    },
    /// `cannot lay out a frame for finalizer {finalizer}: it is larger than isize::MAX
    /// bytes` (a signature with results too large for any frame: refused before anything
    /// is recorded, as the finalizer thread could not call it).
    FrameTooLarge {
        /// The finalizer's type.
        finalizer: String,
    },
    /// `fing::add_cleanup: ptr is nil`
    CleanupNilObject,
    /// `fing::add_cleanup: ptr is {ty}, not pointer`
    CleanupNotPointer {
        /// The object's type.
        ty: String,
    },
    /// `fing::add_cleanup: cleanup is {ty}, not a function of one argument`
    CleanupNotFunction {
        /// The cleanup's type.
        ty: String,
    },
    /// `fing::add_cleanup: cannot pass arg of type {arg} to cleanup {cleanup}`
    CleanupCannotPass {
        /// The argument's type.
        arg: String,
        /// The cleanup's type.
        cleanup: String,
    },
    /// `fing::add_cleanup: {ty} is not Send + Sync; the cleanup runs on another thread`
    CleanupNotSendSync {
        /// The argument's type.
        ty: String,
    },
    /// `fing::add_cleanup: ptr is equal to arg, cleanup will never run` (the argument, a
    /// handle, would keep the object alive)
    ArgIsObject,
    /// `fing::add_cleanup: ptr is within arg, cleanup will never run` (the argument is a
    /// handle into the object: Go's wording)
    ArgWithinObject,
}

impl fmt::Display for FinalizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FinalizerError::*;
        let api = match self {
            CleanupNilObject
            | CleanupNotPointer { .. }
            | CleanupNotFunction { .. }
            | CleanupCannotPass { .. }
            | CleanupNotSendSync { .. }
            | ArgIsObject
            | ArgWithinObject => "fing::add_cleanup: ",
            _ => "fing::set_finalizer: ",
        };
        f.write_str(api)?;
        match self {
            FinalizerError::NilObject => f.write_str("first argument is nil"),
            FinalizerError::NotPointer { ty } => write!(f, "first argument is {ty}, not pointer"),
            FinalizerError::NotAtBlockStart => {
                f.write_str("pointer not at beginning of allocated block")
            }
            FinalizerError::NotFunction { ty } => {
                write!(f, "second argument is {ty}, not a function")
            }
            FinalizerError::CannotPass { obj, finalizer } => {
                write!(f, "cannot pass {obj} to finalizer {finalizer}")
            }
            FinalizerError::AlreadySet => f.write_str("finalizer already set"),
            FinalizerError::NotSendSync { ty } => {
                write!(
                    f,
                    "{ty} is not Send + Sync; its finalizer would run on another thread"
                )
            }
            FinalizerError::FrameTooLarge { finalizer } => write!(
                f,
                "cannot lay out a frame for finalizer {finalizer}: it is larger than isize::MAX bytes"
            ),
            CleanupNilObject => f.write_str("ptr is nil"),
            CleanupNotPointer { ty } => write!(f, "ptr is {ty}, not pointer"),
            CleanupNotFunction { ty } => {
                write!(f, "cleanup is {ty}, not a function of one argument")
            }
            CleanupCannotPass { arg, cleanup } => {
                write!(f, "cannot pass arg of type {arg} to cleanup {cleanup}")
            }
            CleanupNotSendSync { ty } => {
                write!(f, "{ty} is not Send + Sync; the cleanup runs on another thread")
            }
            ArgIsObject => f.write_str("ptr is equal to arg, cleanup will never run"),
            ArgWithinObject => f.write_str("ptr is within arg, cleanup will never run"),
        }
    }
}

impl std::error::Error for FinalizerError {}

/// How the invoker passes the object to the finalizer (row 9's answer).
#[derive(Clone, Copy)]
pub(crate) enum Conv {
    /// The handle as is (identical or assignable pointer types share a representation).
    Handle,
    /// A `Value` of the object's pointer type.
    Value,
    /// An interface handle made through the itab.
    Iface(&'static Itab),
}

/// Row 9: how an object of pointer type `obj_ty` is passed to a parameter of type `param`,
/// or `None` if it cannot be. `set_finalizer` checks with it; the invoker asks again when
/// it runs the finalizer (as Go's runfinq converts to the parameter's interface at run
/// time), so that records need not carry the answer.
pub(crate) fn conv(obj_ty: &'static Type, param: &'static Type) -> Option<Conv> {
    // A parameter of the object's own type (what `Gc::set_finalizer` makes) is identical
    // at a glance.
    let matched = if core::ptr::eq(param, obj_ty) {
        ParamMatch::Identical
    } else {
        finalizer_param(obj_ty, param)?
    };
    Some(match matched {
        ParamMatch::Identical | ParamMatch::AssignablePointer => Conv::Handle,
        ParamMatch::EmptyInterface => Conv::Value,
        ParamMatch::Interface(itab) => Conv::Iface(itab),
    })
}

/// Sets the finalizer of the object `obj` points to, or with a nil `finalizer` removes it:
/// Go's `runtime.SetFinalizer`, with run-time values ([`Gc::set_finalizer`] is the typed
/// form, whose checks the compiler makes where the types answer them).
///
/// `obj` is a [`Value`] holding a handle (`Value::from(gc.clone())`), or a named pointer
/// type's value; `finalizer` is a [`Func`] of one parameter (any results, ignored), or
/// [`Value::nil()`](Value::nil) to remove.
///
/// # The checks, in Go's order
///
/// | # | if | then |
/// |---|---|---|
/// | 1 | `obj` is nil | [`FinalizerError::NilObject`]: `first argument is nil` |
/// | 2 | `obj` is not of pointer kind | [`FinalizerError::NotPointer`]: `first argument is {T}, not pointer` |
/// | 3 | the element is zero-sized | nothing, [`Outcome::ZeroSized`] (it may share its address with others) |
/// | 4 | `obj` points outside every heap ([`Gc::from_static`]) | nothing, [`Outcome::NotInHeap`] |
/// | 5 | `obj` is not at the start of its object's value, unless the element type is noscan and under 16 bytes (a tiny object) | [`FinalizerError::NotAtBlockStart`]: `pointer not at beginning of allocated block` |
/// | 6 | `finalizer` is nil | the finalizer set at exactly this address is removed (if any), [`Outcome::Removed`] |
/// | 7 | `finalizer` is not a func | [`FinalizerError::NotFunction`]: `second argument is {F}, not a function` |
/// | 8 | it has not exactly one parameter, or is variadic | [`FinalizerError::CannotPass`]: `cannot pass {T} to finalizer {F}` |
/// | 9 | the parameter is not: `T` itself; a pointer type with `T`'s element where one of the two is unnamed; the empty interface (`Value`); an interface `T` implements | [`FinalizerError::CannotPass`], as above |
/// | 10 | a finalizer is already set at this address | [`FinalizerError::AlreadySet`]: `finalizer already set` |
/// | 11 | `T` is not `Send + Sync` | [`FinalizerError::NotSendSync`]: `{T} is not Send + Sync; its finalizer would run on another thread` |
/// | — | otherwise | the record is added, the finalizer thread started if it was not, [`Outcome::Set`] |
///
/// Each error's `Display` is `fing::set_finalizer: ` and the text above, with the type
/// strings filled in; nothing is recorded. (One more, of fing's own: a signature whose
/// results are too large for any frame, [`FinalizerError::FrameTooLarge`].) Where Go
/// aborts the program, fing returns the error.
///
/// # When the finalizer runs
///
/// After a collection finds the object unreachable: no handle outside the heap reaches it,
/// directly or through other objects. The collection then *resurrects* it: the object and
/// everything it reaches stay allocated, the record is removed, and the finalizer is
/// queued with a handle to the object. One thread, `fing-finalizer`, runs the queue, one
/// finalizer at a time, in no promised order; a finalizer that must run long should hand
/// its work to a thread of its own. When it has run and dropped its handle, the object is
/// an ordinary object again: the next collection (or its count reaching zero) frees it,
/// unless the finalizer stored a handle somewhere or set a new finalizer on it.
///
/// A finalizer that panics is caught, counted (`MemStats::finalizers_panicked`) and
/// reported on stderr; the thread goes on. [`wait_finalizers`] blocks until the queue is
/// empty (Go has no such call).
///
/// Setting the finalizer *synchronizes before* its call (Go's memory model): what the
/// setting thread wrote before the call is visible to the finalizer. Nothing else does: a
/// finalizer that reads state other threads change needs a lock or atomics.
///
/// # Order and cycles
///
/// If A points to B and both have finalizers and are otherwise unreachable, only A's runs;
/// B stays alive for it, and B's runs in the collection after A is freed. So finalizers
/// run in dependency order. A cycle through an object with a finalizer is never freed and
/// its finalizer never runs (there is no order to run it in): break the cycle, or put the
/// finalizer on an object outside it. [`HeapConfig::check_finalizers`](crate::HeapConfig::check_finalizers) reports such
/// objects (Go's `GODEBUG=checkfinalizers`).
///
/// # Tiny objects
///
/// Noscan values under 16 bytes share 16-byte blocks (the tiny allocator). A block is
/// freed whole: the finalizer of an unreachable tiny object may never run while another
/// object in its block stays reachable, and all the finalizers of a block run in the same
/// collection. Each tiny object's address is its own key (rows 5 and 10).
///
/// # Not guaranteed
///
/// That a finalizer runs at all: not for objects still reachable at exit (fing, like Go,
/// runs no finalizers when the process exits), not for objects in cycles, not soon (only
/// after a collection). Use finalizers to release what the program could not release
/// otherwise, not for work that must happen.
///
/// # Keeping an object alive
///
/// A handle keeps its object alive, and Rust's borrows keep the handle for as long as a
/// reference from it is used, so Go's early-finalization hazard needs raw pointers here:
/// code that keeps an address from the object (an fd, a pointer into it) past the point
/// where it drops or moves the handle calls [`keep_alive`] after its last use.
pub fn set_finalizer(obj: Value, finalizer: impl Into<Value>) -> Result<Outcome, FinalizerError> {
    // Row 1.
    if obj.is_nil() {
        return Err(FinalizerError::NilObject);
    }
    // Row 2.
    let oty = obj.type_of();
    if oty.kind() != Kind::Pointer {
        return Err(FinalizerError::NotPointer {
            ty: oty.to_string(),
        });
    }
    let (ptr, header) = handle_parts(&obj);
    let finalizer = finalizer.into();
    let fin = (!finalizer.is_nil()).then_some(finalizer);
    // `obj` lives (and keeps its object alive) until the checks and the record are done.
    let r = set_raw(oty, ptr, header, fin);
    drop(obj);
    r
}

/// Rows 3–11 for a handle given as its parts: the address `ptr` and the header of the
/// object `obj` (null outside the heap), of pointer type `oty`, and a finalizer (`None`:
/// nil). The caller keeps the object alive
/// during the call (it holds a handle).
fn set_raw(
    oty: &'static Type,
    ptr: *const u8,
    obj: *mut u8,
    fin: Option<Value>,
) -> Result<Outcome, FinalizerError> {
    let elem = oty
        .elem()
        .expect("fing::set_finalizer: pointer type without an element");
    // Rows 3 to 5.
    let span = match locate(elem.size(), elem.is_noscan(), ptr, obj) {
        Ok(span) => span,
        Err(early) => return early.answer(),
    };
    // Row 6.
    let Some(fin) = fin else {
        return Ok(remove(span, ptr));
    };
    // Row 7.
    let fty = fin.type_of();
    if fty.kind() != Kind::Func {
        return Err(FinalizerError::NotFunction {
            ty: fty.to_string(),
        });
    }
    let cannot = || FinalizerError::CannotPass {
        obj: oty.to_string(),
        finalizer: fty.to_string(),
    };
    // Row 8.
    if fty.params().len() != 1 || fty.is_variadic() {
        return Err(cannot());
    }
    // Row 9.
    let param = fty.params().next().expect("one parameter");
    conv(oty, param).ok_or_else(cannot)?;
    // The invoker must be able to lay the frame out (results of any number, but not of
    // more than isize::MAX bytes).
    if gc_types::FrameLayout::of(fty).is_err() {
        return Err(FinalizerError::FrameTooLarge {
            finalizer: fty.to_string(),
        });
    }
    let func = fin
        .into_func()
        .unwrap_or_else(|_| unreachable!("fing::set_finalizer: func kind without a Func"));
    // Rows 10 and 11.
    insert(span, ptr, || func, oty, false)
}

/// `Gc<T>::set_finalizer`: rows 3–6 and 10 for a finalizer whose parameter is `Gc<T>`
/// (rows 1, 2, 7, 8, 9 and 11 are the signature's and the bounds'), with the element's
/// size and noscan bit known at compile time. `None` removes. The closure becomes a `Func`
/// where its record is written (built earlier, it went through the stack and was read
/// back in other widths: a store-forwarding stall on every call).
#[inline]
pub(crate) fn set_typed<T, F>(
    ptr: *const u8,
    obj: *mut u8,
    f: Option<F>,
) -> Result<Outcome, FinalizerError>
where
    T: gc_types::Trace + Send + Sync + 'static,
    F: FnOnce(Gc<T>) + Send + 'static,
{
    let elem = <T as gc_types::Typed>::TYPE;
    let span = match locate(core::mem::size_of::<T>(), elem.is_noscan(), ptr, obj) {
        Ok(span) => span,
        Err(early) => return early.answer(),
    };
    match f {
        None => Ok(remove(span, ptr)),
        Some(f) => {
            let oty = <Gc<T> as gc_types::Typed>::TYPE;
            insert(span, ptr, || Func::new(f), oty, true)
        }
    }
}

/// Rows 3–5 stopping a call before its record: a no-op or a refusal.
#[derive(Clone, Copy)]
enum Early {
    ZeroSized,
    NotInHeap,
    NotAtBlockStart,
}

impl Early {
    /// The call's answer.
    fn answer(self) -> Result<Outcome, FinalizerError> {
        match self {
            Early::ZeroSized => Ok(Outcome::ZeroSized),
            Early::NotInHeap => Ok(Outcome::NotInHeap),
            Early::NotAtBlockStart => Err(FinalizerError::NotAtBlockStart),
        }
    }
}

/// Rows 3–5 for an object of element size `size`: the span the object `obj` is in, or
/// why the call stops there. (`always`: left to the inliner, a typed `set_finalizer`
/// inlined into its caller called it out of line, 5 instructions more per call.)
#[inline(always)]
fn locate(
    size: usize,
    noscan: bool,
    ptr: *const u8,
    obj: *mut u8,
) -> Result<&'static crate::mspan::Span, Early> {
    // Row 3.
    if size == 0 {
        return Err(Early::ZeroSized);
    }
    // Row 4: outside the heap the object is null (`Gc::parts`), and no heap's (an arena
    // exists only once its heap has claimed it, so a span implies a heap).
    let Some(span) = span_of(obj as usize).filter(|s| s.is_allocated(s.index_of(obj as usize)))
    else {
        return Err(Early::NotInHeap);
    };
    // Row 5. A handle's address right after the header is its value's start (were the
    // value over-aligned, that address would be padding, where no handle points); an
    // address inside the object of a tiny-eligible type is allowed. Only other addresses
    // need the object's type, a read of its header (a cache miss in a loop of sets).
    let off = (ptr as usize).wrapping_sub(obj as usize);
    if off == HEADER || (noscan && size < 16 && off < span.elem_size) || starts_value(ptr, obj) {
        Ok(span)
    } else {
        Err(Early::NotAtBlockStart)
    }
}

/// Row 5's slow part: is `ptr` where the value of the object `obj` (allocated, kept
/// alive by the caller) starts?
#[cold]
#[inline(never)]
fn starts_value(ptr: *const u8, obj: *mut u8) -> bool {
    // SAFETY: `obj` is the header of an allocated object (`locate` checked) that the
    // caller's handle keeps alive.
    let ty = unsafe { crate::slot::header(obj) }
        .ty
        .load(Ordering::Relaxed);
    let data = if ty.is_null() {
        obj.wrapping_add(HEADER)
    } else {
        // SAFETY: a non-null header type is the `&'static Type` malloc stored.
        obj.wrapping_add(data_offset(unsafe { &*ty }.align()))
    };
    ptr == data.cast_const()
}

/// Row 6: removes the record at `ptr`, if any. (No mutator section: the span's lock
/// excludes the collector, and this thread never waits for the world while holding it.)
/// The removed finalizer is dropped once the lock is released: dropping what it captured
/// runs user code, which may set or clear a finalizer in this very span.
fn remove(span: &crate::mspan::Span, ptr: *const u8) -> Outcome {
    let mut sp = span.specials.lock();
    let removed = sp
        .binary_search_by_key(&(ptr as usize), |r| r.ptr as usize)
        .ok()
        .map(|i| sp.remove(i));
    span.set_has_specials(!sp.is_empty());
    drop(sp);
    drop(removed);
    Outcome::Removed
}

/// Rows 10 and 11, then the record: `func` at `ptr`, for an object of pointer type `oty`.
///
/// The common case, a record after the span's last one in a vector with room, is inline
/// and small; the rest (a new vector, an insertion in the middle, a refusal) is out of
/// line.
#[inline]
fn insert(
    span: &'static crate::mspan::Span,
    ptr: *const u8,
    func: impl FnOnce() -> Func,
    oty: &'static Type,
    send_sync_known: bool,
) -> Result<Outcome, FinalizerError> {
    thread::start();
    let mut sp = span.specials.lock();
    let appends = sp.len() < sp.capacity() && sp.last().is_some_and(|r| r.ptr < ptr);
    if !(appends && send_sync_known) {
        return insert_slow(sp, span, ptr, func(), oty, send_sync_known);
    }
    sp.push(Record {
        ptr,
        func: func(),
        obj_ty: oty,
    });
    Ok(Outcome::Set)
}

/// `insert` for every case but an append to a vector with room, with the span's lock.
#[cold]
#[inline(never)]
fn insert_slow(
    mut sp: crate::spin::SpinGuard<'_, Vec<Record>>,
    span: &'static crate::mspan::Span,
    ptr: *const u8,
    func: Func,
    oty: &'static Type,
    send_sync_known: bool,
) -> Result<Outcome, FinalizerError> {
    if sp.capacity() == 0 {
        // The span's first record (or first since its records were queued as a run).
        if let Some(v) = queue::VecPool::take() {
            *sp = v;
        }
    }
    // Sorted by address; records set in allocation order append at the end.
    let at = match sp.last() {
        Some(r) if (r.ptr as usize) < ptr as usize => Err(sp.len()),
        _ => sp.binary_search_by_key(&(ptr as usize), |r| r.ptr as usize),
    };
    let Err(at) = at else {
        // Row 10 (`func` is dropped after the lock, a parameter outliving the guard).
        drop(sp);
        return Err(FinalizerError::AlreadySet);
    };
    // Row 11.
    if !send_sync_known && !oty.is_send_sync() {
        drop(sp);
        return Err(FinalizerError::NotSendSync {
            ty: oty.to_string(),
        });
    }
    let record = Record {
        ptr,
        func,
        obj_ty: oty,
    };
    if at == sp.len() {
        sp.push(record);
    } else {
        sp.insert(at, record);
    }
    span.set_has_specials(true);
    Ok(Outcome::Set)
}

/// The parts of a handle held in a pointer-kind `Value`: the address it points at and the
/// object it counts on, null outside the heap (gc-core's `Gc` representation, which named
/// pointer newtypes share).
fn handle_parts(v: &Value) -> (*const u8, *mut u8) {
    // SAFETY: a pointer-kind value holds a handle to a sized element, and lives for the
    // call.
    unsafe { handle_parts_at(v.as_ptr()) }
}

/// `handle_parts` of the handle at `p`.
///
/// # Safety
/// `p` must point to a live handle to a sized element (a value of a pointer-kind type:
/// one handle word, whatever the element, which a `Gc<u8>` reads the same way).
unsafe fn handle_parts_at(p: *const u8) -> (*const u8, *mut u8) {
    // SAFETY: the caller's contract; the reference does not outlive the call.
    let h = unsafe { &*p.cast::<Gc<u8>>() };
    h.parts()
}

/// Keeps `x` (and what it keeps) alive until this call: Go's `runtime.KeepAlive`. A
/// finalizer may run as soon as the last handle to its object is gone; call this after
/// the last use that needs the object, when that use goes through something other than
/// the handle (a raw pointer, a file descriptor the object owns). It does not synchronize
/// with the finalizer (see [`set_finalizer`]).
#[inline(never)]
pub fn keep_alive<T: ?Sized>(x: &T) {
    core::hint::black_box(x);
}

/// The sweeper's first step (Go's two-pass rule): every object with records that marking
/// left unmarked is resurrected (marked, so this cycle keeps it and what it points to) and
/// all its records are queued, each entry holding one count on it, into `out`. World
/// stopped; the entries are handed to the finalizer thread in parts as they are gathered.
/// From span `*cursor` on, until `budget` is spent; returns whether it is done. A step of
/// the cycle (`mgc`): mutators may run between steps, and what they do touches only live
/// (marked or black) objects' records, which it leaves.
pub(crate) fn resurrect(
    heap: &'static crate::mheap::MHeap,
    spans: &[crate::mspan::SpanPtr],
    cursor: &mut usize,
    out: &mut queue::FinQueue,
    budget: &mut crate::mgcmark::Budget,
) -> bool {
    while let Some(s) = spans.get(*cursor).map(|s| s.get()) {
        *cursor += 1;
        if !s.has_specials() {
            if !budget.go_on(1) {
                break;
            }
            continue;
        }
        let mut sp = s.specials.lock();
        // The records looked at: the step's units of work.
        let work = sp.len() as u32 + 1;
        let index = |r: &Record| s.index_of(r.ptr as usize);
        // Marks the record's object and gives the entry its count.
        let resurrect_one = |r: &Record| {
            let i = index(r);
            s.mark(i);
            // SAFETY: a record's object is allocated (records go only with their object).
            let count = &unsafe { crate::slot::header(s.slot(i)) }.count;
            // A plain increment: the object was unreachable, so no other thread holds a
            // handle to it (the finalizer thread gets it only once it is queued), and the
            // world is stopped.
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        };
        if !s.any_marked() {
            // Nothing in the span is live (a burst of garbage), which the mark bits tell
            // without reading the records: all of them go, the vector handed to the queue
            // as it is.
            for (i, r) in sp.iter().enumerate() {
                // The objects' headers are cold, and so are the records: start loading a
                // later object's line, and the record that names it further on.
                if let Some(ahead) = sp.get(i + PREFETCH_AHEAD) {
                    crate::mem::prefetch(ahead.ptr);
                }
                crate::mem::prefetch(sp.as_ptr().wrapping_add(i + 4 * PREFETCH_AHEAD).cast());
                resurrect_one(r);
            }
            out.push_run(core::mem::take(&mut *sp));
        } else if sp.iter().any(|r| !s.is_marked(index(r))) {
            // Records are sorted by address, so a tiny block's records are adjacent: once
            // the first of them resurrects the block (marks it), the rest are still its
            // dead object's (all records of a dead object go in this cycle).
            let mut resurrected: Option<usize> = None;
            let dead = sp.extract_if(.., |r| {
                let i = index(r);
                if resurrected != Some(i) {
                    if s.is_marked(i) {
                        return false;
                    }
                    resurrected = Some(i);
                }
                true
            });
            for r in dead {
                resurrect_one(&r);
                out.push(r);
            }
        } else {
            drop(sp);
            if !budget.go_on(work) {
                break;
            }
            continue;
        }
        s.set_has_specials(!sp.is_empty());
        drop(sp);
        if out.len >= HANDOFF_EVERY {
            enqueue(heap, out.take_filled());
        }
        if !budget.go_on(work) {
            break;
        }
    }
    *cursor >= spans.len()
}

/// An empty batch of finalizers, for `resurrect` to fill.
pub(crate) fn batch() -> queue::FinQueue {
    thread::batch()
}

/// How many records ahead resurrection and the finalizer thread prefetch an object (the
/// line its record's address lies in, with its header or just after it), so that the
/// misses on cold objects overlap: the finalizer thread's loop ran a quarter slower
/// waiting for each in turn.
pub(crate) const PREFETCH_AHEAD: usize = 8;

/// Entries a collection gathers before it hands them to the finalizer thread, which runs
/// them while the collection goes on (as Go's sweeper wakes the finalizer goroutine):
/// 16 blocks, 1 360 entries, so a million finalizers take the hand-off's lock some 700
/// times while the thread starts on the first ones early in the sweep.
const HANDOFF_EVERY: usize = 16 * queue::PER_BLOCK;

/// Hands finalizers (and cleanups) a cycle of `heap` found to whoever runs them: the
/// finalizer thread, or, for a heap made with `HeapConfig::finalizers_at_safe_points`
/// that still has a `Heap`, the heap's pending queue for `Heap::run_finalizers`. A
/// retired heap's go to the thread (its last `Heap` moved what was pending there too:
/// no one can run them at a safe point any more).
pub(crate) fn enqueue(heap: &'static crate::mheap::MHeap, batch: queue::FinQueue) {
    if heap.config().finalizers_at_safe_points && heap.handles.load(Ordering::Acquire) > 0 {
        thread::count_queued(batch.len);
        crate::mheap::lock(&PENDING)
            .entry(heap.id)
            .or_default()
            .append(batch);
    } else {
        thread::enqueue(batch);
    }
}

/// `Heap::run_finalizers`: runs `heap`'s pending finalizers and cleanups on this thread,
/// in Go's order, each contained as on the finalizer thread; returns how many ran. What
/// they queue in turn (a finalizer that makes finalizable garbage, collected meanwhile)
/// waits for the next call.
pub(crate) fn run_pending(heap: &'static crate::mheap::MHeap, api: &str) -> usize {
    crate::world::assert_not_collecting(api);
    // Finalizers are user code: never inside a section (a `GcCell` guard's), where one
    // that waits for the finalizer thread, itself waiting for this section, never returns.
    assert!(
        !crate::world::in_section(),
        "{api}: called while this thread holds a GcCell write guard (finalizers run outside every section)"
    );
    assert!(
        !RUNNING_PENDING.get(),
        "{api}: called from a finalizer it is running (finalizers run one at a time, in order)"
    );
    let Some(batch) = take_pending(heap) else {
        return 0;
    };
    RUNNING_PENDING.set(true);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            RUNNING_PENDING.set(false);
        }
    }
    let _reset = Reset;
    thread::run_pending(batch)
}

/// Hands `heap`'s pending finalizers to the finalizer thread (its last `Heap` is gone).
pub(crate) fn pending_to_thread(heap: &'static crate::mheap::MHeap) {
    if let Some(batch) = take_pending(heap) {
        thread::requeue(batch);
    }
}

/// Entries pending in `heap`'s safe-point queue.
pub(crate) fn pending(heap: &'static crate::mheap::MHeap) -> usize {
    crate::mheap::lock(&PENDING)
        .get(&heap.id)
        .map_or(0, |q| q.len)
}

/// The safe-point heaps' pending entries (`HeapConfig::finalizers_at_safe_points`), by
/// heap id; each finalizer's entry holds a count on its object. Kept here, not in
/// `MHeap`, which sits below this layer. A leaf lock, taken by a collection with the world
/// stopped and by a program's thread outside every section.
static PENDING: std::sync::Mutex<BTreeMap<u64, queue::FinQueue>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Takes `heap`'s pending entries, if any.
fn take_pending(heap: &'static crate::mheap::MHeap) -> Option<queue::FinQueue> {
    crate::mheap::lock(&PENDING)
        .remove(&heap.id)
        .filter(|q| q.len > 0)
}

std::thread_local! {
    /// This thread is inside `Heap::run_finalizers` (which must not nest).
    static RUNNING_PENDING: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Finalizers queued, run and panicked since the process started (all heaps).
/// Cleanups queued and run since the process started (all heaps).
pub(crate) fn cleanup_counters() -> (u64, u64) {
    (
        cleanup::QUEUED.load(Ordering::Relaxed),
        cleanup::RUN.load(Ordering::Relaxed),
    )
}

/// Finalizers (with cleanups) queued, run and panicked since the process started.
pub(crate) fn counters() -> (u64, u64, u64) {
    (
        thread::QUEUED.load(Ordering::Relaxed),
        thread::RUN.load(Ordering::Relaxed),
        thread::PANICKED.load(Ordering::Relaxed),
    )
}
