//! fing: a garbage-collected heap for Rust with Go-style, reflection-checked finalizers.
//!
//! A [`Gc<T>`](Gc) is a counted handle to an object in a heap, like an `Arc<T>`: it is
//! `Send` and `Sync` when `T` is, it has no lifetime, and the object is freed when its last
//! handle goes. Cycles of handles are found by a collection ([`collect`], or one the heap
//! runs as it grows). A finalizer is set on one object at run time
//! ([`Gc::set_finalizer`], or [`set_finalizer`] with run-time values, Go's
//! `runtime.SetFinalizer`), its argument type checked against the object's type; it runs
//! on one dedicated thread, in dependency order, after a collection has found the object
//! unreachable and resurrected it for one cycle.
//!
//! ```
//! use fing::{Func, Gc, GcCell, Outcome, Trace, Value};
//!
//! #[fing::interface]
//! pub trait Closer: Send + Sync {
//!     fn close(&self);
//! }
//!
//! #[derive(Trace)]
//! #[gc(implements(Closer))]
//! struct File {
//!     fd: i32,
//!     next: GcCell<Option<Gc<File>>>,
//! }
//!
//! impl Closer for File {
//!     fn close(&self) {}
//! }
//!
//! # fn main() -> Result<(), fing::FinalizerError> {
//! let before = fing::stats().finalizers_run;
//! let g = Gc::new(File { fd: 4, next: GcCell::new(None) });
//! // Dynamic: the parameter is an interface the object implements (Go's rules, at run time).
//! let out = fing::set_finalizer(Value::from(g.clone()), Func::new(|c: Gc<dyn Closer>| c.close()))?;
//! assert_eq!(out, Outcome::Set);
//! let f = Gc::new(File { fd: 3, next: GcCell::new(Some(g.clone())) });
//! f.set_finalizer(|f: Gc<File>| f.close())?; // typed: the compiler checks the parameter
//! drop((f, g));
//! // `f` points to `g`: `f`'s finalizer runs first, and `g` stays alive for it.
//! fing::collect();
//! fing::wait_finalizers();
//! assert_eq!(fing::stats().finalizers_run - before, 1);
//! // `f` is gone now: the next collection finds `g`.
//! fing::collect();
//! fing::wait_finalizers();
//! assert_eq!(fing::stats().finalizers_run - before, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # The page
//!
//! - Handles and cells: [`Gc`], [`Weak`] (a handle that does not keep its object),
//!   [`Ephemeron`] and [`WeakMap`] (values kept exactly while their keys live), [`GcCell`]
//!   (the mutable cell the collector can trust) with its guards and errors.
//! - What the heap knows about types: [`Trace`] (derive it: it also derives [`Typed`], the
//!   type descriptor), [`Type`], [`Kind`], [`Value`] (Go's `interface{}`), [`Func`] (a
//!   function value), and [`macro@interface`] for traits usable as finalizer parameters.
//! - Heaps: [`Heap`] and [`HeapConfig`] for a heap of one's own, [`collect`] and [`stats`]
//!   for the default heap, [`MemStats`], [`AllocError`].
//! - Finalizers and cleanups: [`set_finalizer`] (its docs hold the whole contract),
//!   [`Gc::add_cleanup`] and [`add_cleanup`] with [`Cleanup`], [`wait_finalizers`],
//!   [`keep_alive`], [`Outcome`], [`FinalizerError`]; [`Heap::run_finalizers`] for a heap
//!   whose finalizers run at the program's safe points; [`set_finalizer_panic_hook`] to
//!   be told which finalizer panicked ([`FinalizerPanic`]).
//! - [`reflect`]: building types at run time, and Go's type rules; [`frame`]: calling
//!   functions through frames (what an interpreter implements for its own functions).
//!
//! How fing is built (its layers, the rooting model, the world lock, freeing at count
//! zero, the collection cycle, the finalizer path) is `docs/design.md` in the repository.

pub use gc_core::{
    add_cleanup, collect, keep_alive, set_finalizer, set_finalizer_panic_hook, stats,
    take_finalizer_panic_hook, wait_finalizers, wait_finalizers_timeout, AllocError, AllowDrop,
    BorrowError, BorrowMutError, Cleanup, DropOnlyFrees, Ephemeron, FinalizerError, FinalizerPanic,
    FinalizerStuck, Func, Gc, GcCell, GcRef, GcRefMut, Heap, HeapConfig, Holder, Kind, MemStats,
    Outcome, Trace, Tracer, Type, Typed, Value, Weak, WeakMap, MAX_ALIGN,
};
pub use gc_derive::{interface, Trace};

/// Run-time types: what an interpreter uses to describe its own values to the heap and to
/// the `set_finalizer` checks, and Go's type rules.
///
/// [`TypeBuilder`] makes pointer, array, func, interface and struct types at run time,
/// checked as it builds them (the one safe way to make a [`Type`]): `Value`s and `Func`s
/// of built types, and finalizer signatures an interpreter defines, are checked and
/// called by them. [`rules`] are Go's identity, assignability and finalizer-parameter
/// rules over descriptors. Objects of built struct and array types are allocated zeroed
/// by [`Heap::alloc_zeroed`](crate::Heap::alloc_zeroed) (Go's `reflect.New`), and their
/// fields read and written by [`field`](crate::reflect::field) and
/// [`set_field`](crate::reflect::set_field) with Go's assignability.
pub mod reflect {
    pub use gc_core::{
        field, rules, set_field, Field, Itab, Method, PtrMask, ReflectError, SendSync,
        StructBuilder, TypeBuilder, TypeIdent, TypeRef, WriteHandleFn,
    };
}

/// Calling function values through frames (Go's `reflectcall` frames).
///
/// A [`Func`] is called with its arguments laid out in a frame
/// ([`FrameLayout`]: Go's layout, each slot aligned, results after the arguments); a
/// function an interpreter defines implements [`FrameFn`] and reads its arguments from,
/// and writes its results to, a [`Frame`]. [`FrameBuf`] is a reusable frame. A call that
/// cannot be made ends in a [`CallError`] or [`FrameError`], never a panic.
pub mod frame {
    pub use gc_core::{results_size, CallError, Frame, FrameBuf, FrameError, FrameFn, FrameLayout};
}

// Earlier paths of the items now in `reflect` and `frame`, kept so that code written
// against them still builds; the public page shows each item once, in its module.
#[doc(hidden)]
pub use frame::{results_size, CallError, Frame, FrameBuf, FrameError, FrameFn, FrameLayout};
#[doc(hidden)]
pub use reflect::{
    rules, Field, Itab, Method, PtrMask, SendSync, StructBuilder, TypeBuilder, TypeIdent, TypeRef,
};

/// Test hooks (Go's `export_test.go`): not part of the API.
#[doc(hidden)]
pub use gc_core::{find_object, resident_bytes, GcTarget};

/// Items only generated code may name.
#[doc(hidden)]
pub use gc_core::__private;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
