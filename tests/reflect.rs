//! The reflection model through the public API: Go's finalizer parameter rules on real
//! handle types (the cases of Go's TestFinalizerType), values holding handles, function
//! values, and types an interpreter builds at run time.

#![allow(missing_docs, dead_code, missing_debug_implementations)]

use fing::rules::{finalizer_param, identical, ParamMatch};
use fing::{Frame, FrameFn, Func, Gc, Kind, Trace, Type, TypeBuilder, Typed, Value};

#[path = "support/finalizer_types.rs"]
mod types;
use types::{Closer, File, Tintptr};

#[fing::interface]
pub trait Reader: Send + Sync {
    fn read(&self) -> i64;
}

#[derive(Trace)]
#[gc(pointer)]
#[repr(transparent)]
pub struct Uintptr(Gc<i64>);

fn ty<T: Typed>() -> &'static Type {
    T::TYPE
}

/// Go's TestFinalizerType, as rule checks: which finalizer parameter types accept an
/// object of which type.
#[test]
fn finalizer_parameter_types_follow_go() {
    let int_ptr = ty::<Gc<i64>>();
    // func(*int): identical.
    assert!(matches!(
        finalizer_param(int_ptr, int_ptr),
        Some(ParamMatch::Identical)
    ));
    // func(Tintptr) for a *int: one side unnamed, same element.
    assert!(matches!(
        finalizer_param(int_ptr, ty::<Tintptr>()),
        Some(ParamMatch::AssignablePointer)
    ));
    // func(*int) for a Tintptr.
    assert!(matches!(
        finalizer_param(ty::<Tintptr>(), int_ptr),
        Some(ParamMatch::AssignablePointer)
    ));
    // Both named: refused.
    assert!(finalizer_param(ty::<Tintptr>(), ty::<Uintptr>()).is_none());
    // func(interface{}).
    assert!(matches!(
        finalizer_param(int_ptr, ty::<Value>()),
        Some(ParamMatch::EmptyInterface)
    ));
    // func(Closer) for a *File that implements it.
    assert!(matches!(
        finalizer_param(ty::<Gc<File>>(), ty::<Gc<dyn Closer>>()),
        Some(ParamMatch::Interface(_))
    ));
    // func(Reader): not implemented.
    assert!(finalizer_param(ty::<Gc<File>>(), ty::<Gc<dyn Reader>>()).is_none());
    // Different element, non-pointer parameter.
    assert!(finalizer_param(int_ptr, ty::<Gc<u64>>()).is_none());
    assert!(finalizer_param(int_ptr, ty::<i64>()).is_none());
    assert!(finalizer_param(ty::<Gc<File>>(), ty::<File>()).is_none());
}

#[test]
fn handle_types_are_described() {
    let g = ty::<Gc<File>>();
    assert_eq!(g.kind(), Kind::Pointer);
    assert_eq!(g.size(), std::mem::size_of::<Gc<File>>());
    assert_eq!(g.to_string(), "Gc<reflect::types::File>");
    assert!(g.is_send_sync());
    let i = ty::<Gc<dyn Closer>>();
    assert_eq!(i.kind(), Kind::Interface);
    assert_eq!(i.to_string(), "dyn reflect::types::Closer");
    assert!(!identical(i, ty::<Gc<dyn Reader>>()));
}

static ROOT: File = File {
    fd: 3,
    next: fing::GcCell::new(None),
};

#[test]
fn values_hold_handles_and_give_them_back() {
    let h = Gc::from_static(&ROOT);
    assert!(!Gc::is_in_heap(&h));
    let v = Value::from(h.clone());
    assert_eq!(v.type_of().to_string(), "Gc<reflect::types::File>");
    assert_eq!(v.kind(), Kind::Pointer);
    let v = v.downcast::<Gc<i64>>().unwrap_err();
    let back: Gc<File> = v.downcast::<Gc<File>>().unwrap();
    assert!(Gc::ptr_eq(&back, &h));
    assert_eq!(back.fd, 3);
}

#[test]
fn map_points_inside_and_keeps_the_owner() {
    let h = Gc::from_static(&ROOT);
    let fd: Gc<i64> = h.map(|f| &f.fd);
    assert_eq!(*fd, 3);
    assert_eq!(Gc::object_addr(&fd), Gc::object_addr(&h));
}

#[test]
fn funcs_take_handles_and_interfaces() {
    let f = Func::new(|file: Gc<File>| -> [u8; 32] { [file.fd as u8; 32] });
    assert_eq!(
        f.signature().to_string(),
        "fn(Gc<reflect::types::File>) -> [u8; 32]"
    );
    let r = f.call(vec![Value::from(Gc::from_static(&ROOT))]).unwrap();
    assert_eq!(r[0].downcast_ref::<[u8; 32]>(), Some(&[3; 32]));

    let f = Func::new(|c: Gc<dyn Closer>| c.close());
    assert_eq!(
        f.signature().to_string(),
        "fn(dyn reflect::types::Closer) -> i64"
    );
    assert_eq!(
        f.signature().params().next().unwrap().kind(),
        Kind::Interface
    );
}

/// An interpreter's own types: a struct with a handle field and a function of its own
/// signature whose body reads the argument from the frame.
#[test]
fn an_interpreter_describes_and_calls_its_own_functions() {
    let node = TypeBuilder::structure(Some("script.Node"))
        .field("value", ty::<i64>())
        .field("file", ty::<Gc<File>>())
        .build();
    assert_eq!(node.size(), 16);
    assert!(!node.is_noscan());
    assert_eq!(node.ptrmask().word(1), Some(true), "the handle word");

    let node_ptr = TypeBuilder::pointer(ty::<Gc<()>>(), None, node);
    assert_eq!(node_ptr.to_string(), "Gc<script.Node>");
    let sig = TypeBuilder::func(&[ty::<Gc<File>>()], &[ty::<i64>()], false);
    assert!(
        identical(sig, ty::<fn(Gc<File>) -> i64>()),
        "built and Rust signatures are identical"
    );

    struct ScriptClose;
    impl FrameFn for ScriptClose {
        fn call(self: Box<Self>, frame: &mut Frame<'_>) {
            let file = frame
                .take_arg_value(0)
                .unwrap()
                .downcast::<Gc<File>>()
                .unwrap();
            frame.set_result(0, file.fd * 10).unwrap();
        }
    }
    let f = Func::from_frame_fn(sig, ScriptClose);
    let r = f.call(vec![Value::from(Gc::from_static(&ROOT))]).unwrap();
    assert_eq!(r[0].downcast_ref::<i64>(), Some(&30));
}

#[test]
fn gc_is_send_sync_exactly_when_t_is() {
    static_assertions::assert_impl_all!(Gc<File>: Send, Sync);
    static_assertions::assert_not_impl_any!(Gc<std::cell::Cell<i32>>: Send, Sync);
    static_assertions::assert_not_impl_any!(Value: Send, Sync);
}
