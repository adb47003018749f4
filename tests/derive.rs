//! Run-pass derive cases: derived descriptors agree with the compiler's layout, the noscan
//! bit is right for nested and generic types, type strings are Go-like.

#![allow(missing_docs, dead_code, missing_debug_implementations)]

use std::collections::HashMap;
use std::mem::{align_of, offset_of, size_of};

use fing::{Gc, GcCell, Kind, PtrMask, Trace, Type, Typed};

#[fing::interface]
pub trait Closer: Send + Sync {
    fn close(&self) -> i32;
}

#[derive(Trace)]
#[gc(implements(Closer))]
pub struct File {
    fd: i32,
    next: Option<Gc<File>>,
}

impl Closer for File {
    fn close(&self) -> i32 {
        self.fd
    }
}

#[derive(Trace)]
pub struct Plain {
    a: u8,
    b: u64,
    s: String,
}

#[derive(Trace)]
pub struct Pair<A, B> {
    a: A,
    b: B,
}

#[derive(Trace)]
pub struct Tuple(u32, Gc<Plain>);

#[derive(Trace)]
pub struct Unit;

#[derive(Trace)]
pub enum Shape {
    Empty,
    Circle { r: f64 },
    Link(Gc<Shape>, u8),
}

#[derive(Trace)]
pub enum Flat {
    A(u8),
    B { x: i64 },
}

#[derive(Trace)]
pub struct Wrapper<T> {
    inner: Vec<T>,
    count: usize,
}

#[derive(Trace)]
pub struct WithUntraced {
    id: u32,
    #[gc(untraced)]
    lock: std::sync::Mutex<Vec<u8>>,
}

#[derive(Trace)]
pub struct NotSync {
    #[gc(untraced)]
    cell: std::cell::Cell<i32>,
}

#[derive(Trace)]
#[gc(pointer)]
#[repr(transparent)]
pub struct Tintptr(Gc<i64>);

#[derive(Trace)]
pub struct Words {
    a: Gc<Plain>,
    n: u64,
    b: Gc<Plain>,
}

fn check_layout<T: Typed>() {
    let t = Type::of::<T>();
    assert_eq!(t.size(), size_of::<T>(), "size of {t}");
    assert_eq!(t.align(), align_of::<T>(), "align of {t}");
}

#[test]
fn descriptors_match_the_compilers_layout() {
    check_layout::<File>();
    check_layout::<Plain>();
    check_layout::<Pair<u8, Gc<File>>>();
    check_layout::<Pair<Pair<u16, u8>, [u64; 3]>>();
    check_layout::<Tuple>();
    check_layout::<Unit>();
    check_layout::<Shape>();
    check_layout::<Wrapper<Gc<File>>>();
    check_layout::<WithUntraced>();
    check_layout::<Tintptr>();
    check_layout::<Gc<File>>();
    check_layout::<Gc<dyn Closer>>();
    check_layout::<(u8, u64, u16)>();
    check_layout::<[Gc<File>; 4]>();

    let plain = Type::of::<Plain>();
    let offsets: Vec<(&str, usize)> = plain.fields().iter().map(|f| (f.name, f.offset)).collect();
    assert_eq!(
        offsets,
        vec![
            ("a", offset_of!(Plain, a)),
            ("b", offset_of!(Plain, b)),
            ("s", offset_of!(Plain, s))
        ]
    );
    let pair = Type::of::<Pair<u8, Gc<File>>>();
    assert_eq!(pair.fields()[1].offset, offset_of!(Pair<u8, Gc<File>>, b));
    assert_eq!(pair.fields()[1].ty.get().to_string(), "Gc<derive::File>");
}

#[test]
fn noscan_is_computed_from_the_fields() {
    assert!(Type::of::<Plain>().is_noscan());
    assert!(!Type::of::<File>().is_noscan());
    assert!(Type::of::<Pair<u8, Pair<u16, String>>>().is_noscan());
    assert!(!Type::of::<Pair<u8, Pair<u16, Gc<Plain>>>>().is_noscan());
    assert!(Type::of::<Wrapper<u32>>().is_noscan());
    assert!(!Type::of::<Wrapper<Gc<u32>>>().is_noscan());
    assert!(Type::of::<Flat>().is_noscan());
    assert!(!Type::of::<Shape>().is_noscan());
    assert!(Type::of::<Unit>().is_noscan());
    assert!(Type::of::<WithUntraced>().is_noscan());
    assert!(!Type::of::<Tintptr>().is_noscan());
    assert!(!Type::of::<HashMap<u32, Gc<File>>>().is_noscan());
    assert!(Type::of::<[u64; 0]>().is_noscan());
    assert!(
        !Type::of::<Gc<Plain>>().is_noscan(),
        "a handle always needs scanning"
    );
    // The Trace constant agrees with the descriptor.
    assert_eq!(<File as Trace>::NO_SCAN, Type::of::<File>().is_noscan());
}

#[test]
fn pointer_masks_where_the_layout_allows() {
    // Gc<T> is one handle word.
    assert_eq!(size_of::<Gc<Plain>>(), 8);
    assert_eq!(Type::of::<Gc<Plain>>().ptrmask(), PtrMask::Small(0b1));
    // Gc<dyn Trait> is a wide pointer, whose data half has no offset the language fixes:
    // traced by its trace glue.
    assert_eq!(size_of::<Gc<dyn Closer>>(), 16);
    assert!(!Type::of::<Gc<dyn Closer>>().ptrmask().is_known());
    let w = Type::of::<Words>();
    let a = offset_of!(Words, a) / 8;
    let b = offset_of!(Words, b) / 8;
    assert_eq!(w.ptrmask(), PtrMask::Small(1 << a | 1 << b));
    assert_eq!(
        Type::of::<[Gc<Plain>; 3]>().ptrmask(),
        PtrMask::Small(0b111)
    );
    assert_eq!(Type::of::<Plain>().ptrmask(), PtrMask::EMPTY);
    // Option<Gc<T>> writes None as a null handle word: the handle's mask serves it.
    let next = offset_of!(File, next) / 8;
    assert_eq!(Type::of::<File>().ptrmask(), PtrMask::Small(1 << next));
    // A Vec of handles has no fixed handle words: trace by function.
    assert_eq!(Type::of::<Wrapper<Gc<File>>>().ptrmask(), PtrMask::Unknown);
}

#[test]
fn type_strings() {
    assert_eq!(Type::of::<File>().to_string(), "derive::File");
    assert_eq!(Type::of::<Gc<File>>().to_string(), "Gc<derive::File>");
    assert_eq!(
        Type::of::<Gc<dyn Closer>>().to_string(),
        "dyn derive::Closer"
    );
    assert_eq!(
        Type::of::<Pair<u8, Gc<File>>>().to_string(),
        "derive::Pair<u8, Gc<derive::File>>"
    );
    assert_eq!(Type::of::<Tintptr>().to_string(), "derive::Tintptr");
    assert_eq!(
        Type::of::<fn(Gc<File>) -> [u8; 32]>().to_string(),
        "fn(Gc<derive::File>) -> [u8; 32]"
    );
    assert_eq!(
        Type::of::<fn(i32, String) -> (u8, Vec<u16>)>().to_string(),
        "fn(i32, String) -> (u8, [u16])"
    );
    assert_eq!(Type::of::<fn()>().to_string(), "fn()");
    assert_eq!(
        Type::of::<Option<Gc<File>>>().to_string(),
        "Option<Gc<derive::File>>"
    );
    assert_eq!(Type::of::<(u8,)>().to_string(), "(u8,)");
    assert_eq!(Type::of::<fing::Value>().to_string(), "Value");
    assert_eq!(
        Type::of::<WithUntraced>().fields()[1].ty.get().to_string(),
        "std::sync::Mutex<Vec<u8>>"
    );
}

#[test]
fn kinds_names_and_elements() {
    let f = Type::of::<File>();
    assert_eq!(f.kind(), Kind::Struct);
    assert!(f.is_named());
    let p = Type::of::<Gc<File>>();
    assert_eq!(p.kind(), Kind::Pointer);
    assert!(!p.is_named());
    assert!(std::ptr::eq(p.elem().unwrap(), f));
    let t = Type::of::<Tintptr>();
    assert_eq!(t.kind(), Kind::Pointer);
    assert_eq!(t.name(), Some("derive::Tintptr"));
    assert_eq!(t.elem().unwrap().to_string(), "i64");
    let s = Type::of::<Shape>();
    assert_eq!(s.kind(), Kind::Enum);
    assert_eq!(s.variants(), &["Empty", "Circle", "Link"]);
    let i = Type::of::<Gc<dyn Closer>>();
    assert_eq!(i.kind(), Kind::Interface);
    assert_eq!(
        i.methods().iter().map(|m| m.name).collect::<Vec<_>>(),
        vec!["close"]
    );
    assert_eq!(Type::of::<Unit>().fields().len(), 0);
    assert_eq!(Type::of::<Tuple>().fields()[1].name, "1");
}

#[test]
fn send_sync_answers() {
    assert!(Type::of::<File>().is_send_sync());
    assert!(Type::of::<WithUntraced>().is_send_sync());
    assert!(!Type::of::<NotSync>().is_send_sync());
    assert!(!Type::of::<Gc<NotSync>>().is_send_sync());
    assert!(Type::of::<Pair<u8, Gc<File>>>().is_send_sync());
    assert!(!Type::of::<Pair<u8, Gc<NotSync>>>().is_send_sync());
    assert!(!Type::of::<Wrapper<fing::Value>>().is_send_sync());
    assert!(
        Type::of::<Shape>().is_send_sync(),
        "recursive types are answered coinductively"
    );
}

#[test]
fn itab_turns_a_data_pointer_into_the_trait_object() {
    let obj = Type::of::<Gc<File>>();
    let iface = Type::of::<Gc<dyn Closer>>();
    let itab = fing::rules::find_itab(obj, iface).expect("File implements Closer");
    static F: File = File { fd: 7, next: None };
    let data = &F as *const File as *const u8;
    let dynp = <dyn Closer as fing::GcTarget>::cast_from(itab, data).expect("itab of Closer");
    // SAFETY: `dynp` points at the static `F`.
    assert_eq!(unsafe { &*dynp }.close(), 7);
    assert!(fing::rules::find_itab(Type::of::<Gc<Plain>>(), iface).is_none());
}

#[derive(Trace)]
pub struct TwoLinks {
    left: Option<Gc<TwoLinks>>,
    right: Option<Gc<TwoLinks>>,
}

#[test]
fn optional_handles_have_masks_and_handle_only_drops() {
    let t = Type::of::<TwoLinks>();
    let l = offset_of!(TwoLinks, left) / 8;
    let r = offset_of!(TwoLinks, right) / 8;
    assert_eq!(size_of::<Option<Gc<TwoLinks>>>(), size_of::<Gc<TwoLinks>>());
    assert_eq!(size_of::<TwoLinks>(), 16, "two links, one word each");
    assert_eq!(t.ptrmask(), PtrMask::Small(1 << l | 1 << r));
    assert!(t.handles_only_drop(), "dropping it only drops handles");
    assert!(
        !Type::of::<Plain>().handles_only_drop(),
        "a String needs its destructor"
    );
    assert!(
        !Type::of::<Option<Option<Gc<Plain>>>>().ptrmask().is_known(),
        "no niche left"
    );
}

/// `AllowDrop`'s documented example: the opt-out from the ban on `Drop` is the attribute
/// and an `unsafe impl`.
#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Logged {
    id: u64,
    next: GcCell<Option<Gc<Logged>>>,
}

// SAFETY: `drop` reads `id` only, never a handle.
unsafe impl fing::AllowDrop for Logged {}

impl Drop for Logged {
    fn drop(&mut self) {
        LOGGED.fetch_add(self.id as usize, std::sync::atomic::Ordering::SeqCst);
    }
}

static LOGGED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn a_traced_type_with_its_own_drop_takes_the_unsafe_impl() {
    let mut c = fing::HeapConfig::default();
    c.gogc = None;
    let h = fing::Heap::new(c);
    let a = h.alloc(Logged {
        id: 3,
        next: GcCell::new(None),
    });
    a.next.set(Some(a.clone()));
    drop(a);
    h.collect();
    assert_eq!(LOGGED.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// `DropOnlyFrees`'s documented example: an untraced field whose type promises that its
/// drop only frees keeps its object's destructor off the drop thread.
struct Code {
    ops: Vec<u32>,
    consts: Vec<String>,
}

// SAFETY: `Code` has no `Drop` of its own; its fields only free memory when dropped.
unsafe impl fing::DropOnlyFrees for Code {}

#[derive(Trace)]
struct Closure {
    #[gc(untraced)]
    code: std::sync::Arc<Code>,
    env: Option<Gc<Closure>>,
}

/// The same without the promise.
struct Opaque {
    ops: Vec<u32>,
}

#[derive(Trace)]
struct OpaqueClosure {
    #[gc(untraced)]
    code: std::sync::Arc<Opaque>,
    env: Option<Gc<OpaqueClosure>>,
}

#[test]
fn an_untraced_field_whose_type_promises_to_only_free_keeps_its_drop_off_the_drop_thread() {
    fn promised<T: ?Sized + fing::DropOnlyFrees>() {}
    promised::<Vec<Option<std::sync::Arc<Code>>>>();
    promised::<Box<str>>();
    promised::<(
        u8,
        std::collections::HashMap<String, Vec<Result<i64, String>>>,
    )>();
    // Answered at compile time; `HANDLES_ONLY_DROP` stays false (it frees memory: a
    // collection cannot skip it), and without the promise the derive cannot see into the
    // field's drop.
    const {
        assert!(<Closure as fing::Trace>::DROP_ONLY_FREES);
        assert!(!<Closure as fing::Trace>::HANDLES_ONLY_DROP);
        assert!(!<OpaqueClosure as fing::Trace>::DROP_ONLY_FREES);
    };
    let c = Closure {
        code: std::sync::Arc::new(Code {
            ops: vec![1, 2],
            consts: vec!["k".to_string()],
        }),
        env: None,
    };
    assert_eq!(
        (c.code.ops.len(), c.code.consts.len(), c.env.is_none()),
        (2, 1, true)
    );
    let o = OpaqueClosure {
        code: std::sync::Arc::new(Opaque { ops: vec![3] }),
        env: None,
    };
    assert_eq!((o.code.ops[0], o.env.is_none()), (3, true));
}

/// A type whose only generic parameter is a const: its Send/Sync is answered from its
/// parts and its alignment checked where it is allocated, as for a type-generic one (the
/// derive once treated it as non-generic and named it without its argument).
#[derive(Trace)]
struct Ring<const N: usize> {
    slots: [u64; N],
    next: Option<Gc<Ring<N>>>,
}

#[test]
fn const_generic_types_derive() {
    let r = Gc::new(Ring::<3> {
        slots: [1, 2, 3],
        next: None,
    });
    let s = Gc::new(Ring::<3> {
        slots: [4, 5, 6],
        next: Some(r.clone()),
    });
    assert_eq!(s.next.as_ref().unwrap().slots, [1, 2, 3]);
    let ty = Type::of::<Ring<3>>();
    assert_eq!(ty.size(), std::mem::size_of::<Ring<3>>());
    assert!(ty.is_send_sync());
    assert!(!ty.is_noscan());
    assert_ne!(ty.ident(), Type::of::<Ring<4>>().ident());
}
