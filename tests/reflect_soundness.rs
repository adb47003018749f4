//! The reflection layer ends every call in a value or a typed error, never undefined
//! behaviour or an internal panic, and only `unsafe` code can make a descriptor that safe
//! code trusts (`tests/ui/reflect` shows the compile errors). Each test was a crash, a
//! panic with a half-built value, a wrong answer or a compile error before issue 14.

#![allow(missing_docs, dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fing::{
    CallError, Frame, FrameFn, FrameLayout, Func, Gc, GcCell, Heap, HeapConfig, Kind, Outcome,
    Trace, Type, TypeBuilder, Typed, Value,
};

fn heap() -> Heap {
    let mut c = HeapConfig::default();
    c.gogc = None;
    Heap::new(c)
}

#[test]
fn zero_sized_values_of_any_alignment_need_no_storage() {
    // Size 0, align 16: once boxed with a zero-size allocation.
    let v = Value::new([0u128; 0]);
    assert_eq!(v.type_of().size(), 0);
    assert!((v.as_ptr() as usize).is_multiple_of(16));
    assert_eq!(v.downcast::<[u128; 0]>().unwrap(), []);
    drop(Value::new(()));
    #[derive(Trace)]
    #[repr(align(64))]
    struct Empty;
    let e = Value::new(Empty);
    assert!((e.as_ptr() as usize).is_multiple_of(64));
    drop(e);
}

fn double(x: i64) -> i64 {
    x * 2
}

#[test]
fn a_function_pointer_result_is_an_error_before_the_call() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let f = Func::new(move |_: i64| {
        r.fetch_add(1, Ordering::SeqCst);
        double as fn(i64) -> i64
    });
    let e = f.call(vec![Value::from(1i64)]).unwrap_err();
    assert!(matches!(e, CallError::FuncResult { index: 0, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "fing::Func::call: result 0 of fn(i64) -> fn(i64) -> i64 is a function, which has no Value form"
    );
    // A tuple holding one: its second result.
    let f = Func::new(|x: i64| (x, double as fn(i64) -> i64));
    let e = f.call(vec![Value::from(1i64)]).unwrap_err();
    assert!(matches!(e, CallError::FuncResult { index: 1, .. }), "{e}");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "refused before the body ran");
}

/// An interpreter's function that writes only the results its list names.
struct WriteSome(Vec<usize>);

impl FrameFn for WriteSome {
    fn call(self: Box<Self>, frame: &mut Frame<'_>) {
        for &i in &self.0 {
            frame.set_result(i, i as i64).unwrap();
        }
    }
}

#[test]
fn an_unwritten_result_is_reported_by_index() {
    let sig = TypeBuilder::func(&[], &[i64::TYPE, i64::TYPE], false);
    let e = Func::from_frame_fn(sig, WriteSome(vec![1]))
        .call(vec![])
        .unwrap_err();
    assert!(matches!(e, CallError::Unwritten { index: 0, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "fing::Func::call: fn() -> (i64, i64) did not write result 0"
    );
    let r = Func::from_frame_fn(sig, WriteSome(vec![1, 0]))
        .call(vec![])
        .unwrap();
    assert_eq!(
        r.iter()
            .map(|v| *v.downcast_ref::<i64>().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1],
        "each result at its own index"
    );
}

/// Takes every argument as an i64 and writes their sum into every result.
struct SumAll;

impl FrameFn for SumAll {
    fn call(self: Box<Self>, frame: &mut Frame<'_>) {
        let sum: i64 = (0..frame.param_count())
            .map(|i| frame.take_arg::<i64>(i).unwrap())
            .sum();
        for i in 0..frame.result_count() {
            frame.set_result(i, sum + i as i64).unwrap();
        }
    }
}

#[test]
fn signatures_of_any_width_are_laid_out_and_called() {
    let params = vec![i64::TYPE; 100];
    let results = vec![i64::TYPE; 70];
    let sig = TypeBuilder::func(&params, &results, false);
    let layout = FrameLayout::of(sig).unwrap();
    assert_eq!((layout.params.len(), layout.results.len()), (100, 70));
    let args: Vec<Value> = (0..100).map(|i| Value::from(i as i64)).collect();
    let r = Func::from_frame_fn(sig, SumAll).call(args).unwrap();
    assert_eq!(r.len(), 70);
    assert_eq!(r[69].downcast_ref::<i64>(), Some(&(4950 + 69)));
}

#[derive(Trace)]
struct Obj {
    id: u64,
}

#[test]
fn a_finalizer_with_seventy_results_runs() {
    static RAN: AtomicUsize = AtomicUsize::new(0);
    struct Fin;
    impl FrameFn for Fin {
        fn call(self: Box<Self>, frame: &mut Frame<'_>) {
            let o = frame.take_arg::<Gc<Obj>>(0).unwrap();
            RAN.store(o.id as usize, Ordering::SeqCst);
            // Leaves its 70 results unwritten: the frame has nothing to drop.
        }
    }
    let h = heap();
    let sig = TypeBuilder::func(&[<Gc<Obj>>::TYPE], &vec![i64::TYPE; 70], false);
    let before = fing::stats().finalizers_panicked;
    let o = h.alloc(Obj { id: 42 });
    let out = fing::set_finalizer(Value::from(o), Func::from_frame_fn(sig, Fin)).unwrap();
    assert_eq!(out, Outcome::Set);
    h.collect();
    fing::wait_finalizers();
    assert_eq!(RAN.load(Ordering::SeqCst), 42);
    assert_eq!(
        fing::stats().finalizers_panicked,
        before,
        "it ran, and did not panic"
    );
}

#[test]
fn a_finalizer_whose_frame_cannot_be_laid_out_is_refused_before_it_is_recorded() {
    let h = heap();
    let huge = TypeBuilder::array(u8::TYPE, isize::MAX as usize / 2 + 1);
    let sig = TypeBuilder::func(&[<Gc<Obj>>::TYPE], &[huge, huge], false);
    struct Never;
    impl FrameFn for Never {
        fn call(self: Box<Self>, _: &mut Frame<'_>) {
            unreachable!("never recorded")
        }
    }
    let o = h.alloc(Obj { id: 1 });
    let e =
        fing::set_finalizer(Value::from(o.clone()), Func::from_frame_fn(sig, Never)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("fing::set_finalizer: cannot lay out a frame for finalizer"),
        "{e}"
    );
    // Nothing was recorded: a finalizer can be set now.
    assert_eq!(o.set_finalizer(|_| ()), Ok(Outcome::Set));
}

/// Recursive through `Vec`, `Box` and `Option<Box<_>>`: the derive's constants once asked
/// themselves (E0391).
#[derive(Trace)]
struct Tree {
    label: String,
    children: Vec<Tree>,
    leaf: Option<Gc<Obj>>,
}

#[derive(Trace)]
struct List {
    value: u64,
    next: Option<Box<List>>,
}

#[derive(Trace)]
enum Expr {
    Num(i64),
    Add(Box<Expr>, Box<Expr>),
    Call(Vec<Expr>, GcCell<Option<Gc<Obj>>>),
}

#[test]
fn the_derive_accepts_recursive_types() {
    let h = heap();
    let kept = h.alloc(Obj { id: 5 });
    let t = h.alloc(Tree {
        label: "root".into(),
        children: vec![Tree {
            label: "kid".into(),
            children: vec![],
            leaf: Some(kept.clone()),
        }],
        leaf: None,
    });
    assert!(!Type::of::<Tree>().is_noscan(), "may hold handles");
    let l = h.alloc(List {
        value: 1,
        next: Some(Box::new(List {
            value: 2,
            next: None,
        })),
    });
    let e = h.alloc(Expr::Add(
        Box::new(Expr::Num(1)),
        Box::new(Expr::Call(
            vec![Expr::Num(2)],
            GcCell::new(Some(kept.clone())),
        )),
    ));
    drop(kept);
    h.collect();
    // The handle inside the tree and inside the expression kept their object.
    assert_eq!(t.children[0].leaf.as_ref().unwrap().id, 5);
    assert_eq!(l.next.as_ref().unwrap().value, 2);
    let Expr::Add(_, b) = &*e else { panic!() };
    let Expr::Call(args, cell) = &**b else {
        panic!()
    };
    assert!(matches!(args[0], Expr::Num(2)));
    assert_eq!(cell.borrow().as_ref().unwrap().id, 5);
    drop((t, l, e));
    h.collect();
    assert_eq!(h.stats().heap_objects, 0);
}

#[test]
fn built_arrays_are_element_and_length_only() {
    let a = TypeBuilder::array(String::TYPE, 1_000_000);
    assert_eq!(a.fields().len(), 0, "no field record per element");
    assert_eq!(a.array_len(), Some(1_000_000));
    assert_eq!(a.to_string(), "[String; 1000000]");
    // Dropped element by element, by stride: three Strings in a built array.
    let a3 = TypeBuilder::array(String::TYPE, 3);
    let strings = [String::from("a"), String::from("b"), String::from("c")];
    let strings = std::mem::ManuallyDrop::new(strings);
    // SAFETY: `strings` is a valid `[String; 3]`, the layout of `a3`, given up here.
    let v = unsafe { Value::from_raw(a3, (&*strings as *const [String; 3]).cast()) };
    assert_eq!(v.type_of().size(), 3 * std::mem::size_of::<String>());
    drop(v); // Miri and the leak checkers see the three Strings freed.
             // Traced by stride when the mask does not fit a word: 100 handles, each reported.
    let p = TypeBuilder::pointer(<Gc<Obj>>::TYPE, None, Obj::TYPE);
    let big = TypeBuilder::array(p, 100);
    assert!(!big.ptrmask().is_known(), "100 words: no one-word mask");
    let h = heap();
    let objs: Vec<Gc<Obj>> = (0..100).map(|id| h.alloc(Obj { id })).collect();
    let mut tracer = fing::Tracer::new();
    // SAFETY: 100 handles back to back (a `Vec`'s buffer) are `big`'s layout; they are
    // only read.
    unsafe { big.trace_value(objs.as_ptr().cast(), &mut tracer) };
    assert_eq!(tracer.edges().len(), 100, "every element's handle reported");
    // Dropped by stride too: the value takes over the 100 counts and gives them back.
    let arr = std::mem::ManuallyDrop::new(objs.clone());
    // SAFETY: as above; the elements' counts move into the value.
    let v = unsafe { Value::from_raw(big, arr.as_ptr().cast()) };
    drop(v);
    let mut arr = std::mem::ManuallyDrop::into_inner(arr);
    // SAFETY: the elements were moved into the value (and dropped with it).
    unsafe { arr.set_len(0) };
    drop(objs);
    h.collect();
    assert_eq!(h.stats().heap_objects, 0, "each count given back once");
}

/// A named pointer newtype whose own destructor would run on objects of other types if
/// it were a built pointer type's representation.
#[derive(Trace)]
#[gc(pointer, unsafe_allow_drop)]
#[repr(transparent)]
struct Loud(Gc<i64>);

// SAFETY: its `Drop` reads no handle.
unsafe impl fing::AllowDrop for Loud {}

impl Drop for Loud {
    fn drop(&mut self) {}
}

#[test]
#[should_panic(
    expected = "fing::TypeBuilder::pointer: reflect_soundness::Loud is not a plain Rust handle type (Gc<T>)"
)]
fn a_built_pointer_type_needs_a_plain_handle_representation() {
    TypeBuilder::pointer(Loud::TYPE, None, Obj::TYPE);
}

#[test]
fn a_value_of_a_built_func_type_holds_a_func() {
    let sig = TypeBuilder::func(&[i64::TYPE], &[i64::TYPE], false);
    assert_eq!(sig.kind(), Kind::Func);
    let v = Value::from(Func::from_frame_fn(sig, SumAll));
    assert_eq!(v.type_of().to_string(), "fn(i64) -> i64");
    let r = v
        .into_func()
        .unwrap()
        .call(vec![Value::from(41i64)])
        .unwrap();
    assert_eq!(r[0].downcast_ref::<i64>(), Some(&41));
}
