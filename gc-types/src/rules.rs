//! Go's type rules for `set_finalizer`, as pure functions (mfinal.go's checks, 2014).
//!
//! - [`identical`]: Go's type identity. Two named types are identical only if they are
//!   the same type; two unnamed types are identical if they are built the same way from
//!   identical parts. A Rust type and a type built at run time can therefore be identical
//!   (`Gc<demo::File>` and a built pointer to `demo::File`).
//! - [`assignable_pointer`]: a pointer parameter whose element is identical to the
//!   object's, where at least one of the two pointer types is unnamed (Go 2014's "uncommon
//!   name is nil").
//! - [`is_empty_interface`]: `Value`.
//! - [`find_itab`]: the object is a pointer whose element declares it implements the
//!   interface (`#[gc(implements(...))]`).
//! - [`finalizer_param`]: row 9 of DESIGN §6, all four in Go's order.

use crate::kind::Kind;
use crate::ty::{Itab, Type, TypeRef};

/// Go's type identity.
pub fn identical(a: &Type, b: &Type) -> bool {
    if core::ptr::eq(a, b) || a.ident() == b.ident() {
        return true;
    }
    if a.is_named() || b.is_named() || a.kind() != b.kind() {
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
        Kind::Array => a.len() == b.len() && elems(),
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
        .find(|it| identical(it.iface.get(), iface))
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
