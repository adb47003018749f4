//! `Value`: Go's `interface{}`, a type descriptor plus data.
//!
//! Representation: the descriptor and two words of data, kept as pointers so that the
//! provenance of a handle or box stored in them survives. A value whose type fits in two
//! words (size ≤ 16, align ≤ 8: every handle, every primitive) is stored inline; a
//! zero-sized one needs no storage at all (its data is a dangling pointer aligned for
//! it); a larger one is boxed. A value of func kind always holds a [`Func`] (boxed),
//! whatever its signature, so the frame invoker finds one callable representation.
//!
//! Invariants: `ty` describes the data exactly; the data is initialised unless the value
//! is nil (`ty` is the nil descriptor). A `Value` may hold a handle to a type that is not
//! `Send`/`Sync` (that is what `set_finalizer` row 11 rejects), so `Value` itself is neither.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{ManuallyDrop, MaybeUninit};
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};

use crate::func::Func;
use crate::kind::Kind;
use crate::trace::{Trace, Tracer};
use crate::ty::{SendSync, Type, TypeIdent};
use crate::Typed;

const INLINE: usize = 2 * core::mem::size_of::<usize>();

/// The descriptor of the nil value (kind `Invalid`, shown as `nil`).
pub static NIL: Type = {
    let mut t = Type::blank(TypeIdent::Runtime(0), Kind::Invalid, 0, 1);
    t.send_sync = SendSync::Known {
        send: true,
        sync: true,
    };
    t
};

/// A dynamically typed value: Go's `interface{}`.
pub struct Value {
    ty: &'static Type,
    data: MaybeUninit<[*mut u8; 2]>,
    _not_send: PhantomData<*const ()>,
}

#[derive(PartialEq, Eq)]
enum Storage {
    Nil,
    /// A zero-sized type: no storage, any alignment.
    Empty,
    Inline,
    Boxed,
    Func,
}

fn storage(ty: &Type) -> Storage {
    match ty.kind() {
        Kind::Invalid => Storage::Nil,
        Kind::Func => Storage::Func,
        _ if ty.size() == 0 => Storage::Empty,
        _ if ty.size() <= INLINE && ty.align() <= core::mem::align_of::<usize>() => Storage::Inline,
        _ => Storage::Boxed,
    }
}

impl Value {
    /// The nil value.
    pub const fn nil() -> Value {
        Value {
            ty: &NIL,
            data: MaybeUninit::uninit(),
            _not_send: PhantomData,
        }
    }

    /// A value of any described type. A function pointer becomes a [`Func`].
    pub fn new<T: Typed>(x: T) -> Value {
        x.__into_value()
    }

    /// Stores `x` with its own descriptor (not for func kinds).
    pub(crate) fn from_typed<T: Typed>(x: T) -> Value {
        assert!(
            T::TYPE.kind() != Kind::Func,
            "fing::Value::new: {} is a func type; func values are made with Func",
            T::TYPE
        );
        let x = ManuallyDrop::new(x);
        // SAFETY: `T::TYPE` describes `T` (Typed's contract) and `x` is a valid `T` whose
        // ownership moves into the value (it is not dropped here).
        unsafe { Value::from_raw(T::TYPE, (&*x as *const T).cast()) }
    }

    /// Moves the value at `src`, of type `ty`, into a new `Value`.
    ///
    /// # Safety
    /// `src` must point to a valid value of type `ty` (not of func kind) whose ownership the
    /// caller gives up: it must not be used or dropped afterwards.
    pub unsafe fn from_raw(ty: &'static Type, src: *const u8) -> Value {
        let mut v = Value {
            ty,
            data: MaybeUninit::uninit(),
            _not_send: PhantomData,
        };
        match storage(ty) {
            Storage::Nil => return Value::nil(),
            Storage::Func => panic!("fing::Value::from_raw: {ty} is a func type"),
            Storage::Empty => {}
            Storage::Inline => {
                // SAFETY: the type fits in the two inline words (checked by `storage`), and
                // `src` is valid for reads of `ty.size()` bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(src, v.data.as_mut_ptr().cast(), ty.size())
                };
            }
            Storage::Boxed => {
                let layout = Layout::from_size_align(ty.size(), ty.align())
                    .expect("fing::Value: descriptor with an impossible layout");
                // SAFETY: a boxed type is larger than the inline words, so `layout` has a
                // non-zero size.
                let p = unsafe { alloc(layout) };
                if p.is_null() {
                    handle_alloc_error(layout);
                }
                // SAFETY: `p` is a fresh allocation of `ty.size()` bytes; `src` is valid for
                // reads of as many.
                unsafe { core::ptr::copy_nonoverlapping(src, p, ty.size()) };
                v.data = MaybeUninit::new([p, core::ptr::null_mut()]);
            }
        }
        v
    }

    /// The dynamic type (the nil descriptor, kind `Invalid`, for nil).
    #[inline]
    pub fn type_of(&self) -> &'static Type {
        self.ty
    }

    /// The kind of the dynamic type.
    #[inline]
    pub fn kind(&self) -> Kind {
        self.ty.kind()
    }

    /// Is this the nil value?
    #[inline]
    pub fn is_nil(&self) -> bool {
        self.ty.kind() == Kind::Invalid
    }

    /// Address of the data (for a func-kind value, of its `Func`). Dangling for nil.
    pub fn as_ptr(&self) -> *const u8 {
        match storage(self.ty) {
            Storage::Nil | Storage::Inline => self.data.as_ptr().cast(),
            // A zero-sized value lives nowhere: any non-null address aligned for it.
            Storage::Empty => core::ptr::without_provenance(self.ty.align()),
            // SAFETY: boxed and func values keep their pointer initialised in word 0.
            Storage::Boxed | Storage::Func => unsafe {
                self.data.assume_init_ref()[0] as *const u8
            },
        }
    }

    /// Takes the value out as a `T`, or gives the value back if it is not a `T`.
    /// (Func-kind values come out with [`Value::into_func`].)
    pub fn downcast<T: Typed>(self) -> Result<T, Value> {
        if self.ty.ident() != T::TYPE.ident() || self.kind() == Kind::Func {
            return Err(self);
        }
        let me = ManuallyDrop::new(self);
        // SAFETY: the identities match, so the data is a valid `T`; `me` is not dropped, so
        // ownership moves to the result.
        let x = unsafe { me.as_ptr().cast::<T>().read() };
        me.free_box();
        Ok(x)
    }

    /// A reference to the data if it is a `T`.
    pub fn downcast_ref<T: Typed>(&self) -> Option<&T> {
        if self.ty.ident() != T::TYPE.ident() || self.kind() == Kind::Func {
            return None;
        }
        // SAFETY: the identities match, so the data is a valid `T`, borrowed from `self`.
        Some(unsafe { &*self.as_ptr().cast::<T>() })
    }

    /// The `Func` of a func-kind value.
    pub fn as_func(&self) -> Option<&Func> {
        (self.kind() == Kind::Func).then(|| {
            // SAFETY: a func-kind value always holds a boxed `Func` (module invariant).
            unsafe { &*self.as_ptr().cast::<Func>() }
        })
    }

    /// Takes the `Func` out of a func-kind value, or gives the value back.
    pub fn into_func(self) -> Result<Func, Value> {
        if self.kind() != Kind::Func {
            return Err(self);
        }
        let me = ManuallyDrop::new(self);
        // SAFETY: a func-kind value holds a `Box<Func>` in word 0 (module invariant); `me`
        // is not dropped, so the box's ownership moves here.
        let b = unsafe { Box::from_raw(me.as_ptr().cast::<Func>().cast_mut()) };
        Ok(*b)
    }

    /// Moves the data out to `dst` and forgets the value.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `self.type_of().size()` bytes, aligned for it. The
    /// value must not be of func kind.
    pub unsafe fn move_to(self, dst: *mut u8) {
        assert!(
            self.kind() != Kind::Func,
            "fing::Value::move_to: func values have no raw form"
        );
        let me = ManuallyDrop::new(self);
        // SAFETY: the data is a valid value of `ty.size()` bytes and `dst` is valid for that
        // many (caller); ownership moves to `dst` since `me` is not dropped.
        unsafe { core::ptr::copy_nonoverlapping(me.as_ptr(), dst, me.ty.size()) };
        me.free_box();
    }

    /// Frees the box of a boxed value without dropping its content.
    fn free_box(&self) {
        if storage(self.ty) == Storage::Boxed {
            let layout = Layout::from_size_align(self.ty.size(), self.ty.align())
                .expect("fing::Value: descriptor with an impossible layout");
            // SAFETY: boxed values own an allocation of exactly this layout, made in
            // `from_raw`; the caller has moved the content out.
            unsafe { dealloc(self.as_ptr().cast_mut(), layout) };
        }
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        match storage(self.ty) {
            Storage::Nil => {}
            Storage::Func => {
                // SAFETY: func-kind values own a `Box<Func>` in word 0.
                drop(unsafe { Box::from_raw(self.as_ptr().cast::<Func>().cast_mut()) });
            }
            Storage::Empty | Storage::Inline | Storage::Boxed => {
                // SAFETY: the data is a valid value of type `ty` (for a zero-sized one, a
                // dangling pointer aligned for it is one), dropped once here.
                unsafe { self.ty.drop_value(self.as_ptr().cast_mut()) };
                self.free_box();
            }
        }
    }
}

impl Default for Value {
    fn default() -> Value {
        Value::nil()
    }
}

impl From<Func> for Value {
    fn from(f: Func) -> Value {
        let ty = f.signature();
        let p = Box::into_raw(Box::new(f));
        Value {
            ty,
            data: MaybeUninit::new([p.cast::<u8>(), core::ptr::null_mut()]),
            _not_send: PhantomData,
        }
    }
}

macro_rules! from_leaf {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::new(x)
            }
        }
    )*};
}
from_leaf!(
    bool, char, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64, String
);

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::new(String::from(s))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        macro_rules! show {
            ($($t:ty),*) => {$(
                if let Some(x) = self.downcast_ref::<$t>() {
                    return write!(f, "Value({}: {:?})", self.ty, x);
                }
            )*};
        }
        show!(
            bool, char, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64,
            String
        );
        write!(f, "Value({})", self.ty)
    }
}

// SAFETY: `Value` is the empty interface: kind interface, unnamed, no methods; it holds
// data of any type, so it is neither Send nor Sync; its handles are traced by its
// dynamic type.
unsafe impl Typed for Value {
    const TYPE: &'static Type =
        // SAFETY: the impl's own argument: this descriptor describes the type exactly.
        &unsafe { Type::rust::<Value>(Kind::Interface) }
            .with_send_sync(SendSync::Known {
                send: false,
                sync: false,
            });
}

// SAFETY: a `Value` owns its data; its dynamic type's trace glue reports the data's
// handles once. A `Func`'s captures are not traced (they stay counted, so they act as
// roots: a leak at worst, never a wrong free).
unsafe impl Trace for Value {
    const NO_SCAN: bool = false;
    fn trace(&self, tracer: &mut Tracer) {
        if matches!(
            storage(self.ty),
            Storage::Empty | Storage::Inline | Storage::Boxed
        ) {
            // SAFETY: the data is a valid value of `ty`, borrowed for the call.
            unsafe { self.ty.trace_value(self.as_ptr(), tracer) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn nil_has_the_invalid_kind() {
        let v = Value::nil();
        assert!(v.is_nil());
        assert_eq!(v.kind(), Kind::Invalid);
        assert_eq!(v.type_of().to_string(), "nil");
        assert!(v.downcast::<i32>().is_err());
    }

    #[test]
    fn inline_and_boxed_values_round_trip() {
        let v = Value::from(42i32);
        assert_eq!(v.type_of().to_string(), "i32");
        assert_eq!(v.downcast_ref::<i64>(), None);
        let v = v.downcast::<i64>().unwrap_err();
        assert_eq!(v.downcast::<i32>().unwrap(), 42);

        let big = [7u64; 40];
        let v = Value::new(big);
        assert_eq!(v.type_of().to_string(), "[u64; 40]");
        assert_eq!(v.downcast::<[u64; 40]>().unwrap(), big);

        let v = Value::from("text");
        assert_eq!(format!("{v:?}"), "Value(String: \"text\")");
        assert_eq!(v.downcast::<String>().unwrap(), "text");
    }

    #[test]
    fn values_drop_their_data_once() {
        let n = Arc::new(AtomicUsize::new(0));
        // Three words: boxed. Dropping the value drops the Vec and frees the box (Miri and
        // the leak checkers of .ci/deep see a leak or a double free here).
        let v = Value::new(vec![String::from("a"), String::from("b")]);
        drop(v);
        // Funcs in values are dropped with the value, and so are their captures.
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let c = Count(n.clone());
        let v = Value::from(Func::nullary(move || drop(c)));
        assert_eq!(v.kind(), Kind::Func);
        assert_eq!(v.type_of().to_string(), "fn()");
        drop(v);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn function_pointers_become_funcs() {
        fn double(x: i64) -> i64 {
            x * 2
        }
        let v = Value::new(double as fn(i64) -> i64);
        assert_eq!(v.kind(), Kind::Func);
        assert!(
            v.downcast_ref::<fn(i64) -> i64>().is_none(),
            "func values hold a Func"
        );
        let f = v.into_func().unwrap();
        let r = f.call(vec![Value::from(21i64)]).unwrap();
        assert_eq!(r[0].downcast_ref::<i64>(), Some(&42));
    }

    #[test]
    fn value_is_the_empty_interface() {
        let t = Value::TYPE;
        assert_eq!(t.kind(), Kind::Interface);
        assert!(t.methods().is_empty());
        assert!(!t.is_named());
        assert!(!t.is_send_sync());
    }
}
