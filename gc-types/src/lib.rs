//! gc-types: fing's reflection model. Runtime type descriptors ([`Type`], Go's `_type`),
//! the empty interface ([`Value`]), function values called through frames ([`Func`], Go's
//! `reflectcall` frames), and Go's type rules for `set_finalizer` ([`rules`]).
//!
//! This crate has no heap state. It describes values; gc-core stores them. Who trusts a
//! descriptor: the collector (size, noscan bit, trace and drop glue), the `set_finalizer`
//! checks (kind, name, element, signature, method set, implemented interfaces) and the
//! frame invoker (sizes and alignments, which fix frame layouts). A wrong descriptor is
//! memory unsafety, so only `unsafe` code makes one: [`Typed`] and [`Trace`] are `unsafe`
//! traits (users get them from `#[derive(Trace)]`), the descriptor constructors
//! ([`Type::rust`], [`Type::untraced`]) and [`Itab::new`] are `unsafe fn`s, and
//! [`TypeBuilder`], the one safe way to make types at run time, builds only from
//! descriptors that exist and checks what it is given. A reflective call that cannot be
//! made ends in a typed error ([`CallError`], [`FrameError`]), never a panic.
//!
//! [`word`] defines the handle word (address, and the distance to the object counted on),
//! which every reader of handles decodes the same way.
//!
//! Layering: the handle type `Gc<T>` lives in gc-core (its clone and drop take part in the
//! world lock), and so does `GcTarget`, through which it gets its descriptors: a sized `T`
//! makes `Gc<T>` an unnamed pointer type, and a `#[fing::interface]` trait makes
//! `Gc<dyn Trait>` an interface type.

mod builder;
mod frame;
mod func;
mod kind;
#[cfg(test)]
mod proptests;
pub mod rules;
mod trace;
mod ty;
mod typed;
mod value;
pub mod word;

pub use builder::{StructBuilder, TypeBuilder};
pub use frame::{results_size, Frame, FrameBuf, FrameError, FrameLayout};
pub use func::{CallError, FrameFn, Func};
pub use kind::Kind;
pub use trace::{AllowDrop, DropOnlyFrees, Trace, Tracer};
pub use ty::{
    AtZero, DropFn, Field, Itab, Method, PtrMask, SendSync, TraceFn, Type, TypeIdent, TypeRef,
    WriteHandleFn,
};
pub use typed::Typed;
pub use value::{Value, NIL};

/// Items only generated code may name.
#[doc(hidden)]
pub mod __private {
    use core::marker::PhantomData;

    pub use core::mem::{offset_of, size_of};

    /// Compile-time questions about a concrete type, answered by inherent associated
    /// constants that exist only when the bound holds, with the trait constants below as
    /// the fallback (method-resolution priority of inherent items).
    #[derive(Debug)]
    pub struct Probe<T: ?Sized>(PhantomData<T>);

    /// Fallback: not `Send`.
    pub trait ProbeSend {
        /// Not `Send`.
        const SEND: bool = false;
    }
    impl<T: ?Sized> ProbeSend for Probe<T> {}
    impl<T: ?Sized + Send> Probe<T> {
        /// `Send`.
        pub const SEND: bool = true;
    }

    /// Fallback: not `Sync`.
    pub trait ProbeSync {
        /// Not `Sync`.
        const SYNC: bool = false;
    }
    impl<T: ?Sized> ProbeSync for Probe<T> {}
    impl<T: ?Sized + Sync> Probe<T> {
        /// `Sync`.
        pub const SYNC: bool = true;
    }

    /// Fallback: a type that is not `Trace` is not known to hold handles.
    pub trait ProbeHandles {
        /// Holds no handles, as far as the compiler can tell.
        const HOLDS_HANDLES: bool = false;
    }
    impl<T: ?Sized> ProbeHandles for Probe<T> {}
    impl<T: crate::Trace> Probe<T> {
        /// A `Trace` type holds handles unless it is noscan.
        pub const HOLDS_HANDLES: bool = !T::NO_SCAN;
    }

    /// Fallback: a drop the compiler cannot see into may run user code.
    pub trait ProbeOnlyFrees {
        /// Not known to only free memory.
        const ONLY_FREES: bool = false;
    }
    impl<T: ?Sized> ProbeOnlyFrees for Probe<T> {}
    impl<T: ?Sized + crate::DropOnlyFrees> Probe<T> {
        /// Promised (`DropOnlyFrees`) to only free memory.
        pub const ONLY_FREES: bool = true;
    }
}
