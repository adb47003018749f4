//! Go's type rules for `set_finalizer`, as pure functions (mfinal.go's checks, 2014).
//!
//! - [`identical`]: Go's type identity. Two named types are identical only if they are
//!   the same type; two unnamed types are identical if they are built the same way from
//!   identical parts. A Rust type and a type built at run time can therefore be identical
//!   (`Gc<demo::File>` and a built pointer to `demo::File`).
//! - [`assignable_pointer`]: a pointer parameter whose element is identical to the
//!   object's, where at least one of the two pointer types is unnamed (Go 2014's "uncommon
//!   name is nil").
//! - [`is_empty_interface`] is true of `Value` alone.
//! - [`find_itab`]: the object is a pointer whose element declares it implements the
//!   interface (`#[gc(implements(...))]`).
//! - [`finalizer_param`]: row 9 of the check table in gc-core's `set_finalizer`
//!   docs, all four in Go's order.

use crate::kind::Kind;
use crate::ty::{Itab, Type, TypeRef};

/// Go's type identity.
pub fn identical(a: &Type, b: &Type) -> bool {
    if core::ptr::eq(a, b) || a.ident() == b.ident() {
        return true;
    }
    // Identical types share a representation (frames and `Value` read one as the other):
    // two structures of different sizes never are, whatever their parts say.
    if a.is_named() || b.is_named() || a.kind() != b.kind() || a.size() != b.size() {
        return false;
    }
    // An array built at run time is never identical to a Rust array (nor, so, a pointer to
    // one to a Rust handle): objects of built types may hold nil pointers and are written
    // by `reflect::set_field` under its own lock, neither of which a Rust `&[T; N]` may
    // see. (Go equates `reflect.ArrayOf(2, int)` with `[2]int`; fing's Rust arrays are
    // Rust values.)
    if a.kind() == Kind::Array && a.is_built() != b.is_built() {
        return false;
    }
    let same = |x: &[TypeRef], y: &[TypeRef]| {
        x.len() == y.len() && x.iter().zip(y).all(|(p, q)| identical(p.get(), q.get()))
    };
    let elems = || match (a.elem(), b.elem()) {
        (Some(x), Some(y)) => identical(x, y),
        _ => false,
    };
    match a.kind() {
        Kind::Pointer | Kind::Slice => elems(),
        Kind::Array => a.array_len() == b.array_len() && elems(),
        Kind::Func => {
            a.is_variadic() == b.is_variadic()
                && same(a.params, b.params)
                && same(a.results, b.results)
        }
        Kind::Tuple | Kind::Struct => {
            a.fields().len() == b.fields().len()
                && a.fields().iter().zip(b.fields()).all(|(x, y)| {
                    x.name == y.name
                        && x.untraced == y.untraced
                        && identical(x.ty.get(), y.ty.get())
                })
        }
        Kind::Interface => a.methods() == b.methods(),
        _ => false,
    }
}

/// Row 9(b): `param` and `obj` are pointer types with identical elements, and at least
/// one of them is unnamed.
pub fn assignable_pointer(param: &Type, obj: &Type) -> bool {
    param.kind() == Kind::Pointer
        && obj.kind() == Kind::Pointer
        && (!param.is_named() || !obj.is_named())
        && match (param.elem(), obj.elem()) {
            (Some(p), Some(o)) => identical(p, o),
            _ => false,
        }
}

/// Row 9(c): the empty interface, `Value`.
pub fn is_empty_interface(t: &Type) -> bool {
    t.kind() == Kind::Interface && t.methods().is_empty() && !t.is_named()
}

/// Row 9(d): the itab by which pointer type `obj` implements interface `iface`.
pub fn find_itab(obj: &Type, iface: &Type) -> Option<&'static Itab> {
    if iface.kind() != Kind::Interface || obj.kind() != Kind::Pointer {
        return None;
    }
    obj.elem()?
        .implements()
        .iter()
        .find(|it| identical(it.iface(), iface))
}

/// How a finalizer's parameter accepts the object (row 9), and so how the frame invoker
/// writes the argument.
#[derive(Clone, Copy, Debug)]
pub enum ParamMatch {
    /// (a) identical types: the handle as is.
    Identical,
    /// (b) an assignable pointer: the handle as is (same representation).
    AssignablePointer,
    /// (c) the empty interface: a `Value` holding the handle.
    EmptyInterface,
    /// (d) an interface the object implements: the interface handle made with the itab.
    Interface(&'static Itab),
}

/// Row 9 of `set_finalizer`: can a finalizer whose parameter is `param` be given an object
/// of type `obj`? Checked in Go's order.
pub fn finalizer_param(obj: &Type, param: &Type) -> Option<ParamMatch> {
    if identical(param, obj) {
        Some(ParamMatch::Identical)
    } else if assignable_pointer(param, obj) {
        Some(ParamMatch::AssignablePointer)
    } else if is_empty_interface(param) {
        Some(ParamMatch::EmptyInterface)
    } else {
        find_itab(obj, param).map(ParamMatch::Interface)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Trace, Tracer};
    use crate::ty::PtrMask;
    use crate::{TypeBuilder, Typed};

    /// A stand-in handle type for these unit tests (gc-core has the real one): one handle
    /// word.
    #[repr(transparent)]
    struct Ptr<T: 'static>(*const T);
    // SAFETY: kind pointer with element T, unnamed; the layout is the compiler's.
    unsafe impl<T: Trace> Typed for Ptr<T> {
        // SAFETY: the impl's own argument: this descriptor describes the type exactly.
        const TYPE: &'static Type = &unsafe { Type::rust::<Ptr<T>>(Kind::Pointer) }
            .with_elem(TypeRef::of::<T>())
            .with_send_sync(crate::SendSync::Pointer);
    }
    // SAFETY: the test handle holds no object in these tests.
    unsafe impl<T: Trace> Trace for Ptr<T> {
        const NO_SCAN: bool = false;
        const PTRMASK: PtrMask = PtrMask::Small(0b1);
        fn trace(&self, _: &mut Tracer) {}
    }

    fn ty<T: Typed>() -> &'static Type {
        T::TYPE
    }

    #[test]
    fn identical_types() {
        assert!(identical(ty::<i32>(), ty::<i32>()));
        assert!(!identical(ty::<i32>(), ty::<i64>()));
        assert!(identical(ty::<Ptr<i32>>(), ty::<Ptr<i32>>()));
        assert!(!identical(ty::<Ptr<i32>>(), ty::<Ptr<u32>>()));
        // A built unnamed pointer is identical to the Rust one with the same element.
        let built = TypeBuilder::pointer(ty::<Ptr<()>>(), None, ty::<i32>());
        assert!(identical(built, ty::<Ptr<i32>>()));
        assert_eq!(built.to_string(), "Gc<i32>");
        // A built named pointer is its own type.
        let named = TypeBuilder::pointer(ty::<Ptr<()>>(), Some("interp.IntPtr"), ty::<i32>());
        assert!(!identical(named, ty::<Ptr<i32>>()));
        assert!(identical(named, named));
        // Signatures compare structurally.
        let sig = TypeBuilder::func(&[ty::<Ptr<i32>>()], &[ty::<[u8; 32]>()], false);
        assert!(identical(sig, ty::<fn(Ptr<i32>) -> [u8; 32]>()));
        assert!(!identical(sig, ty::<fn(Ptr<i32>)>()));
        // Two named structs with the same shape are different types.
        let a = TypeBuilder::structure(Some("interp.A"))
            .field("x", ty::<i64>())
            .build();
        let b = TypeBuilder::structure(Some("interp.A"))
            .field("x", ty::<i64>())
            .build();
        assert!(!identical(a, b));
        // Two unnamed ones with the same fields are the same type.
        let c = TypeBuilder::structure(None).field("x", ty::<i64>()).build();
        let d = TypeBuilder::structure(None).field("x", ty::<i64>()).build();
        assert!(identical(c, d));
        let e = TypeBuilder::structure(None).field("y", ty::<i64>()).build();
        assert!(!identical(c, e));
    }

    #[test]
    fn assignable_pointers_need_one_unnamed_side() {
        let elem = ty::<i64>();
        let unnamed = ty::<Ptr<i64>>();
        let named_a = TypeBuilder::pointer(ty::<Ptr<()>>(), Some("Tintptr"), elem);
        let named_b = TypeBuilder::pointer(ty::<Ptr<()>>(), Some("Uintptr"), elem);
        assert!(assignable_pointer(named_a, unnamed));
        assert!(assignable_pointer(unnamed, named_a));
        assert!(!assignable_pointer(named_a, named_b), "both named");
        assert!(
            !assignable_pointer(ty::<Ptr<u64>>(), unnamed),
            "different elements"
        );
        assert!(
            !assignable_pointer(ty::<i64>(), ty::<i64>()),
            "not pointers"
        );
    }

    #[test]
    fn finalizer_parameter_rule_in_gos_order() {
        let obj = ty::<Ptr<i64>>();
        assert!(matches!(
            finalizer_param(obj, obj),
            Some(ParamMatch::Identical)
        ));
        let named = TypeBuilder::pointer(ty::<Ptr<()>>(), Some("Tintptr"), ty::<i64>());
        assert!(matches!(
            finalizer_param(obj, named),
            Some(ParamMatch::AssignablePointer)
        ));
        assert!(matches!(
            finalizer_param(obj, ty::<crate::Value>()),
            Some(ParamMatch::EmptyInterface)
        ));
        assert!(is_empty_interface(ty::<crate::Value>()));
        let closer = TypeBuilder::interface("interp.Closer", &["close"]);
        assert!(!is_empty_interface(closer));
        assert!(
            finalizer_param(obj, closer).is_none(),
            "i64 implements nothing"
        );
        assert!(finalizer_param(obj, ty::<i64>()).is_none());
        assert!(finalizer_param(obj, ty::<Ptr<u64>>()).is_none());
    }

    /// # Safety
    /// Never called: these tests do not invoke finalizers.
    unsafe fn no_write(_: *const u8, _: core::ptr::NonNull<u8>, _: *mut u8) {
        unreachable!("rules tests: write_handle is not called")
    }

    #[test]
    fn implements_through_a_built_itab() {
        let closer = TypeBuilder::interface("interp.Closer", &["close"]);
        static CAST: fn(*const u8) -> usize = |p| p as usize;
        // SAFETY: `no_write` is never called (no finalizer runs in these tests), and `CAST`
        // is no trait-object conversion (nothing downcasts it).
        let itab = unsafe { crate::Itab::new(TypeRef::Static(closer), &CAST, no_write) };
        let builder = TypeBuilder::structure(Some("interp.File")).field("fd", ty::<i64>());
        // SAFETY: the itab is for this struct's values (and never used to write a handle).
        let file = unsafe { builder.implements(itab) }.build();
        let ptr = TypeBuilder::pointer(ty::<Ptr<()>>(), None, file);
        assert!(matches!(
            finalizer_param(ptr, closer),
            Some(ParamMatch::Interface(_))
        ));
        assert_eq!(closer.to_string(), "dyn interp.Closer");
    }
}
