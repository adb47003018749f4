//! `Func` and `FrameFn`: function values called through a frame (Go's `reflectcall`;
//! frames are `frame`'s).
//!
//! A [`Func`] is a signature (a func-kind [`Type`]) plus a body that reads its arguments
//! from a [`Frame`] and writes its results into it. Rust closures get their body from a
//! generic trampoline; an interpreter implements [`FrameFn`] for its own functions and
//! builds the signature at run time. A call that cannot be made ([`CallError`]: wrong
//! arguments, a frame too large, results with no `Value` form or not written) is an
//! error before or after the body runs, never a panic with a half-built value.

use core::marker::PhantomData;
use std::fmt;

use crate::frame::{Frame, FrameBuf, FrameError, FrameLayout};
use crate::kind::Kind;
use crate::rules::identical;
use crate::ty::{Type, TypeRef};
use crate::value::Value;
use crate::Typed;

/// The body of a function value: reads its arguments from the frame, writes its results.
///
/// Safe to implement: the frame checks every access against the signature. A body called
/// as a finalizer runs once, on the finalizer thread.
pub trait FrameFn: Send + 'static {
    /// Runs the function on `frame`.
    fn call(self: Box<Self>, frame: &mut Frame<'_>);
}

/// A function value: a signature and a body.
pub struct Func {
    sig: &'static Type,
    body: Body,
}

/// A function body, by value when it is small (Rust closures capturing up to two words:
/// nothing, a handle, an `Arc`): no allocation to make one, none to free after the call.
/// A larger body, or an interpreter's `FrameFn`, is a `Box<dyn FrameFn>` stored in the
/// same two words. Invariant: `data` holds an initialised value of the type `vt` was made
/// for (`VtOf<T>`), owned by the body.
struct Body {
    data: core::mem::MaybeUninit<[*mut u8; 2]>,
    vt: &'static BodyVt,
    /// Auto traits as the boxed body's: `Send` (every body is), not `Sync`.
    _owns: PhantomData<Box<dyn FrameFn>>,
}

// SAFETY: the value in `data` is `Send` (`Invoke: Send`); the pointers are its bytes.
unsafe impl Send for Body {}

struct BodyVt {
    /// Moves the value out of `data` and runs it on the frame.
    call: unsafe fn(*mut u8, &mut Frame<'_>),
    /// Drops the value in `data`.
    drop: unsafe fn(*mut u8),
    /// For a one-parameter Rust closure: moves the value out of `data` and calls it with
    /// the argument moved out of the second pointer, without a frame.
    unary: Option<UnaryFn>,
}

type UnaryFn = unsafe fn(*mut u8, *mut u8);

/// A body called by value.
trait Invoke: Send + 'static {
    fn invoke(self, frame: &mut Frame<'_>);
    /// See `BodyVt::unary`.
    const UNARY: Option<UnaryFn> = None;
}

impl Invoke for Box<dyn FrameFn> {
    fn invoke(self, frame: &mut Frame<'_>) {
        self.call(frame)
    }
}

struct VtOf<T>(PhantomData<T>);

impl<T: Invoke> VtOf<T> {
    const VT: &'static BodyVt = &BodyVt {
        call: Self::call,
        drop: Self::drop,
        unary: T::UNARY,
    };

    /// # Safety
    /// `data` holds an initialised `T`, which this moves out (the caller must not drop it).
    unsafe fn call(data: *mut u8, frame: &mut Frame<'_>) {
        // SAFETY: the caller's contract.
        unsafe { data.cast::<T>().read() }.invoke(frame)
    }

    /// # Safety
    /// `data` holds an initialised `T`, dropped here once.
    unsafe fn drop(data: *mut u8) {
        // SAFETY: the caller's contract.
        unsafe { data.cast::<T>().drop_in_place() }
    }
}

impl Body {
    /// `t` by value if it fits in two words, else boxed.
    fn new<T: Invoke + FrameFn>(t: T) -> Body {
        if core::mem::size_of::<T>() <= core::mem::size_of::<[*mut u8; 2]>()
            && core::mem::align_of::<T>() <= core::mem::align_of::<*mut u8>()
        {
            Body::inline(t)
        } else {
            Body::inline::<Box<dyn FrameFn>>(Box::new(t))
        }
    }

    fn inline<T: Invoke>(t: T) -> Body {
        assert!(
            core::mem::size_of::<T>() <= core::mem::size_of::<[*mut u8; 2]>()
                && core::mem::align_of::<T>() <= core::mem::align_of::<*mut u8>(),
            "fing::Func: a body stored by value fits in two words"
        );
        let mut data = core::mem::MaybeUninit::<[*mut u8; 2]>::uninit();
        // SAFETY: `data` is two words, suitably aligned for `T` (checked above); it is
        // uninitialised, so nothing is overwritten.
        unsafe { data.as_mut_ptr().cast::<T>().write(t) };
        Body {
            data,
            vt: VtOf::<T>::VT,
            _owns: PhantomData,
        }
    }

    fn call(self, frame: &mut Frame<'_>) {
        let mut me = core::mem::ManuallyDrop::new(self);
        let call = me.vt.call;
        // SAFETY: `data` holds the value `vt` was made for (the invariant); `me` is never
        // dropped, so the value moved out is not dropped again.
        unsafe { call(me.data.as_mut_ptr().cast(), frame) }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // SAFETY: `data` holds the value `vt` was made for, dropped once, here.
        unsafe { (self.vt.drop)(self.data.as_mut_ptr().cast()) }
    }
}

impl fmt::Debug for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Func({})", self.sig)
    }
}

/// Why a [`Func::call`] (or [`Func::call_frame`]) could not run, or could not return.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The number of arguments does not match the signature.
    ArgCount {
        /// The signature.
        func: String,
        /// How many were given.
        given: usize,
    },
    /// An argument's type is not the parameter's type.
    ArgType {
        /// The signature.
        func: String,
        /// Parameter index.
        index: usize,
        /// The argument's type.
        arg: String,
    },
    /// Result `index` is of func kind: a function pointer has no `Value` form here
    /// (call it through a `Frame`, or return a `Func` wrapped in a type of your own).
    /// Refused before the body runs.
    FuncResult {
        /// The signature.
        func: String,
        /// Result index.
        index: usize,
    },
    /// The body returned without writing result `index` (the other results it wrote
    /// were dropped).
    Unwritten {
        /// The signature.
        func: String,
        /// Result index.
        index: usize,
    },
    /// The signature's frame cannot be laid out (larger than `isize::MAX` bytes).
    Frame(FrameError),
    /// `call_frame` was given a frame laid out for another signature.
    FrameMismatch {
        /// The function's signature.
        func: String,
        /// The frame's.
        frame: String,
    },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::ArgCount { func, given } => {
                write!(f, "fing::Func::call: {func} called with {given} arguments")
            }
            CallError::ArgType { func, index, arg } => {
                write!(
                    f,
                    "fing::Func::call: cannot use {arg} as argument {index} of {func}"
                )
            }
            CallError::FuncResult { func, index } => write!(
                f,
                "fing::Func::call: result {index} of {func} is a function, which has no Value form"
            ),
            CallError::Unwritten { func, index } => {
                write!(f, "fing::Func::call: {func} did not write result {index}")
            }
            CallError::Frame(e) => fmt::Display::fmt(e, f),
            CallError::FrameMismatch { func, frame } => write!(
                f,
                "fing::Func::call_frame: a frame of {frame} for a func of {func}"
            ),
        }
    }
}

impl std::error::Error for CallError {}

struct Closure<F, A>(F, PhantomData<fn(A)>);

macro_rules! closure {
    ($($n:tt $a:ident),* $(; $unary:expr)?) => {
        impl<F, R, $($a),*> FrameFn for Closure<F, ($($a,)*)>
        where
            F: FnOnce($($a),*) -> R + Send + 'static,
            R: Typed,
            $($a: Typed,)*
        {
            fn call(self: Box<Self>, frame: &mut Frame<'_>) {
                (*self).invoke(frame)
            }
        }

        impl<F, R, $($a),*> Invoke for Closure<F, ($($a,)*)>
        where
            F: FnOnce($($a),*) -> R + Send + 'static,
            R: Typed,
            $($a: Typed,)*
        {
            $(const UNARY: Option<UnaryFn> = $unary;)?

            #[allow(unused_variables)]
            fn invoke(self, frame: &mut Frame<'_>) {
                let r = (self.0)($(
                    // SAFETY: the closure's `Func` was made with the signature
                    // `fn($($a),*) -> R`, so parameter $n is a `$a`.
                    unsafe { frame.take_unchecked::<$a>($n) }
                ),*);
                // SAFETY: as above, for the results.
                unsafe { frame.write_results_unchecked(r) };
            }
        }
    };
}
closure!();
closure!(0 A; Some(Self::unary));
closure!(0 A, 1 B);
closure!(0 A, 1 B, 2 C);

impl<F, R, A> Closure<F, (A,)>
where
    F: FnOnce(A) -> R + Send + 'static,
    R: Typed,
    A: Typed,
{
    /// # Safety
    /// `data` holds a `Self` and `arg` an `A`; both are moved out.
    unsafe fn unary(data: *mut u8, arg: *mut u8) {
        // SAFETY: the caller's contract.
        let f = unsafe { data.cast::<Self>().read() };
        // SAFETY: the caller's contract.
        let a = unsafe { arg.cast::<A>().read() };
        // The results are dropped, as a frame drops the results it was given.
        drop((f.0)(a));
    }
}

struct VariadicSig<R>(PhantomData<R>);
impl<R: Typed> VariadicSig<R> {
    // SAFETY: a func kind with the representation of `fn(Vec<Value>) -> R`, standing for
    // the variadic `fn(...Value) -> R` (its own identity): every func-kind value holds a
    // `Func`, whose body (`Variadic`) takes a `Vec<Value>` and writes `R::RESULTS`.
    const TYPE: &'static Type = &unsafe { Type::rust::<fn(Vec<Value>) -> R>(Kind::Func) }
        .with_ident(crate::ty::TypeIdent::Rust(core::any::TypeId::of::<
            VariadicSig<R>,
        >()))
        .with_signature(&[TypeRef::of::<Vec<Value>>()], R::RESULTS, true);
}

struct Variadic<F>(F);
impl<F, R> FrameFn for Variadic<F>
where
    F: FnOnce(&[Value]) -> R + Send + 'static,
    R: Typed,
{
    fn call(self: Box<Self>, frame: &mut Frame<'_>) {
        (*self).invoke(frame)
    }
}

impl<F, R> Invoke for Variadic<F>
where
    F: FnOnce(&[Value]) -> R + Send + 'static,
    R: Typed,
{
    fn invoke(self, frame: &mut Frame<'_>) {
        // SAFETY: `Func::variadic` made the signature `fn(...Value) -> R`: parameter 0 is
        // a `Vec<Value>`.
        let args = unsafe { frame.take_unchecked::<Vec<Value>>(0) };
        let r = (self.0)(&args);
        // SAFETY: the results are `R::RESULTS`.
        unsafe { frame.write_results_unchecked(r) };
    }
}

impl Func {
    /// A function of one parameter (the finalizer shape). Its signature is
    /// `fn(A) -> R`; a tuple `R` is a result list.
    pub fn new<A: Typed, R: Typed>(f: impl FnOnce(A) -> R + Send + 'static) -> Func {
        Func {
            sig: <fn(A) -> R as Typed>::TYPE,
            body: Body::new(Closure::<_, (A,)>(f, PhantomData)),
        }
    }

    /// A function of no parameters.
    pub fn nullary<R: Typed>(f: impl FnOnce() -> R + Send + 'static) -> Func {
        Func {
            sig: <fn() -> R as Typed>::TYPE,
            body: Body::new(Closure::<_, ()>(f, PhantomData)),
        }
    }

    /// A function of two parameters.
    pub fn binary<A: Typed, B: Typed, R: Typed>(
        f: impl FnOnce(A, B) -> R + Send + 'static,
    ) -> Func {
        Func {
            sig: <fn(A, B) -> R as Typed>::TYPE,
            body: Body::new(Closure::<_, (A, B)>(f, PhantomData)),
        }
    }

    /// A function of three parameters.
    pub fn ternary<A: Typed, B: Typed, C: Typed, R: Typed>(
        f: impl FnOnce(A, B, C) -> R + Send + 'static,
    ) -> Func {
        Func {
            sig: <fn(A, B, C) -> R as Typed>::TYPE,
            body: Body::new(Closure::<_, (A, B, C)>(f, PhantomData)),
        }
    }

    /// A variadic function, `fn(...Value) -> R`: its one parameter is a `Vec<Value>`.
    pub fn variadic<R: Typed>(f: impl FnOnce(&[Value]) -> R + Send + 'static) -> Func {
        Func {
            sig: VariadicSig::<R>::TYPE,
            body: Body::new(Variadic(f)),
        }
    }

    /// An interpreter's function: a signature built at run time (or any func type) and a
    /// body that works on the frame.
    ///
    /// # Panics
    /// If `signature` is not of func kind.
    pub fn from_frame_fn(signature: &'static Type, f: impl FrameFn) -> Func {
        assert!(
            signature.kind() == Kind::Func,
            "fing::Func::from_frame_fn: {signature} is not a func type"
        );
        Func {
            sig: signature,
            body: Body::inline::<Box<dyn FrameFn>>(Box::new(f)),
        }
    }

    pub(crate) fn from_fn_ptr<P: FnPtr>(p: P) -> Func {
        p.into_func()
    }

    /// The signature.
    #[inline]
    pub fn signature(&self) -> &'static Type {
        self.sig
    }

    /// Whether `call_unary` can run this function without a frame: a one-parameter Rust
    /// closure (`Func::new`).
    #[inline]
    pub fn is_direct_unary(&self) -> bool {
        self.body.vt.unary.is_some()
    }

    /// Calls a one-parameter Rust closure without a frame (the invoker's fast path for
    /// finalizers set from Rust), dropping its results; gives the function back if it is
    /// not one (see `is_direct_unary`), with `arg` untouched.
    ///
    /// # Safety
    /// `arg` must point to a valid value of the signature's parameter type, suitably
    /// aligned; on `Ok` the call has taken it over (the caller must not use or drop it).
    #[doc(hidden)]
    pub unsafe fn call_unary(self, arg: *mut u8) -> Result<(), Func> {
        let mut this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped here; on `true` the call took it over, on
        // `false` it is handed back whole. `arg` is the caller's contract.
        if unsafe { Func::call_unary_in_place(&mut this, arg) } {
            Ok(())
        } else {
            Err(core::mem::ManuallyDrop::into_inner(this))
        }
    }

    /// `call_unary` on a function where it lies (a queued finalizer's, in its queue),
    /// without moving it: `true` if it ran (it is then taken over), `false` (and nothing
    /// done) if it is not a one-parameter Rust closure.
    ///
    /// # Safety
    /// As `call_unary` for `arg`; `this` is a valid function, which after `true` (or an
    /// unwind out of the call) the caller must neither use nor drop.
    #[doc(hidden)]
    #[inline]
    pub unsafe fn call_unary_in_place(this: &mut Func, arg: *mut u8) -> bool {
        let Some(unary) = this.body.vt.unary else {
            return false;
        };
        // SAFETY: the body's value is the closure `unary` was made for (`VtOf` pairs
        // them); the caller never uses or drops `this` again, so that value is moved out
        // once; `arg` is the caller's contract, and the closure's one parameter is the
        // signature's.
        unsafe { unary(this.body.data.as_mut_ptr().cast(), arg) };
        true
    }

    /// Runs the body on a frame laid out for the signature, whose arguments are all
    /// written. This is the frame invoker's entry point. A frame of another signature is
    /// refused (`CallError::FrameMismatch`), and the function dropped uncalled.
    pub fn call_frame(self, frame: &mut Frame<'_>) -> Result<(), CallError> {
        if !core::ptr::eq(frame.signature(), self.sig) {
            return Err(CallError::FrameMismatch {
                func: self.sig.to_string(),
                frame: frame.signature().to_string(),
            });
        }
        self.body.call(frame);
        Ok(())
    }

    /// Calls the function with `args`, each identical in type to its parameter, and
    /// returns its results. (A reflect-style call through a fresh frame.)
    pub fn call(self, args: Vec<Value>) -> Result<Vec<Value>, CallError> {
        let sig = self.sig;
        if args.len() != sig.params().len() {
            return Err(CallError::ArgCount {
                func: sig.to_string(),
                given: args.len(),
            });
        }
        for (i, (a, p)) in args.iter().zip(sig.params()).enumerate() {
            if !identical(a.type_of(), p) || a.kind() == Kind::Func {
                return Err(CallError::ArgType {
                    func: sig.to_string(),
                    index: i,
                    arg: a.type_of().to_string(),
                });
            }
        }
        if let Some(index) = sig.results().position(|r| r.kind() == Kind::Func) {
            return Err(CallError::FuncResult {
                func: sig.to_string(),
                index,
            });
        }
        let layout = FrameLayout::of(sig).map_err(CallError::Frame)?;
        let mut buf = FrameBuf::new();
        let base = buf.reserve(&layout);
        for (a, off) in args.into_iter().zip(&layout.params) {
            // SAFETY: `base` is a frame of `layout.size` bytes aligned to `layout.align`, and
            // the argument's type is identical to the parameter's, whose slot is at `off`.
            unsafe { a.move_to(base.as_ptr().wrapping_add(*off)) };
        }
        // SAFETY: every argument slot was just written with a value of its parameter type.
        let mut frame = unsafe { Frame::new(base, sig, &layout) };
        self.call_frame(&mut frame)?;
        if let Some(index) = (0..layout.results.len()).find(|&i| !frame.is_result_written(i)) {
            return Err(CallError::Unwritten {
                func: sig.to_string(),
                index,
            });
        }
        (0..layout.results.len())
            .map(|i| frame.take_result_value(i).map_err(CallError::Frame))
            .collect()
    }
}

/// Function pointer types that become `Func`s.
pub(crate) trait FnPtr {
    fn into_func(self) -> Func;
}
macro_rules! fn_ptr {
    ($ctor:ident; $($a:ident),*) => {
        impl<$($a: Typed,)* R: Typed> FnPtr for fn($($a),*) -> R {
            fn into_func(self) -> Func {
                Func::$ctor(self)
            }
        }
    };
}
fn_ptr!(nullary;);
fn_ptr!(new; A);
fn_ptr!(binary; A, B);
fn_ptr!(ternary; A, B, C);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn ty<T: Typed>() -> &'static Type {
        T::TYPE
    }

    /// Small bodies are stored by value, large ones boxed; either way a body's captures
    /// are dropped exactly once: after the call, or with an uncalled `Func`.
    #[test]
    fn bodies_by_value_and_boxed_drop_their_captures_once() {
        let small = Arc::new(AtomicUsize::new(0));
        let big = Arc::new(AtomicUsize::new(0));
        let pad = [7u64; 8];
        let (s1, b1) = (small.clone(), big.clone());
        let f_small = Func::new(move |x: i64| {
            s1.fetch_add(x as usize, Ordering::SeqCst);
        });
        let f_big = Func::new(move |x: i64| {
            b1.fetch_add(x as usize + pad[3] as usize, Ordering::SeqCst);
        });
        // One `Arc` fits the body's two words; 72 bytes of captures do not.
        assert!(core::mem::size_of_val(&small) <= 16 && core::mem::size_of_val(&pad) > 16);
        assert_eq!(Arc::strong_count(&small), 2);
        f_small.call(vec![Value::from(2i64)]).unwrap();
        f_big.call(vec![Value::from(1i64)]).unwrap();
        assert_eq!(small.load(Ordering::SeqCst), 2);
        assert_eq!(big.load(Ordering::SeqCst), 8);
        assert_eq!((Arc::strong_count(&small), Arc::strong_count(&big)), (1, 1));
        let (s2, b2) = (small.clone(), big.clone());
        drop(Func::new(move |_: i64| drop(s2)));
        drop(Func::new(move |_: i64| drop((b2, pad))));
        assert_eq!((Arc::strong_count(&small), Arc::strong_count(&big)), (1, 1));
    }

    #[test]
    fn closures_of_every_shape_run_through_frames() {
        let f = Func::new(|x: i64| -> [u8; 32] { [x as u8; 32] });
        assert_eq!(f.signature().to_string(), "fn(i64) -> [u8; 32]");
        let r = f.call(vec![Value::from(3i64)]).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.into_iter()
                .next()
                .unwrap()
                .downcast::<[u8; 32]>()
                .unwrap(),
            [3; 32]
        );

        let f = Func::binary(|a: String, b: u8| (a.len() as u64, b as u16 * 2));
        assert_eq!(f.signature().to_string(), "fn(String, u8) -> (u64, u16)");
        let r = f
            .call(vec![Value::from("hello"), Value::from(21u8)])
            .unwrap();
        let r: Vec<_> = r.into_iter().collect();
        assert_eq!(r[0].downcast_ref::<u64>(), Some(&5));
        assert_eq!(r[1].downcast_ref::<u16>(), Some(&42));

        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let f = Func::nullary(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(f.signature().to_string(), "fn()");
        assert!(f.call(vec![]).unwrap().is_empty());
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let f = Func::variadic(|args: &[Value]| args.len() as i32);
        assert_eq!(f.signature().to_string(), "fn(...Value) -> i32");
        assert!(f.signature().is_variadic());
        let args = vec![Value::from(1u8), Value::from("x"), Value::nil()];
        let r = f.call(vec![Value::new(args)]).unwrap();
        assert_eq!(r[0].downcast_ref::<i32>(), Some(&3));

        let f = Func::ternary(|a: u8, b: u16, c: u32| a as u64 + b as u64 + c as u64);
        let r = f
            .call(vec![Value::from(1u8), Value::from(2u16), Value::from(3u32)])
            .unwrap();
        assert_eq!(r[0].downcast_ref::<u64>(), Some(&6));
    }

    #[test]
    fn variadic_and_plain_signatures_are_distinct_types() {
        let v = Func::variadic(|_: &[Value]| ()).signature();
        let p = ty::<fn(Vec<Value>)>();
        assert!(!crate::rules::identical(v, p));
        assert_eq!(p.to_string(), "fn([Value])");
    }

    #[test]
    fn call_checks_arguments_and_names_the_types() {
        let f = Func::new(|x: i64| x);
        let e = f.call(vec![Value::from(1u8)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fing::Func::call: cannot use u8 as argument 0 of fn(i64) -> i64"
        );
        let f = Func::new(|x: i64| x);
        let e = f.call(vec![]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fing::Func::call: fn(i64) -> i64 called with 0 arguments"
        );
    }

    /// An interpreter's function: adds its two i64 arguments, ignores a third String one
    /// (which the frame must drop), and writes one result.
    struct ScriptAdd;
    impl FrameFn for ScriptAdd {
        fn call(self: Box<Self>, frame: &mut Frame<'_>) {
            assert!(matches!(
                frame.take_arg::<u8>(0),
                Err(FrameError::Type { .. })
            ));
            let a = frame.take_arg::<i64>(0).unwrap();
            assert_eq!(
                frame.take_arg::<i64>(0),
                Err(FrameError::Taken { index: 0 })
            );
            let b = frame.take_arg_value(1).unwrap().downcast::<i64>().unwrap();
            assert_eq!(
                frame.set_result(0, 1u8),
                Err(FrameError::Type {
                    index: 0,
                    slot: "i64".into(),
                    asked: "u8".into()
                })
            );
            frame.set_result_value(0, Value::from(a + b)).unwrap();
            assert_eq!(
                frame.set_result(1, 0i64),
                Err(FrameError::NoSlot { index: 1 })
            );
        }
    }

    #[test]
    fn frame_fn_bodies_are_checked_and_leak_nothing() {
        let sig = crate::TypeBuilder::func(
            &[ty::<i64>(), ty::<i64>(), ty::<String>()],
            &[ty::<i64>()],
            false,
        );
        assert_eq!(sig.to_string(), "fn(i64, i64, String) -> i64");
        let f = Func::from_frame_fn(sig, ScriptAdd);
        let r = f
            .call(vec![
                Value::from(40i64),
                Value::from(2i64),
                Value::from("dropped by the frame"),
            ])
            .unwrap();
        assert_eq!(r[0].downcast_ref::<i64>(), Some(&42));
    }
}
