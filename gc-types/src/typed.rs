//! `Typed`: the link from a Rust type to its descriptor, and the descriptors of the
//! standard types fing knows (primitives, `String`, arrays, tuples, function pointers,
//! the common containers).
//!
//! Every `Typed` impl here is also a `Trace` impl (`Trace: Typed`): a value fing stores
//! must be described, and a described value must say where its handles are. Containers are
//! `Send`/`Sync` exactly when their parts are ([`SendSync::Structural`]).

use core::marker::PhantomData;
use core::mem::{offset_of, size_of};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crate::kind::Kind;
use crate::trace::{Trace, Tracer};
use crate::ty::{Field, PtrMask, SendSync, Type, TypeRef};
use crate::value::Value;

/// A Rust type with a runtime type descriptor.
///
/// # Safety
/// `TYPE` must describe `Self` exactly: its size, alignment, kind, identity
/// (`TypeId::of::<Self>()`), drop glue, and the per-kind parts (see [`Type`]); and the
/// hidden helpers, when overridden, must keep the frame layout of `RESULTS`. Derive it with
/// `#[derive(Trace)]`, or build the descriptor with [`Type::rust`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no fing type descriptor: it does not implement `Typed`",
    label = "not `Typed`",
    note = "`#[derive(Trace)]` derives `Typed` too"
)]
pub unsafe trait Typed: Sized + 'static {
    /// The descriptor.
    const TYPE: &'static Type;

    /// The result list this type stands for as a function's return type: itself, except
    /// `()` (no results) and tuples (one result per element).
    #[doc(hidden)]
    const RESULTS: &'static [TypeRef] = &[TypeRef::of::<Self>()];

    /// Writes `self` as the result list `RESULTS` into a frame.
    ///
    /// # Safety
    /// `frame + offsets[i]` must be valid for writes of result `i`, suitably aligned,
    /// with `offsets.len() == RESULTS.len()`.
    #[doc(hidden)]
    unsafe fn __write_results(self, frame: *mut u8, offsets: &[usize]) {
        // SAFETY: the caller guarantees the slot of result 0 (which is `Self`) is valid.
        unsafe { frame.wrapping_add(offsets[0]).cast::<Self>().write(self) }
    }

    /// Makes a `Value` of `self` (function pointers become `Func`s).
    #[doc(hidden)]
    fn __into_value(self) -> Value {
        Value::from_typed(self)
    }
}

const SEND_SYNC: SendSync = SendSync::Known {
    send: true,
    sync: true,
};

macro_rules! leaf {
    ($($t:ty => $kind:ident, $name:literal;)*) => {$(
        // SAFETY: `Type::rust::<$t>` takes size, align, identity and drop glue from the
        // compiler; a primitive has no parts, no handles, and is Send + Sync.
        unsafe impl Typed for $t {
            const TYPE: &'static Type =
                // SAFETY: the impl's own argument: this descriptor describes the type exactly.
                &unsafe { Type::rust::<$t>(Kind::$kind) }.named($name).with_send_sync(SEND_SYNC);
        }
        // SAFETY: a primitive never holds a handle; its drop is nothing, or (a string) the
        // global allocator's deallocation.
        unsafe impl Trace for $t {
            const NO_SCAN: bool = true;
            const DROP_ONLY_FREES: bool = true;
            #[inline]
            fn trace(&self, _: &mut Tracer) {}
        }
    )*};
}

leaf! {
    bool => Bool, "bool";
    char => Char, "char";
    i8 => I8, "i8";
    i16 => I16, "i16";
    i32 => I32, "i32";
    i64 => I64, "i64";
    i128 => I128, "i128";
    isize => Isize, "isize";
    u8 => U8, "u8";
    u16 => U16, "u16";
    u32 => U32, "u32";
    u64 => U64, "u64";
    u128 => U128, "u128";
    usize => Usize, "usize";
    f32 => F32, "f32";
    f64 => F64, "f64";
    String => String, "String";
    Box<str> => String, "Box<str>";
    std::sync::atomic::AtomicBool => Opaque, "AtomicBool";
    std::sync::atomic::AtomicI32 => Opaque, "AtomicI32";
    std::sync::atomic::AtomicI64 => Opaque, "AtomicI64";
    std::sync::atomic::AtomicU32 => Opaque, "AtomicU32";
    std::sync::atomic::AtomicU64 => Opaque, "AtomicU64";
    std::sync::atomic::AtomicUsize => Opaque, "AtomicUsize";
    std::sync::atomic::AtomicIsize => Opaque, "AtomicIsize";
}

// SAFETY: `()` is the empty tuple: no parts, no handles, Send + Sync; as a result type it
// is the empty result list and writes nothing.
unsafe impl Typed for () {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<()>(Kind::Tuple) }.with_send_sync(SEND_SYNC);
    const RESULTS: &'static [TypeRef] = &[];
    unsafe fn __write_results(self, _: *mut u8, _: &[usize]) {}
}
// SAFETY: `()` holds nothing.
unsafe impl Trace for () {
    const NO_SCAN: bool = true;
    #[inline]
    fn trace(&self, _: &mut Tracer) {}
}

macro_rules! tuple {
    ($($n:tt $t:ident),+) => {
        // SAFETY: fields and offsets come from `offset_of!` on `Self`; Send/Sync is
        // structural over the fields, as for the compiler; as a result type a tuple is a
        // result list, written element by element at the caller's offsets.
        unsafe impl<$($t: Typed + Trace),+> Typed for ($($t,)+) {
            // SAFETY: the impl's own argument: this descriptor describes the type exactly.
            const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Tuple) }.with_fields(&[
                $(Field { name: stringify!($n), offset: offset_of!(Self, $n),
                          ty: TypeRef::of::<$t>(), untraced: false },)+
            ]);
            const RESULTS: &'static [TypeRef] = &[$(TypeRef::of::<$t>()),+];
            unsafe fn __write_results(self, frame: *mut u8, offsets: &[usize]) {
                $(
                    // SAFETY: the caller guarantees the slot of result $n (a `$t`) is valid.
                    unsafe { frame.wrapping_add(offsets[$n]).cast::<$t>().write(self.$n) };
                )+
            }
        }
        // SAFETY: a tuple owns its elements; each is traced once.
        unsafe impl<$($t: Trace),+> Trace for ($($t,)+) {
            const NO_SCAN: bool = true $(&& $t::NO_SCAN)+;
            const HANDLES_ONLY_DROP: bool = true $(&& $t::HANDLES_ONLY_DROP)+;
            const DROP_ONLY_FREES: bool = true $(&& $t::DROP_ONLY_FREES)+;
            const PTRMASK: PtrMask = PtrMask::of_fields(
                size_of::<Self>(), &[$((offset_of!(Self, $n), $t::PTRMASK)),+]);
            #[inline]
            fn trace(&self, tracer: &mut Tracer) {
                $(self.$n.trace(tracer);)+
            }
        }
    };
}
tuple!(0 A);
tuple!(0 A, 1 B);
tuple!(0 A, 1 B, 2 C);
tuple!(0 A, 1 B, 2 C, 3 D);

const fn array_mask(elem: PtrMask, elem_size: usize, n: usize) -> PtrMask {
    let word = size_of::<usize>();
    match elem {
        PtrMask::Small(0) => PtrMask::EMPTY,
        PtrMask::Small(m) => {
            if !elem_size.is_multiple_of(word) || elem_size * n > 64 * word {
                return PtrMask::Unknown;
            }
            let mut acc = 0u64;
            let mut i = 0;
            while i < n {
                acc |= m << (i * elem_size / word);
                i += 1;
            }
            PtrMask::Small(acc)
        }
        _ => PtrMask::Unknown,
    }
}

// SAFETY: kind array with element `T` and length `N`; Send/Sync structural over `T`.
unsafe impl<T: Trace, const N: usize> Typed for [T; N] {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Array) }
        .with_elem(TypeRef::of::<T>())
        .with_len(N);
}
// SAFETY: an array owns its elements; each is traced once.
unsafe impl<T: Trace, const N: usize> Trace for [T; N] {
    const NO_SCAN: bool = N == 0 || T::NO_SCAN;
    const PTRMASK: PtrMask = array_mask(T::PTRMASK, size_of::<T>(), N);
    const HANDLES_ONLY_DROP: bool = N == 0 || T::HANDLES_ONLY_DROP;
    const DROP_ONLY_FREES: bool = N == 0 || T::DROP_ONLY_FREES;
    #[inline]
    fn trace(&self, tracer: &mut Tracer) {
        if !T::NO_SCAN {
            for x in self {
                x.trace(tracer);
            }
        }
    }
}

// SAFETY: kind slice with element `T`; Send/Sync structural over `T`.
unsafe impl<T: Trace> Typed for Vec<T> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type =
        &unsafe { Type::rust::<Self>(Kind::Slice) }.with_elem(TypeRef::of::<T>());
}
// SAFETY: a `Vec` owns its elements; each is traced once. Its drop is theirs and a
// deallocation.
unsafe impl<T: Trace> Trace for Vec<T> {
    const NO_SCAN: bool = T::NO_SCAN;
    const DROP_ONLY_FREES: bool = T::DROP_ONLY_FREES;
    #[inline]
    fn trace(&self, tracer: &mut Tracer) {
        if !T::NO_SCAN {
            for x in self {
                x.trace(tracer);
            }
        }
    }
}

// SAFETY: as `Vec<T>`.
unsafe impl<T: Trace> Typed for VecDeque<T> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Opaque) }
        .named("VecDeque")
        .with_args(&[TypeRef::of::<T>()]);
}
// SAFETY: a `VecDeque` owns its elements; each is traced once. Its drop is theirs and a
// deallocation.
unsafe impl<T: Trace> Trace for VecDeque<T> {
    const NO_SCAN: bool = T::NO_SCAN;
    const DROP_ONLY_FREES: bool = T::DROP_ONLY_FREES;
    fn trace(&self, tracer: &mut Tracer) {
        if !T::NO_SCAN {
            for x in self {
                x.trace(tracer);
            }
        }
    }
}

// SAFETY: an opaque named generic type; Send/Sync structural over `T` (Box<T> is Send/Sync
// exactly when T is).
unsafe impl<T: Trace> Typed for Box<T> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Opaque) }
        .named("Box")
        .with_args(&[TypeRef::of::<T>()]);
}
// SAFETY: a `Box` owns its content; its drop is the content's and a deallocation.
unsafe impl<T: Trace> Trace for Box<T> {
    const NO_SCAN: bool = T::NO_SCAN;
    const DROP_ONLY_FREES: bool = T::DROP_ONLY_FREES;
    #[inline]
    fn trace(&self, tracer: &mut Tracer) {
        (**self).trace(tracer);
    }
}

// SAFETY: an enum named `Option` with its type argument; Send/Sync structural over `T`.
unsafe impl<T: Trace> Typed for Option<T> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Enum) }
        .named("Option")
        .with_args(&[TypeRef::of::<T>()])
        .with_variants(&["None", "Some"]);
}
// SAFETY: an `Option` owns its content, traced once when present. Its mask is its
// content's when the content promises `None` is zero in the masked words at the same size.
unsafe impl<T: Trace> Trace for Option<T> {
    const NO_SCAN: bool = T::NO_SCAN;
    const PTRMASK: PtrMask = if T::NO_SCAN {
        PtrMask::EMPTY
    } else if T::NONE_IS_NULL && size_of::<Option<T>>() == size_of::<T>() {
        T::PTRMASK
    } else {
        PtrMask::Unknown
    };
    const HANDLES_ONLY_DROP: bool = T::HANDLES_ONLY_DROP;
    const DROP_ONLY_FREES: bool = T::DROP_ONLY_FREES;
    #[inline]
    fn trace(&self, tracer: &mut Tracer) {
        if let Some(x) = self {
            x.trace(tracer);
        }
    }
}

// SAFETY: an enum named `Result`; Send/Sync structural over `T` and `E`.
unsafe impl<T: Trace, E: Trace> Typed for Result<T, E> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Enum) }
        .named("Result")
        .with_args(&[TypeRef::of::<T>(), TypeRef::of::<E>()])
        .with_variants(&["Ok", "Err"]);
}
// SAFETY: a `Result` owns whichever side it holds, traced once.
unsafe impl<T: Trace, E: Trace> Trace for Result<T, E> {
    const NO_SCAN: bool = T::NO_SCAN && E::NO_SCAN;
    const HANDLES_ONLY_DROP: bool = T::HANDLES_ONLY_DROP && E::HANDLES_ONLY_DROP;
    const DROP_ONLY_FREES: bool = T::DROP_ONLY_FREES && E::DROP_ONLY_FREES;
    fn trace(&self, tracer: &mut Tracer) {
        match self {
            Ok(x) => x.trace(tracer),
            Err(e) => e.trace(tracer),
        }
    }
}

macro_rules! map {
    ($($m:ident $name:literal);*) => {$(
        // SAFETY: an opaque named generic type with the std hasher or ordering; Send/Sync
        // structural over keys and values.
        unsafe impl<K: Trace, V: Trace> Typed for $m<K, V> {
            // SAFETY: the impl's own argument: this descriptor describes the type exactly.
            const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Opaque) }
                .named($name)
                .with_args(&[TypeRef::of::<K>(), TypeRef::of::<V>()]);
        }
        // SAFETY: a map owns its keys and values; each is traced once. Its drop is theirs
        // and deallocations (the default hasher has none).
        unsafe impl<K: Trace, V: Trace> Trace for $m<K, V> {
            const NO_SCAN: bool = K::NO_SCAN && V::NO_SCAN;
            const DROP_ONLY_FREES: bool = K::DROP_ONLY_FREES && V::DROP_ONLY_FREES;
            fn trace(&self, tracer: &mut Tracer) {
                if !Self::NO_SCAN {
                    for (k, v) in self {
                        k.trace(tracer);
                        v.trace(tracer);
                    }
                }
            }
        }
    )*};
}
map!(HashMap "HashMap"; BTreeMap "BTreeMap");

macro_rules! set {
    ($($s:ident $name:literal);*) => {$(
        // SAFETY: an opaque named generic type; Send/Sync structural over the elements.
        unsafe impl<K: Trace> Typed for $s<K> {
            const TYPE: &'static Type =
                // SAFETY: the impl's own argument: this descriptor describes the type exactly.
                &unsafe { Type::rust::<Self>(Kind::Opaque) }.named($name).with_args(&[TypeRef::of::<K>()]);
        }
        // SAFETY: a set owns its elements; each is traced once. Its drop is theirs and
        // deallocations.
        unsafe impl<K: Trace> Trace for $s<K> {
            const NO_SCAN: bool = K::NO_SCAN;
            const DROP_ONLY_FREES: bool = K::DROP_ONLY_FREES;
            fn trace(&self, tracer: &mut Tracer) {
                if !Self::NO_SCAN {
                    for k in self {
                        k.trace(tracer);
                    }
                }
            }
        }
    )*};
}
set!(HashSet "HashSet"; BTreeSet "BTreeSet");

// SAFETY: `PhantomData<T>` holds nothing; it is Send/Sync exactly when `T` is (structural).
unsafe impl<T: Typed> Typed for PhantomData<T> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Opaque) }
        .named("PhantomData")
        .with_args(&[TypeRef::of::<T>()]);
}
// SAFETY: `PhantomData` holds no value, so no handle.
unsafe impl<T: Typed> Trace for PhantomData<T> {
    const NO_SCAN: bool = true;
    #[inline]
    fn trace(&self, _: &mut Tracer) {}
}

macro_rules! fnptr {
    ($($a:ident),*) => {
        // SAFETY: kind func, unnamed, with the parameter types and `R`'s result list; a
        // function pointer is Send + Sync and holds no handle. As a `Value` it becomes a
        // `Func` (every func-kind `Value` holds a `Func`).
        unsafe impl<$($a: Typed,)* R: Typed> Typed for fn($($a),*) -> R {
            // SAFETY: the impl's own argument: this descriptor describes the type exactly.
            const TYPE: &'static Type = &unsafe { Type::rust::<Self>(Kind::Func) }
                .with_signature(&[$(TypeRef::of::<$a>()),*], R::RESULTS, false)
                .with_send_sync(SEND_SYNC);
            fn __into_value(self) -> Value {
                Value::from(crate::func::Func::from_fn_ptr(self))
            }
        }
        // SAFETY: a function pointer holds no handle.
        unsafe impl<$($a: Typed,)* R: Typed> Trace for fn($($a),*) -> R {
            const NO_SCAN: bool = true;
            #[inline]
            fn trace(&self, _: &mut Tracer) {}
        }
    };
}
fnptr!();
fnptr!(A);
fnptr!(A, B);
fnptr!(A, B, C);
