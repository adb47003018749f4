//! The frame invoker (Go's reflectcall, for finalizers): lays out the finalizer's frame
//! from its signature (the argument slot, then the results sized by Go's nret rule),
//! writes the object as the parameter's type wants it (the handle itself for a pointer
//! parameter, a `Value` for the empty interface, an interface handle made through the
//! itab for `Gc<dyn Trait>`), and calls the `Func` through its body. The frame buffer is
//! reused and grown when a larger frame comes; it holds raw bytes only and is not a root.
//! Results are dropped by the frame, never copied back. A finalizer set from Rust (a
//! one-parameter closure) skips the frame: its argument is built on the stack and the
//! closure is called directly (`Func::call_unary`), which is most finalizers.

use core::ptr::NonNull;

use gc_types::{Frame, FrameBuf, FrameLayout, Func, Type, Value};

use super::queue::Finalizer;
use super::{conv, Conv};
use crate::handle::Gc;
use crate::mspan::Span;

/// The invoker's reusable state: the frame buffer, and the layouts of the last signatures
/// it has seen (finalizers set in a loop share one signature).
#[derive(Default)]
pub(crate) struct Invoker {
    buf: FrameBuf,
    layouts: Vec<(*const Type, FrameLayout)>,
    /// The span of the last entry run in this batch (entries set in a loop are
    /// neighbours), with its address range copied out: `(base, bytes, span)`.
    ///
    /// Sound within one batch only, and only through the copied range: every entry's
    /// object was allocated when the batch was taken and stays so until its entry runs,
    /// and spans never overlap, so a later entry whose address lies in the range has its
    /// object in this very span, which that object keeps alive. Otherwise the span may
    /// be gone already (its last object's finalizer ran, and a collection freed it while
    /// this batch went on): it must not be read to test the range. The soak found that.
    span: Option<(usize, usize, &'static Span)>,
    /// Row 9's answer for the last signature and object type seen, and whether the
    /// parameter fits the direct call's stack slot: `(sig, obj_ty, conv, fits)`.
    /// Entries set in a loop share both types, and asking again costs a third of a
    /// finalizer's run (the parameter type is built lazily, behind a call).
    last: Option<(*const Type, *const Type, Conv, bool)>,
}

// SAFETY: the type pointers are `&'static Type`s, used as keys only; the span is one the
// invoker's thread looked up and uses within a batch (see `span`).
unsafe impl Send for Invoker {}

impl Invoker {
    /// Starts a batch: forgets the span of the last one.
    pub(crate) fn begin_batch(&mut self) {
        self.span = None;
    }

    /// The span `ptr`, an entry's address, lies in.
    fn span_of(&mut self, ptr: *const u8) -> &'static Span {
        let a = ptr as usize;
        match self.span {
            Some((base, bytes, s)) if a.wrapping_sub(base) < bytes => s,
            _ => {
                let s = crate::mpagealloc::span_of(a)
                    .expect("fing::reflectcall: a queued object outside the heap");
                self.span = Some((s.base as usize, s.bytes(), s));
                s
            }
        }
    }

    /// How an object of type `obj_ty` is passed to the parameter of `sig`, and whether
    /// that parameter fits a stack slot of `slot` bytes aligned to `align`.
    fn conv(
        &mut self,
        sig: &'static Type,
        obj_ty: &'static Type,
        (slot, align): (usize, usize),
    ) -> (Conv, bool) {
        if let Some((s, o, conv, fits)) = self.last {
            if core::ptr::eq(s, sig) && core::ptr::eq(o, obj_ty) {
                return (conv, fits);
            }
        }
        let param = sig
            .params()
            .next()
            .expect("fing::reflectcall: a finalizer has one parameter");
        let conv = conv(obj_ty, param)
            .expect("fing::reflectcall: a parameter that set_finalizer accepted no longer fits");
        let fits = param.size() <= slot && param.align() <= align;
        self.last = Some((sig, obj_ty, conv, fits));
        (conv, fits)
    }

    fn layout(&mut self, sig: &'static Type) -> usize {
        let key = sig as *const Type;
        if let Some(i) = self.layouts.iter().position(|(k, _)| *k == key) {
            return i;
        }
        if self.layouts.len() == 8 {
            self.layouts.remove(0);
        }
        let layout = FrameLayout::of(sig).unwrap_or_else(|e| {
            panic!("fing::reflectcall: set_finalizer laid this frame out: {e}")
        });
        self.layouts.push((key, layout));
        self.layouts.len() - 1
    }
}

/// A handle to the object of entry `f` with one more count on it, and the object's
/// pointer type: what the panic hook is shown (as a `Value`) if the finalizer panics.
///
/// # Safety
/// `f` is an initialised entry not yet taken over (`Blocks::run_each`): its count keeps
/// its object allocated.
pub(crate) unsafe fn keep_object(inv: &mut Invoker, f: *mut Finalizer) -> (Gc<u8>, &'static Type) {
    // SAFETY: the caller's entry, initialised and not taken over; only read here.
    let entry = unsafe { &*f };
    let obj = entry.object(inv.span_of(entry.ptr));
    // SAFETY: the entry's count keeps `obj` allocated; its header is live.
    crate::slot::count_one_more(unsafe { obj.cast::<crate::slot::Header>().as_ref() });
    let data = NonNull::new(entry.ptr.cast_mut()).expect("fing::reflectcall: null object address");
    // SAFETY: the count just added is this handle's, and `data` lies in `obj` (the entry's
    // address, as `call` makes its argument).
    (unsafe { Gc::from_raw(data, obj) }, entry.obj_ty)
}

/// Runs one queued finalizer. The entry's count on its object moves into the argument.
///
/// A finalizer set from Rust (a one-parameter closure) is called directly with the
/// argument built on the stack; any other `Func` through a frame in the reused buffer.
///
/// # Safety
/// `f` is an entry this call takes over (`Blocks::run_each`): read once, here.
pub(crate) unsafe fn call(inv: &mut Invoker, f: *mut Finalizer) {
    // SAFETY: the caller's entry, valid until taken over; its fields are read where they
    // lie, and its `Func` is taken over once, below (called in place, or moved out).
    let entry = unsafe { &mut *f };
    let obj = entry.object(inv.span_of(entry.ptr));
    let (ptr, obj_ty) = (entry.ptr, entry.obj_ty);
    let func = &mut entry.func;
    let sig = func.signature();
    let mut local = core::mem::MaybeUninit::<[usize; 4]>::uninit();
    let local_size = (
        core::mem::size_of_val(&local),
        core::mem::align_of_val(&local),
    );
    let (conv, fits) = inv.conv(sig, obj_ty, local_size);
    let direct = func.is_direct_unary() && fits;
    let frame = if direct {
        None
    } else {
        let li = inv.layout(sig);
        let Invoker { buf, layouts, .. } = inv;
        let layout = &layouts[li].1;
        Some((buf.reserve(layout), layout))
    };
    let slot = match frame {
        Some((base, layout)) => base.as_ptr().wrapping_add(layout.params[0]),
        None => local.as_mut_ptr().cast::<u8>(),
    };
    let data = NonNull::new(ptr.cast_mut()).expect("fing::reflectcall: null object address");
    // SAFETY: the entry holds one count on `obj` for this handle, and `data` lies in it.
    let handle: Gc<u8> = unsafe { Gc::from_raw(data, obj) };
    match conv {
        Conv::Handle => {
            // SAFETY: the parameter is a pointer type with `Gc`'s representation (identical
            // or assignable to the object's), and the slot is sized and aligned for it.
            unsafe { slot.cast::<Gc<u8>>().write(handle) };
        }
        Conv::Value => {
            let h = core::mem::ManuallyDrop::new(handle);
            // SAFETY: `obj_ty` is the object's pointer type, whose representation is a
            // handle's; the value takes over the handle's count (it is not dropped here).
            let v = unsafe { Value::from_raw(obj_ty, (&*h as *const Gc<u8>).cast()) };
            // SAFETY: the parameter is `Value`; the slot is sized and aligned for one.
            unsafe { slot.cast::<Value>().write(v) };
        }
        Conv::Iface(itab) => {
            // The interface handle takes over the count.
            core::mem::forget(handle);
            // SAFETY: `data` points to a live value of a type implementing the interface
            // (row 9 found this itab in its type's table) inside `obj`; the slot is sized
            // for `Gc<dyn Trait>`.
            unsafe { (itab.write_handle())(ptr, obj, slot) };
        }
    }
    match frame {
        None => {
            // SAFETY: `slot` holds a value of the parameter type, aligned (checked above),
            // which the call takes over; so does it the entry's `Func` (a direct one:
            // checked above), never used again.
            let ran = unsafe { Func::call_unary_in_place(func, slot) };
            debug_assert!(ran, "fing::reflectcall: a direct finalizer refused");
        }
        Some((base, layout)) => {
            // SAFETY: the entry's `Func`, moved out once (the entry is never read again).
            let func = unsafe { core::ptr::read(func) };
            // SAFETY: the only argument slot was just written with a value of the
            // parameter type.
            let mut frame = unsafe { Frame::new(base, sig, layout) };
            if let Err(e) = func.call_frame(&mut frame) {
                panic!("fing::reflectcall: a frame made for its own signature: {e}");
            }
        }
    }
}
