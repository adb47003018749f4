//! `Func`, frames and `FrameFn`: function values called through a frame (Go's
//! `reflectcall`).
//!
//! A [`Func`] is a signature (a func-kind [`Type`]) plus a body that reads its arguments
//! from a [`Frame`] and writes its results into it. Rust closures get their body from a
//! generic trampoline; an interpreter implements [`FrameFn`] for its own functions and
//! builds the signature at run time.
//!
//! Frame layout ([`FrameLayout`]), Go's rule: each parameter at its offset aligned up to
//! its alignment, the argument area rounded up to the pointer size; then the results, each
//! aligned up to its alignment, their total rounded up to the pointer size (Go's `nret`,
//! [`results_size`]). Results start where the arguments end (aligned further only for a
//! result whose alignment exceeds a word, which Go does not have). The frame owns what it
//! holds: arguments not taken by the body and results written by it are dropped with the
//! frame, so a body that panics or ignores arguments leaks nothing.

use core::marker::PhantomData;
use core::ptr::NonNull;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::fmt;

use crate::kind::Kind;
use crate::rules::identical;
use crate::ty::{Type, TypeRef};
use crate::value::Value;
use crate::Typed;

const WORD: usize = core::mem::size_of::<usize>();
/// Most parameters or results a frame supports.
pub const MAX_FRAME_SLOTS: usize = 64;

const fn align_up(n: usize, a: usize) -> usize {
    (n + a - 1) & !(a - 1)
}

/// The size of a result list, Go's `nret`: each result's offset aligned up to its
/// alignment, its size added, the total aligned up to the pointer size.
pub fn results_size<'a>(results: impl IntoIterator<Item = &'a Type>) -> usize {
    let mut off = 0;
    for r in results {
        off = align_up(off, r.align());
        off += r.size();
    }
    align_up(off, WORD)
}

/// Where each argument and result of a signature sits in a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Offset of each parameter.
    pub params: Vec<usize>,
    /// Size of the argument area (a multiple of the pointer size).
    pub args_size: usize,
    /// Offset of each result (from the start of the frame).
    pub results: Vec<usize>,
    /// Size of the result area (Go's `nret`).
    pub results_size: usize,
    /// Size of the whole frame.
    pub size: usize,
    /// Alignment of the frame.
    pub align: usize,
}

impl FrameLayout {
    /// The layout of a func type's frame.
    ///
    /// # Panics
    /// If `sig` is not of func kind (`fing::FrameLayout::of: ...`) or has more than
    /// [`MAX_FRAME_SLOTS`] parameters or results.
    pub fn of(sig: &Type) -> FrameLayout {
        assert!(
            sig.kind() == Kind::Func,
            "fing::FrameLayout::of: {sig} is not a func type"
        );
        assert!(
            sig.params().len() <= MAX_FRAME_SLOTS && sig.results().len() <= MAX_FRAME_SLOTS,
            "fing::FrameLayout::of: {sig} has more than {MAX_FRAME_SLOTS} parameters or results"
        );
        let mut align = WORD;
        let mut off = 0;
        let mut params = Vec::with_capacity(sig.params().len());
        for p in sig.params() {
            off = align_up(off, p.align());
            params.push(off);
            off += p.size();
            align = align.max(p.align());
        }
        let args_size = align_up(off, WORD);
        let max_result_align = sig.results().map(Type::align).max().unwrap_or(1);
        let start = align_up(args_size, max_result_align.max(WORD));
        let mut results = Vec::with_capacity(sig.results().len());
        let mut roff = 0;
        for r in sig.results() {
            roff = align_up(roff, r.align());
            results.push(start + roff);
            roff += r.size();
            align = align.max(r.align());
        }
        let results_size = results_size(sig.results());
        debug_assert_eq!(align_up(roff, WORD), results_size);
        FrameLayout {
            params,
            args_size,
            results,
            results_size,
            size: start + results_size,
            align,
        }
    }
}

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

/// Why a [`Func::call`] could not run.
#[derive(Debug)]
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
    const TYPE: &'static Type = &Type::rust::<fn(Vec<Value>) -> R>(Kind::Func)
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
    /// written. This is the frame invoker's entry point.
    pub fn call_frame(self, frame: &mut Frame<'_>) {
        assert!(
            core::ptr::eq(frame.sig, self.sig),
            "fing::Func::call_frame: frame of {} for a func of {}",
            frame.sig,
            self.sig
        );
        self.body.call(frame);
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
        let layout = FrameLayout::of(sig);
        let mut buf = FrameBuf::new();
        let base = buf.reserve(&layout);
        for (a, off) in args.into_iter().zip(&layout.params) {
            // SAFETY: `base` is a frame of `layout.size` bytes aligned to `layout.align`, and
            // the argument's type is identical to the parameter's, whose slot is at `off`.
            unsafe { a.move_to(base.as_ptr().wrapping_add(*off)) };
        }
        // SAFETY: every argument slot was just written with a value of its parameter type.
        let mut frame = unsafe { Frame::new(base, sig, &layout) };
        self.call_frame(&mut frame);
        Ok((0..layout.results.len())
            .filter_map(|i| frame.take_result_value(i))
            .collect())
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

/// A reusable, growable, aligned frame buffer (Go's finalizer frame, reused and grown
/// when a larger frame comes). It holds raw bytes only: it is not a root.
#[derive(Default)]
pub struct FrameBuf {
    ptr: Option<NonNull<u8>>,
    layout: Option<Layout>,
}

// SAFETY: the buffer is raw bytes owned by this value; nothing in it outlives a call.
unsafe impl Send for FrameBuf {}

impl FrameBuf {
    /// An empty buffer.
    pub const fn new() -> FrameBuf {
        FrameBuf {
            ptr: None,
            layout: None,
        }
    }

    /// A pointer to at least `layout.size` bytes aligned to `layout.align`, growing the
    /// buffer if needed. Previous contents are not kept.
    pub fn reserve(&mut self, layout: &FrameLayout) -> NonNull<u8> {
        let need = Layout::from_size_align(layout.size.max(WORD), layout.align)
            .expect("fing::FrameBuf::reserve: impossible frame layout");
        if let (Some(p), Some(have)) = (self.ptr, self.layout) {
            if have.size() >= need.size() && have.align() >= need.align() {
                return p;
            }
        }
        self.release();
        let size = need.size().next_power_of_two();
        let grown = Layout::from_size_align(size, need.align().max(16))
            .expect("fing::FrameBuf::reserve: impossible frame layout");
        // SAFETY: `grown` has a non-zero size (at least one word).
        let p = NonNull::new(unsafe { alloc(grown) }).unwrap_or_else(|| handle_alloc_error(grown));
        self.ptr = Some(p);
        self.layout = Some(grown);
        p
    }

    /// Current capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.layout.map_or(0, |l| l.size())
    }

    fn release(&mut self) {
        if let (Some(p), Some(l)) = (self.ptr.take(), self.layout.take()) {
            // SAFETY: `p` was allocated in `reserve` with exactly `l`.
            unsafe { dealloc(p.as_ptr(), l) };
        }
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        self.release();
    }
}

/// Why a frame access was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// No parameter or result with this index.
    NoSlot {
        /// Index asked for.
        index: usize,
    },
    /// The argument was taken already.
    Taken {
        /// Index asked for.
        index: usize,
    },
    /// The slot's type is not the one asked for.
    Type {
        /// Index asked for.
        index: usize,
        /// The slot's type.
        slot: String,
        /// The type asked for.
        asked: String,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NoSlot { index } => write!(f, "fing::Frame: no slot {index}"),
            FrameError::Taken { index } => write!(f, "fing::Frame: argument {index} already taken"),
            FrameError::Type { index, slot, asked } => {
                write!(f, "fing::Frame: slot {index} holds {slot}, not {asked}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// A call frame: the arguments a body takes and the results it writes, checked against
/// the signature. Owns its unread arguments and its results (dropped with the frame).
pub struct Frame<'a> {
    base: NonNull<u8>,
    sig: &'static Type,
    layout: &'a FrameLayout,
    args_live: u64,
    results_set: u64,
}

impl<'a> Frame<'a> {
    /// Wraps a buffer whose argument slots are all written.
    ///
    /// # Safety
    /// `base` must point to `layout.size` bytes aligned to `layout.align`, valid for the
    /// frame's lifetime and used by nothing else; `layout` must be `FrameLayout::of(sig)`;
    /// every parameter slot must hold a valid value of the parameter's type, whose
    /// ownership passes to the frame.
    pub unsafe fn new(base: NonNull<u8>, sig: &'static Type, layout: &'a FrameLayout) -> Frame<'a> {
        let n = layout.params.len();
        let args_live = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        Frame {
            base,
            sig,
            layout,
            args_live,
            results_set: 0,
        }
    }

    /// The signature.
    pub fn signature(&self) -> &'static Type {
        self.sig
    }

    /// The address of a slot; offsets come from the frame layout, so they lie inside the
    /// frame.
    #[inline]
    fn at(&self, offset: usize) -> *mut u8 {
        self.base.as_ptr().wrapping_add(offset)
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        self.layout.params.len()
    }

    /// Number of results.
    pub fn result_count(&self) -> usize {
        self.layout.results.len()
    }

    fn param_type(&self, i: usize) -> Result<&'static Type, FrameError> {
        let ty = self
            .sig
            .params()
            .nth(i)
            .ok_or(FrameError::NoSlot { index: i })?;
        if self.args_live >> i & 1 == 0 {
            return Err(FrameError::Taken { index: i });
        }
        Ok(ty)
    }

    /// Takes argument `i` as a `T` (identical to the parameter type).
    pub fn take_arg<T: Typed>(&mut self, i: usize) -> Result<T, FrameError> {
        let ty = self.param_type(i)?;
        if !identical(ty, T::TYPE) || ty.kind() == Kind::Func {
            return Err(FrameError::Type {
                index: i,
                slot: ty.to_string(),
                asked: T::TYPE.to_string(),
            });
        }
        // SAFETY: slot `i` is live and holds a value of a type identical to `T`.
        Ok(unsafe { self.take_unchecked(i) })
    }

    /// Takes argument `i` as a `Value` of the parameter's type (not for func-kind
    /// parameters).
    pub fn take_arg_value(&mut self, i: usize) -> Result<Value, FrameError> {
        let ty = self.param_type(i)?;
        if ty.kind() == Kind::Func {
            return Err(FrameError::Type {
                index: i,
                slot: ty.to_string(),
                asked: "Value".into(),
            });
        }
        self.args_live &= !(1 << i);
        // SAFETY: the slot was live and holds a valid value of `ty`, whose ownership moves
        // into the value (the slot is marked dead first).
        Ok(unsafe { Value::from_raw(ty, self.at(self.layout.params[i])) })
    }

    /// Takes argument `i` without checking.
    ///
    /// # Safety
    /// Argument `i` must exist, be live, and be a `T`.
    pub unsafe fn take_unchecked<T>(&mut self, i: usize) -> T {
        debug_assert!(self.args_live >> i & 1 == 1);
        self.args_live &= !(1 << i);
        // SAFETY: the caller guarantees slot `i` holds a live `T`; it is marked dead, so it is
        // read (moved) once.
        unsafe { self.at(self.layout.params[i]).cast::<T>().read() }
    }

    fn result_slot(&mut self, i: usize) -> Result<(&'static Type, *mut u8), FrameError> {
        let ty = self
            .sig
            .results()
            .nth(i)
            .ok_or(FrameError::NoSlot { index: i })?;
        let p = self.at(self.layout.results[i]);
        if self.results_set >> i & 1 == 1 {
            self.results_set &= !(1 << i);
            // SAFETY: the slot holds a result written earlier, replaced now.
            unsafe { ty.drop_value(p) };
        }
        Ok((ty, p))
    }

    /// Writes result `i` (a `T` identical to the result type).
    pub fn set_result<T: Typed>(&mut self, i: usize, v: T) -> Result<(), FrameError> {
        let (ty, p) = self.result_slot(i)?;
        if !identical(ty, T::TYPE) || ty.kind() == Kind::Func {
            return Err(FrameError::Type {
                index: i,
                slot: ty.to_string(),
                asked: T::TYPE.to_string(),
            });
        }
        // SAFETY: the slot is free, aligned and sized for `ty`, identical to `T`.
        unsafe { p.cast::<T>().write(v) };
        self.results_set |= 1 << i;
        Ok(())
    }

    /// Writes result `i` from a `Value` of the result's type.
    pub fn set_result_value(&mut self, i: usize, v: Value) -> Result<(), FrameError> {
        let (ty, p) = self.result_slot(i)?;
        if !identical(ty, v.type_of()) || ty.kind() == Kind::Func {
            return Err(FrameError::Type {
                index: i,
                slot: ty.to_string(),
                asked: v.type_of().to_string(),
            });
        }
        // SAFETY: the slot is free and sized for `ty`, identical to the value's type.
        unsafe { v.move_to(p) };
        self.results_set |= 1 << i;
        Ok(())
    }

    /// Writes the whole result list without checking.
    ///
    /// # Safety
    /// `R::RESULTS` must be the signature's result types, and no result written yet.
    pub unsafe fn write_results_unchecked<R: Typed>(&mut self, r: R) {
        // SAFETY: the caller guarantees the result list matches; the offsets come from the
        // frame layout of the signature.
        unsafe { r.__write_results(self.base.as_ptr(), &self.layout.results) };
        let n = self.layout.results.len();
        self.results_set = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    }

    /// Takes result `i` out as a `Value` (`None` if the body did not write it).
    pub fn take_result_value(&mut self, i: usize) -> Option<Value> {
        if i >= self.layout.results.len() || self.results_set >> i & 1 == 0 {
            return None;
        }
        let ty = self.sig.results().nth(i)?;
        self.results_set &= !(1 << i);
        // SAFETY: the result slot holds a written value of `ty`, moved out once (marked
        // unset first).
        Some(unsafe { Value::from_raw(ty, self.at(self.layout.results[i])) })
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        for (i, ty) in self.sig.params().enumerate() {
            if self.args_live >> i & 1 == 1 {
                // SAFETY: a live argument slot holds a valid value the frame owns.
                unsafe { ty.drop_value(self.at(self.layout.params[i])) };
            }
        }
        for (i, ty) in self.sig.results().enumerate() {
            if self.results_set >> i & 1 == 1 {
                // SAFETY: a written result slot holds a valid value the frame owns.
                unsafe { ty.drop_value(self.at(self.layout.results[i])) };
            }
        }
    }
}

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
    fn results_size_is_gos_nret() {
        // Hand-computed with Go's rule: align each offset, add the size, round the total
        // up to 8.
        assert_eq!(results_size([]), 0);
        assert_eq!(results_size([ty::<[u8; 32]>()]), 32);
        assert_eq!(results_size([ty::<[u8; 2000]>()]), 2000);
        assert_eq!(results_size([ty::<u8>()]), 8);
        assert_eq!(results_size([ty::<u8>(), ty::<u64>()]), 16); // 0..1, 8..16
        assert_eq!(results_size([ty::<u64>(), ty::<u8>()]), 16); // 0..8, 8..9 -> 16
        assert_eq!(results_size([ty::<u8>(), ty::<u16>(), ty::<u8>()]), 8); // 0, 2..4, 4..5
        assert_eq!(results_size([ty::<u8>(), ty::<[u8; 3]>(), ty::<u32>()]), 8); // 0, 1..4, 4..8
        assert_eq!(results_size([ty::<[u8; 33]>()]), 40);
        assert_eq!(results_size([ty::<String>(), ty::<bool>()]), 32);
    }

    #[test]
    fn frame_layout_of_finalizer_shapes() {
        // fn(i64) -> [u8; 32]: one word of argument, 32 bytes of results.
        let l = FrameLayout::of(ty::<fn(i64) -> [u8; 32]>());
        assert_eq!(l.params, vec![0]);
        assert_eq!(l.args_size, 8);
        assert_eq!(l.results, vec![8]);
        assert_eq!(l.results_size, 32);
        assert_eq!(l.size, 40);
        // fn(Value) -> [u8; 2000]: a Value is three words.
        let l = FrameLayout::of(ty::<fn(Value) -> [u8; 2000]>());
        assert_eq!(l.args_size, 24);
        assert_eq!(l.size, 24 + 2000);
        // fn(u8, u64, u16) -> (u8, u64)
        let l = FrameLayout::of(ty::<fn(u8, u64, u16) -> (u8, u64)>());
        assert_eq!(l.params, vec![0, 8, 16]);
        assert_eq!(l.args_size, 24);
        assert_eq!(l.results, vec![24, 32]);
        assert_eq!(l.results_size, 16);
        assert_eq!(l.size, 40);
        // A result aligned beyond a word starts aligned.
        let l = FrameLayout::of(ty::<fn(u8) -> u128>());
        assert_eq!(l.results[0] % core::mem::align_of::<u128>(), 0);
        assert_eq!(l.align, core::mem::align_of::<u128>());
        // No parameters, no results.
        let l = FrameLayout::of(ty::<fn()>());
        assert_eq!((l.args_size, l.results_size, l.size), (0, 0, 0));
    }

    #[test]
    #[should_panic(expected = "fing::FrameLayout::of: i32 is not a func type")]
    fn frame_layout_of_a_non_func_panics_with_the_api_name() {
        FrameLayout::of(ty::<i32>());
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

    struct Drops(Arc<AtomicUsize>);
    impl Drop for Drops {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
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

    #[test]
    fn a_frame_drops_unread_arguments_and_unread_results() {
        let drops = Arc::new(AtomicUsize::new(0));
        let sig = crate::TypeBuilder::func(&[ty::<Vec<u8>>()], &[ty::<String>()], false);
        struct Ignore;
        impl FrameFn for Ignore {
            fn call(self: Box<Self>, frame: &mut Frame<'_>) {
                frame.set_result(0, String::from("first")).unwrap();
                frame
                    .set_result(0, String::from("second, replacing first"))
                    .unwrap();
            }
        }
        let layout = FrameLayout::of(sig);
        let mut buf = FrameBuf::new();
        let base = buf.reserve(&layout);
        // SAFETY: slot 0 of the fresh frame is sized and aligned for a Vec<u8>.
        unsafe {
            base.as_ptr()
                .wrapping_add(layout.params[0])
                .cast::<Vec<u8>>()
                .write(vec![1, 2, 3])
        };
        {
            // SAFETY: the only argument slot was written above.
            let mut frame = unsafe { Frame::new(base, sig, &layout) };
            Func::from_frame_fn(sig, Ignore).call_frame(&mut frame);
        }
        // Miri / the leak checkers see that the Vec and both Strings were freed; here we
        // check that a Drop type passed through a frame is dropped once.
        let d = Drops(drops.clone());
        let f = Func::new(move |_: u8| drop(d));
        f.call(vec![Value::from(0u8)]).unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn frame_buffer_is_reused_and_grown() {
        let mut buf = FrameBuf::new();
        let small = FrameLayout::of(ty::<fn(i64) -> u8>());
        let p1 = buf.reserve(&small);
        let p2 = buf.reserve(&small);
        assert_eq!(p1, p2, "same-size frames reuse the buffer");
        let big = FrameLayout::of(ty::<fn(i64) -> [u8; 2000]>());
        buf.reserve(&big);
        assert!(buf.capacity() >= big.size);
    }
}
