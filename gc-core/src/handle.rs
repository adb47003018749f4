//! `Gc<T>`: the counted handle (DESIGN §4), and `GcTarget`, which gives `Gc<T>` its type
//! descriptor.
//!
//! Representation (`#[repr(C)]`, fixed: the pointer masks, the frame invoker and the named
//! pointer newtypes rely on it): the address of the `T` the handle points at, then the
//! object it counts on (`obj`), which for a handle that does not point into the heap
//! (`Gc::from_static`, zero-sized values) is the address of a static sentinel outside
//! every heap. Two words for a sized `T`, three for `dyn Trait`. `obj` is never null, and
//! it is the only non-null field, so `Option<Gc<T>>` is the size of `Gc<T>` with `None`
//! written as a null `obj`: the handle's pointer mask serves the option too. Keeping the
//! owner apart from the address is what lets `Gc::map` point anywhere (a field, the end
//! of the object, another object) while counting on the object it came from, and lets a
//! tiny object's handle be an interior pointer without a page-map lookup on every clone.
//!
//! Invariants: `ptr` is valid for reads of a `T` for as long as the handle lives (a static
//! outside the heap; for a heap handle, the object `obj` stays allocated while any
//! handle counts on it, which the collector guarantees). `obj` is the sentinel or the
//! address of a heap object, and is the only word the collector reads (the pointer mask
//! marks it; the sentinel lies in no arena, so the collector ignores it).

use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use gc_types::{Kind, PtrMask, SendSync, Trace, Tracer, Type, TypeRef, Typed};

/// A handle to a value in fing's heap (or, from [`Gc::from_static`], outside it).
#[repr(C)]
pub struct Gc<T: ?Sized + 'static> {
    ptr: *const T,
    obj: NonNull<u8>,
    _owns: PhantomData<T>,
}

/// The `obj` of handles outside the heap: an address no arena contains.
static OUTSIDE: u8 = 0;

/// The object word of a handle to something outside every heap (`Gc::from_static`, a
/// zero-sized value).
#[inline]
pub(crate) const fn outside() -> NonNull<u8> {
    // SAFETY: the address of a static is never null.
    unsafe { NonNull::new_unchecked(&OUTSIDE as *const u8 as *mut u8) }
}

// SAFETY: a `Gc<T>` gives `&T` on any thread that holds it and may be the last handle
// dropped on any thread, exactly like `Arc<T>`: it is Send and Sync when `T` is both.
unsafe impl<T: ?Sized + Send + Sync> Send for Gc<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for Gc<T> {}

impl<T: Trace + Send + 'static> Gc<T> {
    /// Moves `value` into the default heap. See [`Heap::alloc`](crate::Heap::alloc).
    #[inline]
    pub fn new(value: T) -> Gc<T> {
        crate::Heap::default_heap().alloc(value)
    }
}

impl<T: 'static> Gc<T> {
    /// A handle to a zero-sized value: it needs no memory and is never collected (Go's
    /// `zerobase`).
    pub(crate) fn zero_sized() -> Gc<T> {
        Gc {
            ptr: NonNull::<T>::dangling().as_ptr(),
            obj: outside(),
            _owns: PhantomData,
        }
    }
}

impl<T: ?Sized + 'static> Gc<T> {
    /// A handle to `ptr` counting on the object whose header is at `obj`.
    ///
    /// # Safety
    /// `obj`'s count must already include this handle, and `ptr` must stay valid for
    /// reads while the object is allocated.
    pub(crate) unsafe fn from_raw(ptr: NonNull<T>, obj: NonNull<u8>) -> Gc<T> {
        Gc {
            ptr: ptr.as_ptr(),
            obj,
            _owns: PhantomData,
        }
    }

    /// The object this handle counts on, if it is in a heap.
    #[inline]
    fn heap_obj(&self) -> Option<NonNull<u8>> {
        (self.obj != outside()).then_some(self.obj)
    }

    /// A handle to a value outside the heap. It is never collected; `set_finalizer` on it
    /// is a no-op (`Outcome::NotInHeap`), as Go's on a linker-allocated global.
    pub const fn from_static(value: &'static T) -> Gc<T> {
        Gc {
            ptr: value as *const T,
            obj: outside(),
            _owns: PhantomData,
        }
    }

    /// Do two handles point at the same address? (Interior handles to different fields
    /// of one object are different.)
    pub fn ptr_eq(a: &Gc<T>, b: &Gc<T>) -> bool {
        core::ptr::addr_eq(a.ptr, b.ptr)
    }

    /// The address the handle points at.
    pub fn as_ptr(this: &Gc<T>) -> *const T {
        this.ptr
    }

    /// Does the handle point into the heap (is it counted)?
    pub fn is_in_heap(this: &Gc<T>) -> bool {
        this.heap_obj().is_some()
    }

    /// The address of the object the handle counts on, if it is in the heap.
    pub fn object_addr(this: &Gc<T>) -> Option<NonNull<u8>> {
        this.heap_obj()
    }

    /// Do two handles count on the same heap object (whatever they point at)?
    pub fn same_object<U: ?Sized>(a: &Gc<T>, b: &Gc<U>) -> bool {
        a.heap_obj().is_some() && a.obj == b.obj
    }

    /// An interior handle: points at what `f` returns, counts on (keeps alive) the object
    /// this handle counts on, whatever address that is.
    pub fn map<U: ?Sized + 'static>(&self, f: impl for<'a> FnOnce(&'a T) -> &'a U) -> Gc<U> {
        let owner = self.clone();
        let ptr: *const U = f(&owner);
        let owner = core::mem::ManuallyDrop::new(owner);
        // The count `owner` holds moves to the new handle.
        Gc {
            ptr,
            obj: owner.obj,
            _owns: PhantomData,
        }
    }
}

impl<T: ?Sized + 'static> Clone for Gc<T> {
    /// Adds one to the object's count. No mutator section is needed (see `world`): a
    /// clone only raises a count, and only of an object reachable from handles this thread
    /// holds, which are roots while it holds them.
    #[inline]
    fn clone(&self) -> Gc<T> {
        if let Some(obj) = self.heap_obj() {
            // SAFETY: `obj` is the header of an object this handle keeps allocated.
            let old = unsafe { obj.cast::<crate::mspan::Header>().as_ref() }
                .count
                .fetch_add(1, Ordering::Relaxed);
            if old >= u32::MAX / 2 {
                // As `Arc` does: a count this high means leaked handles; stop before it wraps.
                std::process::abort();
            }
        }
        Gc {
            ptr: self.ptr,
            obj: self.obj,
            _owns: PhantomData,
        }
    }
}

impl<T: ?Sized + 'static> Drop for Gc<T> {
    /// Takes one from the object's count, inside a mutator section (or, while a collector
    /// holds the world, records the drop for later). At zero, an object whose type has no
    /// destructor beyond its handles is freed here, with what only it kept alive; any
    /// other object is freed by a later collection.
    #[inline]
    fn drop(&mut self) {
        if let Some(obj) = self.heap_obj() {
            crate::mgcsweep::release(obj);
        }
    }
}

impl<T: ?Sized + 'static> Deref for Gc<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `ptr` is valid for reads for as long as the handle lives (module
        // invariant: a static, or an object kept allocated while handles count on it).
        unsafe { &*self.ptr }
    }
}

impl<T: ?Sized + fmt::Debug + 'static> fmt::Debug for Gc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Gc").field(&&**self).finish()
    }
}

impl<T: ?Sized + fmt::Display + 'static> fmt::Display for Gc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: Trace + Send + Sync + 'static> Gc<T> {
    /// Sets the finalizer of the object this handle points to: Go's `SetFinalizer` with the
    /// checks the compiler cannot make (rows 3–6 and 10 of DESIGN §6; the rest are types).
    /// `f` runs once, on the finalizer thread, after a collection finds the object
    /// unreachable; the object is resurrected for it (see `fing::set_finalizer`).
    pub fn set_finalizer<F: FnOnce(Gc<T>) + Send + 'static>(
        &self,
        f: F,
    ) -> Result<crate::Outcome, crate::FinalizerError> {
        // Rows 1, 2, 7, 8, 9 and 11 are the signature's; the rest run as for any caller.
        // `self` keeps the object alive during the call.
        crate::mfinal::set_typed::<T, F>(self.ptr.cast(), self.obj.as_ptr(), Some(f))
    }

    /// Removes the finalizer set at exactly this handle's address, if any.
    pub fn clear_finalizer(&self) -> Result<crate::Outcome, crate::FinalizerError> {
        crate::mfinal::set_typed::<T, fn(Gc<T>)>(self.ptr.cast(), self.obj.as_ptr(), None)
    }
}

/// A handle from its parts (for `#[derive(Trace)]`'s interface conversions).
///
/// # Safety
/// `obj` must be the object `ptr` lies in (or the value `ptr` points to must outlive every
/// use), and the caller hands over one count on `obj` to the handle.
#[doc(hidden)]
pub unsafe fn gc_from_raw_parts<T: ?Sized>(ptr: *const T, obj: NonNull<u8>) -> Gc<T> {
    Gc {
        ptr,
        obj,
        _owns: PhantomData,
    }
}

/// What `Gc<Self>` is, as a type: for every sized `Trace` type an unnamed pointer type
/// with element `Self`; for `dyn Trait` of a `#[fing::interface]` trait, an interface type.
///
/// # Safety
/// `GC_TYPE` must describe `Gc<Self>` exactly ([`Typed`]'s contract), with kind pointer
/// and element `Self`, or kind interface.
pub unsafe trait GcTarget: 'static {
    /// The descriptor of `Gc<Self>`.
    const GC_TYPE: &'static Type;

    /// For an interface: the trait object for the data at `data`, through `itab` (one of
    /// the itabs of the data's type). `None` if the itab is not this interface's, and for
    /// every sized type.
    fn cast_from(itab: &gc_types::Itab, data: *const u8) -> Option<*const Self> {
        let _ = (itab, data);
        None
    }
}

// SAFETY: `Type::rust::<Gc<T>>` takes size, align, identity, drop and trace glue from the
// compiler and the `Trace` impl below; kind pointer, unnamed, element `T`; Send/Sync as
// the element (the impls above).
unsafe impl<T: Trace> GcTarget for T {
    const GC_TYPE: &'static Type = &Type::rust::<Gc<T>>(Kind::Pointer)
        .with_elem(TypeRef::of::<T>())
        .with_send_sync(SendSync::Pointer);
}

// SAFETY: forwards to `GcTarget`, whose contract is this one.
unsafe impl<T: ?Sized + GcTarget> Typed for Gc<T> {
    const TYPE: &'static Type = T::GC_TYPE;
}

// SAFETY: a handle owns one count on its object and reports it once, as the `obj` word,
// which is the last word of the representation (the mask says so).
unsafe impl<T: ?Sized + GcTarget> Trace for Gc<T> {
    const NO_SCAN: bool = false;
    const PTRMASK: PtrMask =
        PtrMask::Small(1 << (core::mem::size_of::<Gc<T>>() / core::mem::size_of::<usize>() - 1));
    const NONE_IS_NULL: bool = true;
    const HANDLES_ONLY_DROP: bool = true;
    #[inline]
    fn trace(&self, tracer: &mut Tracer) {
        if let Some(obj) = self.heap_obj() {
            // SAFETY: `obj` of a heap handle is the address of a live heap object (module
            // invariant).
            unsafe { tracer.edge(obj) };
        }
    }
}

/// A handle type, for `#[gc(pointer)]` newtypes: what the handle points to.
///
/// # Safety
/// Implemented only by `Gc<T>`, whose element is `ELEM`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`#[gc(pointer)]` needs its one field to be a `Gc<T>`, not `{Self}`",
    label = "not a `Gc<T>`"
)]
pub unsafe trait GcPointer: Trace {
    /// The element type.
    const ELEM: TypeRef;
}

// SAFETY: `Gc<T>` points to a `T`.
unsafe impl<T: Trace> GcPointer for Gc<T> {
    const ELEM: TypeRef = TypeRef::of::<T>();
}

impl<T: Trace> From<Gc<T>> for gc_types::Value {
    fn from(g: Gc<T>) -> gc_types::Value {
        gc_types::Value::new(g)
    }
}
