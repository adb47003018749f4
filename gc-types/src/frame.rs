//! Frames (Go's `reflectcall` frames): where a function value's arguments and results
//! live during a call, laid out from its signature ([`FrameLayout`]), in a reusable buffer
//! ([`FrameBuf`]), read and written through a [`Frame`] that checks every access.
//!
//! Frame layout, Go's rule: each parameter at its offset aligned up to its alignment, the
//! argument area rounded up to the pointer size; then the results, each aligned up to its
//! alignment, their total rounded up to the pointer size (Go's `nret`, [`results_size`]).
//! Results start where the arguments end (aligned further only for a result whose
//! alignment exceeds a word, which Go does not have). A frame of any number of parameters
//! and results can be laid out; one larger than `isize::MAX` bytes cannot, and says so.
//!
//! The frame owns what it holds: arguments not taken by the body and results written by
//! it are dropped with the frame, so a body that panics or ignores arguments leaks
//! nothing. Which slots hold values is kept in bit sets ([`Bits`]), one bit per slot.

use core::ptr::NonNull;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::fmt;

use crate::kind::Kind;
use crate::rules::identical;
use crate::ty::Type;
use crate::value::Value;
use crate::Typed;

const WORD: usize = core::mem::size_of::<usize>();

/// `n` aligned up to `a` (a power of two), or `None` past `isize::MAX`.
const fn align_up(n: usize, a: usize) -> Option<usize> {
    match n.checked_add(a - 1) {
        Some(m) if m & !(a - 1) <= isize::MAX as usize => Some(m & !(a - 1)),
        _ => None,
    }
}

/// The size of a result list, Go's `nret`: each result's offset aligned up to its
/// alignment, its size added, the total aligned up to the pointer size. `usize::MAX` if
/// it would pass `isize::MAX` (no frame can hold such results; `FrameLayout::of` says so).
pub fn results_size<'a>(results: impl IntoIterator<Item = &'a Type>) -> usize {
    let mut off = Some(0usize);
    for r in results {
        off = off
            .and_then(|o| align_up(o, r.align()))
            .and_then(|o| o.checked_add(r.size()));
    }
    off.and_then(|o| align_up(o, WORD)).unwrap_or(usize::MAX)
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
    /// The layout of a func type's frame: `FrameError::NotFunc` if `sig` is not of func
    /// kind, `FrameError::TooLarge` if the frame would be larger than `isize::MAX` bytes.
    pub fn of(sig: &Type) -> Result<FrameLayout, FrameError> {
        if sig.kind() != Kind::Func {
            return Err(FrameError::NotFunc {
                ty: sig.to_string(),
            });
        }
        let too_large = || FrameError::TooLarge {
            sig: sig.to_string(),
        };
        let mut align = WORD;
        let mut off = 0usize;
        let mut params = Vec::with_capacity(sig.params().len());
        for p in sig.params() {
            off = align_up(off, p.align()).ok_or_else(too_large)?;
            params.push(off);
            off = off.checked_add(p.size()).ok_or_else(too_large)?;
            align = align.max(p.align());
        }
        let args_size = align_up(off, WORD).ok_or_else(too_large)?;
        let max_result_align = sig.results().map(Type::align).max().unwrap_or(1);
        let start = align_up(args_size, max_result_align.max(WORD)).ok_or_else(too_large)?;
        let mut results = Vec::with_capacity(sig.results().len());
        let mut roff = 0usize;
        for r in sig.results() {
            roff = align_up(roff, r.align()).ok_or_else(too_large)?;
            results.push(start.checked_add(roff).ok_or_else(too_large)?);
            roff = roff.checked_add(r.size()).ok_or_else(too_large)?;
            align = align.max(r.align());
        }
        let results_size = align_up(roff, WORD).ok_or_else(too_large)?;
        debug_assert_eq!(results_size, self::results_size(sig.results()));
        let size = start
            .checked_add(results_size)
            .and_then(|s| align_up(s, align))
            .ok_or_else(too_large)?;
        Ok(FrameLayout {
            params,
            args_size,
            results,
            results_size,
            size,
            align,
        })
    }
}

/// A reusable, growable, aligned frame buffer (Go's finalizer frame, reused and grown
/// when a larger frame comes). It holds raw bytes only: it is not a root.
#[derive(Default)]
pub struct FrameBuf {
    ptr: Option<NonNull<u8>>,
    layout: Option<Layout>,
}

// SAFETY: the buffer is raw bytes owned by this value; nothing in it outlives a call.
unsafe impl Send for FrameBuf {}

impl fmt::Debug for FrameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBuf")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl FrameBuf {
    /// An empty buffer.
    pub const fn new() -> FrameBuf {
        FrameBuf {
            ptr: None,
            layout: None,
        }
    }

    /// A pointer to at least `layout.size` bytes aligned to `layout.align`, growing the
    /// buffer if needed. Previous contents are not kept. (A layout from
    /// [`FrameLayout::of`] always fits an allocation; memory exhaustion aborts, as for a
    /// `Vec`.)
    pub fn reserve(&mut self, layout: &FrameLayout) -> NonNull<u8> {
        let need = Layout::from_size_align(layout.size.max(WORD), layout.align)
            .expect("fing::FrameBuf::reserve: a layout FrameLayout::of did not make");
        if let (Some(p), Some(have)) = (self.ptr, self.layout) {
            if have.size() >= need.size() && have.align() >= need.align() {
                return p;
            }
        }
        self.release();
        // Grown to a power of two while that stays a valid layout (reuse), else exact.
        let grown = need
            .size()
            .checked_next_power_of_two()
            .and_then(|size| Layout::from_size_align(size, need.align().max(16)).ok())
            .unwrap_or(need);
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

/// Why a frame could not be made or a frame access was refused.
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
    /// The result was not written (or was taken already).
    Unwritten {
        /// Index asked for.
        index: usize,
    },
    /// The slot's type is not the one asked for, or has no `Value` form (a function
    /// pointer: its `Func` is made only from the Rust type).
    Type {
        /// Index asked for.
        index: usize,
        /// The slot's type.
        slot: String,
        /// The type asked for.
        asked: String,
    },
    /// A frame was asked of a type that is not a func type.
    NotFunc {
        /// The type.
        ty: String,
    },
    /// The signature's frame would be larger than `isize::MAX` bytes.
    TooLarge {
        /// The signature.
        sig: String,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NoSlot { index } => write!(f, "fing::Frame: no slot {index}"),
            FrameError::Taken { index } => write!(f, "fing::Frame: argument {index} already taken"),
            FrameError::Unwritten { index } => {
                write!(f, "fing::Frame: result {index} was not written")
            }
            FrameError::Type { index, slot, asked } => {
                write!(f, "fing::Frame: slot {index} holds {slot}, not {asked}")
            }
            FrameError::NotFunc { ty } => {
                write!(f, "fing::FrameLayout::of: {ty} is not a func type")
            }
            FrameError::TooLarge { sig } => write!(
                f,
                "fing::FrameLayout::of: the frame of {sig} would be larger than isize::MAX bytes"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// One bit per slot of a frame: inline for up to 64 slots, boxed beyond.
#[derive(Debug)]
enum Bits {
    Inline(u64),
    Boxed(Box<[u64]>),
}

impl Bits {
    /// `n` bits, all set or all clear.
    fn new(n: usize, set: bool) -> Bits {
        if n <= 64 {
            return Bits::Inline(if set { low(n) } else { 0 });
        }
        let mut words = vec![if set { u64::MAX } else { 0 }; n.div_ceil(64)].into_boxed_slice();
        if set && !n.is_multiple_of(64) {
            *words.last_mut().expect("n > 64") = low(n % 64);
        }
        Bits::Boxed(words)
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Bits::Inline(w) => i < 64 && w >> i & 1 == 1,
            Bits::Boxed(ws) => ws.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1),
        }
    }

    fn set(&mut self, i: usize, v: bool) {
        let (w, bit) = match self {
            Bits::Inline(w) => (w, i),
            Bits::Boxed(ws) => (&mut ws[i / 64], i % 64),
        };
        if v {
            *w |= 1 << bit;
        } else {
            *w &= !(1 << bit);
        }
    }
}

/// The mask of the low `n` bits of a word (`n` ≤ 64).
fn low(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// A call frame: the arguments a body takes and the results it writes, checked against
/// the signature. Owns its unread arguments and its results (dropped with the frame).
pub struct Frame<'a> {
    base: NonNull<u8>,
    sig: &'static Type,
    layout: &'a FrameLayout,
    args_live: Bits,
    results_set: Bits,
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("sig", &self.sig.to_string())
            .field("size", &self.layout.size)
            .finish_non_exhaustive()
    }
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
        Frame {
            base,
            sig,
            layout,
            args_live: Bits::new(layout.params.len(), true),
            results_set: Bits::new(layout.results.len(), false),
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
        if !self.args_live.get(i) {
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
    /// parameters, which have no `Value` form here).
    pub fn take_arg_value(&mut self, i: usize) -> Result<Value, FrameError> {
        let ty = self.param_type(i)?;
        if ty.kind() == Kind::Func {
            return Err(FrameError::Type {
                index: i,
                slot: ty.to_string(),
                asked: "Value".into(),
            });
        }
        self.args_live.set(i, false);
        // SAFETY: the slot was live and holds a valid value of `ty` (not of func kind),
        // whose ownership moves into the value (the slot is marked dead first).
        Ok(unsafe { Value::from_raw(ty, self.at(self.layout.params[i])) })
    }

    /// Takes argument `i` without checking.
    ///
    /// # Safety
    /// Argument `i` must exist, be live, and be a `T`.
    pub unsafe fn take_unchecked<T>(&mut self, i: usize) -> T {
        debug_assert!(self.args_live.get(i));
        self.args_live.set(i, false);
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
        if self.results_set.get(i) {
            self.results_set.set(i, false);
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
        self.results_set.set(i, true);
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
        self.results_set.set(i, true);
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
        self.results_set = Bits::new(self.layout.results.len(), true);
    }

    /// Has the body written result `i`?
    pub fn is_result_written(&self, i: usize) -> bool {
        self.results_set.get(i)
    }

    /// Takes result `i` out as a `Value`: `FrameError::Unwritten` if the body did not write
    /// it, `FrameError::Type` for a func-kind result (a function pointer has no `Value`
    /// form).
    pub fn take_result_value(&mut self, i: usize) -> Result<Value, FrameError> {
        let ty = self
            .sig
            .results()
            .nth(i)
            .ok_or(FrameError::NoSlot { index: i })?;
        if !self.results_set.get(i) {
            return Err(FrameError::Unwritten { index: i });
        }
        if ty.kind() == Kind::Func {
            return Err(FrameError::Type {
                index: i,
                slot: ty.to_string(),
                asked: "Value".into(),
            });
        }
        self.results_set.set(i, false);
        // SAFETY: the result slot holds a written value of `ty` (not of func kind), moved
        // out once (marked unset first).
        Ok(unsafe { Value::from_raw(ty, self.at(self.layout.results[i])) })
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        for (i, ty) in self.sig.params().enumerate() {
            if self.args_live.get(i) {
                // SAFETY: a live argument slot holds a valid value the frame owns.
                unsafe { ty.drop_value(self.at(self.layout.params[i])) };
            }
        }
        for (i, ty) in self.sig.results().enumerate() {
            if self.results_set.get(i) {
                // SAFETY: a written result slot holds a valid value the frame owns.
                unsafe { ty.drop_value(self.at(self.layout.results[i])) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::func::{FrameFn, Func};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn ty<T: Typed>() -> &'static Type {
        T::TYPE
    }

    struct Drops(Arc<AtomicUsize>);
    impl Drop for Drops {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
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
        let l = FrameLayout::of(ty::<fn(i64) -> [u8; 32]>()).unwrap();
        assert_eq!(l.params, vec![0]);
        assert_eq!(l.args_size, 8);
        assert_eq!(l.results, vec![8]);
        assert_eq!(l.results_size, 32);
        assert_eq!(l.size, 40);
        // fn(Value) -> [u8; 2000]: a Value is three words.
        let l = FrameLayout::of(ty::<fn(Value) -> [u8; 2000]>()).unwrap();
        assert_eq!(l.args_size, 24);
        assert_eq!(l.size, 24 + 2000);
        // fn(u8, u64, u16) -> (u8, u64)
        let l = FrameLayout::of(ty::<fn(u8, u64, u16) -> (u8, u64)>()).unwrap();
        assert_eq!(l.params, vec![0, 8, 16]);
        assert_eq!(l.args_size, 24);
        assert_eq!(l.results, vec![24, 32]);
        assert_eq!(l.results_size, 16);
        assert_eq!(l.size, 40);
        // A result aligned beyond a word starts aligned.
        let l = FrameLayout::of(ty::<fn(u8) -> u128>()).unwrap();
        assert_eq!(l.results[0] % core::mem::align_of::<u128>(), 0);
        assert_eq!(l.align, core::mem::align_of::<u128>());
        // No parameters, no results.
        let l = FrameLayout::of(ty::<fn()>()).unwrap();
        assert_eq!((l.args_size, l.results_size, l.size), (0, 0, 0));
    }

    #[test]
    fn frame_layout_of_a_non_func_is_an_error_naming_the_type() {
        assert_eq!(
            FrameLayout::of(ty::<i32>()).unwrap_err().to_string(),
            "fing::FrameLayout::of: i32 is not a func type"
        );
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
        let layout = FrameLayout::of(sig).unwrap();
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
            Func::from_frame_fn(sig, Ignore)
                .call_frame(&mut frame)
                .unwrap();
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
        let small = FrameLayout::of(ty::<fn(i64) -> u8>()).unwrap();
        let p1 = buf.reserve(&small);
        let p2 = buf.reserve(&small);
        assert_eq!(p1, p2, "same-size frames reuse the buffer");
        let big = FrameLayout::of(ty::<fn(i64) -> [u8; 2000]>()).unwrap();
        buf.reserve(&big);
        assert!(buf.capacity() >= big.size);
    }
}
