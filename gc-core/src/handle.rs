//! `Gc<T>`: the counted handle, and `GcTarget`, which gives `Gc<T>` its type descriptor.
//! What a user reads is on `Gc` itself; this is how it is made.
//!
//! Representation (`#[repr(transparent)]` over one pointer, fixed: the pointer masks, the
//! frame invoker and the named pointer newtypes rely on it): a handle word as
//! `gc_types::word` defines it, the address of the `T` the handle points at with the
//! distance back to the header of the object it counts on in the high 16 bits. One word
//! for a sized `T` (the word), two for `dyn Trait` (the word as the data half of a wide
//! pointer, whose metadata is the vtable). The word is never null, so `Option<Gc<T>>` is
//! the size of `Gc<T>` with `None` written as zero: the handle's pointer mask serves the
//! option too.
//!
//! Three kinds of handle, told apart by the tag (see `gc_types::word`):
//! - near (tag = distance from header to address, 1 to 65 534): every handle allocation
//!   makes, a tiny object's handle (an interior pointer into its block), and a `Gc::map`
//!   into the first 64 KiB of its object. Clone and drop find the header by one
//!   subtraction, with no page-map lookup;
//! - outside (tag 0): `Gc::from_static` and zero-sized values, counted on nothing;
//! - far (tag `FAR`): a `Gc::map` whose address is not near its object (another object, a
//!   `String`'s buffer, a static, deep inside a large object). It counts on a `FarCell`, a
//!   small heap object allocated by `map` that holds the address and a handle to the
//!   object the map came from. Only `Deref` of such a handle pays for it: one load from
//!   the cell, out of line.
//!
//! One word, not an (address, object) pair: a node with two links is then 32 bytes, a
//! 32-byte slot like `Box`'s malloc chunk; two words made it 48.
//!
//! Invariants: the address a handle points at is valid for reads of a `T` for as long as
//! the handle lives (a static outside the heap; for a heap handle, the object it counts
//! on stays allocated while any handle counts on it, which the collector guarantees, and
//! that object keeps the address valid: it holds it, or holds handles that do). The
//! object a handle counts on (`word::object_of`) is the only thing the collector reads of
//! it (the pointer mask marks the word).

use core::fmt;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

use gc_types::word;
use gc_types::{Kind, PtrMask, SendSync, Trace, Tracer, Type, TypeRef, Typed};

/// A counted handle to a value in a fing heap: fing's `Arc`.
///
/// [`Gc::new`] moves a value into the default heap ([`Heap::alloc`](crate::Heap::alloc)
/// into another) and gives the first handle; `clone` makes another handle to the same
/// object, and adds one to its count. A handle is one word (`Option<Gc<T>>` too), with no
/// lifetime: it can be stored anywhere, inside other heap objects (where the collector
/// finds it, through the object type's [`Trace`] impl) or outside the heap.
///
/// # Thread safety
///
/// `Gc<T>` is `Send` and `Sync` exactly when `T` is `Send` and `Sync`, as `Arc<T>` is: a
/// handle gives `&T` on whichever thread holds it, and the last handle may be dropped on
/// any thread. Counts are atomic. Mutation goes through a cell: [`GcCell`](crate::GcCell)
/// (a `RefCell` that is `Sync`, and the one place the collector lets a handle field be
/// overwritten), or atomics and locks in `T`.
///
/// # When the object is freed
///
/// When its count reaches zero: on the thread that drops the last handle, right there,
/// with everything only it kept alive (a list frees in constant stack), as `Arc` does.
/// If `T`'s destructor runs code of its own (a `String` field, a `Drop` impl through
/// `unsafe impl AllowDrop`), it runs on that thread too, once the thread is outside fing's
/// short internal sections. Objects with a finalizer, objects in a span with one, tiny
/// objects (noscan values under 16 bytes share a block), large objects whose destructor
/// only drops handles, and objects that ever had a weak handle ([`Weak`](crate::Weak)) are
/// freed by the next collection instead.
///
/// # Cycles
///
/// A cycle of handles keeps its counts above zero. A collection ([`collect`](crate::collect),
/// or one the heap runs as it grows past its goal, Go's `GOGC`) finds objects that no
/// handle outside the heap reaches, cycles included, and frees them. A cycle through an
/// object with a finalizer is never freed (Go's rule: the finalizer could not be given an
/// object whose referents are already gone); see [`set_finalizer`](crate::set_finalizer).
///
/// # Deref behaviour
///
/// `Gc<T>` dereferences to `&T`, so `T`'s methods are called on the handle directly. The
/// handle's own operations are associated functions, called as `Gc::ptr_eq(&a, &b)`, so
/// that they never shadow a method of `T`: [`ptr_eq`](Gc::ptr_eq),
/// [`as_ptr`](Gc::as_ptr), [`is_in_heap`](Gc::is_in_heap),
/// [`object_addr`](Gc::object_addr), [`same_object`](Gc::same_object). The methods that
/// are methods ([`map`](Gc::map), [`downgrade`](Gc::downgrade),
/// [`set_finalizer`](Gc::set_finalizer), [`clear_finalizer`](Gc::clear_finalizer)) are
/// the ones Go spells on a pointer.
///
/// # Equality, order, hashing
///
/// As `Arc`'s: `==`, `<` and `Hash` compare the values, through `Deref`, and `Debug` and
/// `Display` print the value. Identity is [`Gc::ptr_eq`] (the same address) or
/// [`Gc::same_object`] (the same object, whatever interior address); `{:p}` prints the
/// address. (Every Rust collector we compared, `Rc` and `Arc` do the same; comparing by
/// address would make `Gc<str>`-like keys in a map differ from their values.)
///
/// A derived `Debug` of a type with a cycle of handles recurses without end, as it does
/// for `Arc`.
#[repr(transparent)]
pub struct Gc<T: ?Sized + 'static> {
    /// The handle word (module docs) as the data half of a pointer to `T`.
    word: NonNull<T>,
    _owns: PhantomData<T>,
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
        crate::heap::default_inner().alloc(value)
    }
}

impl<T: 'static> Gc<T> {
    /// The handle whose word is `w` (a weak handle's upgrade).
    ///
    /// # Safety
    /// `w` must be a handle word (module docs) made for a `T` at its address, and the
    /// object it counts on (if any) must already count this handle.
    #[inline]
    pub(crate) unsafe fn from_word(w: NonNull<u8>) -> Gc<T> {
        Gc {
            word: w.cast(),
            _owns: PhantomData,
        }
    }

    /// A handle to a zero-sized value: it needs no memory and is never collected (Go's
    /// `zerobase`).
    pub(crate) fn zero_sized() -> Gc<T> {
        Gc {
            word: NonNull::dangling(),
            _owns: PhantomData,
        }
    }
}

impl<T: 'static> Gc<[T]> {
    /// A handle to `n` zero-sized elements without destructors (or to none): like a
    /// zero-sized value, it needs no memory and counts on nothing.
    pub(crate) fn outside_slice(n: usize) -> Gc<[T]> {
        debug_assert!(n == 0 || core::mem::size_of::<T>() == 0);
        Gc {
            word: NonNull::slice_from_raw_parts(NonNull::dangling(), n),
            _owns: PhantomData,
        }
    }
}

impl Gc<[u8]> {
    /// The same handle, as a string.
    ///
    /// # Safety
    /// The bytes must be UTF-8.
    pub(crate) unsafe fn into_str_unchecked(self) -> Gc<str> {
        let this = core::mem::ManuallyDrop::new(self);
        Gc {
            // SAFETY: a `[u8]` and a `str` of the same bytes share address and length; the
            // word's tag bits are the address's, kept by the cast. The count moves over
            // (`self` is not dropped).
            word: unsafe { NonNull::new_unchecked(this.word.as_ptr() as *mut str) },
            _owns: PhantomData,
        }
    }
}

/// What a far handle counts on: the address it points at, and a handle to the object it
/// was mapped from, which keeps that address valid (see the module docs). A heap object
/// of its own, made by `Gc::map`.
#[repr(C)]
struct FarCell<U: ?Sized + 'static> {
    /// First, so that it is at offset 0 whatever `U` is (`Gc::owner` reads it as a
    /// `FarCell<u8>`'s).
    owner: Gc<u8>,
    addr: *const U,
}

impl<U: ?Sized + 'static> FarCell<U> {
    /// The cell whose object header is at `obj`.
    fn at(obj: NonNull<u8>) -> *const FarCell<U> {
        let off = crate::slot::data_offset(core::mem::align_of::<FarCell<U>>());
        obj.as_ptr().wrapping_add(off).cast::<FarCell<U>>()
    }
}

// SAFETY: the cell is read only through handles to `U`, which are Send and Sync only when
// `U` is (the impls on `Gc`); `owner` is a handle to the object the map came from, whose
// type was `Send` to be allocated.
unsafe impl<U: ?Sized + 'static> Send for FarCell<U> {}
// SAFETY: as above; the cell is never mutated after allocation.
unsafe impl<U: ?Sized + 'static> Sync for FarCell<U> {}

// SAFETY: `Type::rust` takes size, align, identity, drop and trace glue from the compiler
// and the `Trace` impl below.
unsafe impl<U: ?Sized + 'static> Typed for FarCell<U> {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const TYPE: &'static Type = &unsafe { Type::rust::<FarCell<U>>(Kind::Opaque) };
}

// SAFETY: the cell owns one handle, `owner`, reported once; the mask marks its word (the
// only word of a `Gc<u8>`, at offset 0 of the `repr(C)` struct); dropping the cell only
// drops `owner`.
unsafe impl<U: ?Sized + 'static> Trace for FarCell<U> {
    const NO_SCAN: bool = false;
    const PTRMASK: PtrMask = PtrMask::Small(1);
    const HANDLES_ONLY_DROP: bool = true;
    fn trace(&self, tracer: &mut Tracer) {
        self.owner.trace(tracer);
    }
}

impl<T: ?Sized + 'static> Gc<T> {
    /// A near handle to `ptr` counting on the object whose header is at `obj`.
    ///
    /// # Safety
    /// `obj`'s count must already include this handle, `ptr` must stay valid for reads
    /// while the object is allocated, and lie 1 to `word::MAX_NEAR` bytes past `obj`.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(ptr: NonNull<T>, obj: NonNull<u8>) -> Gc<T> {
        let addr = ptr.as_ptr().cast::<u8>().cast_const();
        debug_assert!(
            word::near_tag(addr, obj).is_some(),
            "fing::Gc: a near handle too far from its header"
        );
        let tag = word::tag_bits(addr, obj);
        Gc {
            // SAFETY: a non-null address with bits ORed in is not null.
            word: unsafe { NonNull::new_unchecked(ptr.as_ptr().map_addr(|a| a | tag)) },
            _owns: PhantomData,
        }
    }

    /// A handle to `ptr` counting on what `source`, a handle word, counts on (the heap
    /// object `obj`): near if it can be, else far (allocating its cell in `obj`'s heap,
    /// with `source` as its owner: a far source keeps its own cell, so `owner` can walk the
    /// cells back to the object the first map came from).
    ///
    /// # Safety
    /// `source` must count on `obj`, a heap object whose count already includes this
    /// handle, and `ptr` must stay valid for reads while that object is allocated.
    unsafe fn from_parts(ptr: *const T, obj: NonNull<u8>, source: *const u8) -> Gc<T> {
        match word::near_tag(ptr.cast(), obj) {
            Some(tag) => Gc {
                // SAFETY: a near word has a non-zero tag, so it is not null.
                word: unsafe { NonNull::new_unchecked(ptr.cast_mut().map_addr(|a| a | tag)) },
                _owns: PhantomData,
            },
            None => {
                // The caller's contract: the new count is on what `source` counts on.
                let owner = Gc {
                    // SAFETY: a handle word counting on a heap object is not null.
                    word: unsafe { NonNull::new_unchecked(source.cast_mut()) },
                    _owns: PhantomData,
                };
                Gc::far(ptr, obj, owner)
            }
        }
    }

    /// `from_parts` for an address not near its object: a far handle whose cell holds
    /// `ptr` and `owner` (a handle counting on `obj`, never dereferenced).
    #[cold]
    #[inline(never)]
    fn far(ptr: *const T, obj: NonNull<u8>, owner: Gc<u8>) -> Gc<T> {
        let heap = crate::mheap::heap_of(obj)
            .expect("fing::Gc::map: the object a heap handle counts on is in no heap");
        // (A retired heap too: its objects live on while handles keep them.)
        let cell = core::mem::ManuallyDrop::new(heap.alloc(FarCell { owner, addr: ptr }));
        // SAFETY: `cell` is a near handle to a new heap object; its count moves to the
        // handle made here.
        let cell_obj = unsafe { word::object_of(cell.thin()) }
            .expect("fing::Gc::map: a new cell outside the heap");
        let w = word::far(cell_obj);
        let mut fat = ptr.cast_mut();
        // SAFETY: writes the data half of `fat` (its first word: wide pointers are laid out
        // data first, which the check below confirms), keeping the cell's provenance.
        unsafe { (&mut fat as *mut *mut T).cast::<*const u8>().write(w) };
        assert_eq!(
            fat.cast::<u8>().cast_const(),
            w,
            "fing::Gc::map: a wide pointer's data half is not its first word"
        );
        Gc {
            // SAFETY: a far word is never null.
            word: unsafe { NonNull::new_unchecked(fat) },
            _owns: PhantomData,
        }
    }

    /// The handle word, without `T`'s metadata.
    #[inline(always)]
    pub(crate) fn thin(&self) -> *const u8 {
        self.word.as_ptr().cast::<u8>().cast_const()
    }

    /// The object this handle counts on (a far handle's cell), if it is in a heap.
    #[inline(always)]
    pub(crate) fn counted(&self) -> Option<NonNull<u8>> {
        // SAFETY: `word` is a handle word (module invariant).
        unsafe { word::object_of(self.thin()) }
    }

    /// The address this handle points at.
    #[inline(always)]
    fn addr(&self) -> *const T {
        if word::tag(self.thin().addr()) == word::FAR {
            return self.far_addr();
        }
        self.word.as_ptr().map_addr(|a| a & word::ADDR_MASK)
    }

    /// The address a far handle points at, from its cell.
    #[cold]
    #[inline(never)]
    fn far_addr(&self) -> *const T {
        let cell = self
            .counted()
            .expect("fing::Gc: a far handle without its cell");
        // SAFETY: a far handle's cell is a `FarCell<T>` (made by `far` for this `T`),
        // which this handle keeps allocated and no one mutates.
        unsafe { (*FarCell::<T>::at(cell)).addr }
    }

    /// The object this handle counts on, looking through far cells to the object the map
    /// came from.
    pub(crate) fn owner(&self) -> Option<NonNull<u8>> {
        let mut obj = self.counted()?;
        let mut w = self.thin();
        while word::tag(w.addr()) == word::FAR {
            // SAFETY: as in `far_addr`; the cell's `owner` is a `Gc<u8>` at offset 0 for any
            // `U`, so reading it as a `FarCell<u8>`'s is reading that field.
            w = unsafe { (*FarCell::<u8>::at(obj)).owner.thin() };
            // SAFETY: `owner` is a live near or far handle.
            obj = unsafe { word::object_of(w) }
                .expect("fing::Gc: a far cell's owner outside the heap");
        }
        Some(obj)
    }

    /// The address it points at and the object it counts on (null outside the heap),
    /// looking through far cells: what `set_finalizer` checks.
    #[inline(always)]
    pub(crate) fn parts(&self) -> (*const u8, *mut u8) {
        let w = self.thin();
        if word::tag(w.addr()) == word::FAR {
            return self.far_parts();
        }
        // SAFETY: `w` is a handle word (module invariant).
        let obj = unsafe { word::object_of(w) };
        (
            word::addr_bits(w),
            obj.map_or(core::ptr::null_mut(), NonNull::as_ptr),
        )
    }

    /// `parts` of a far handle.
    #[cold]
    #[inline(never)]
    fn far_parts(&self) -> (*const u8, *mut u8) {
        let obj = self.owner().map_or(core::ptr::null_mut(), NonNull::as_ptr);
        (self.far_addr().cast(), obj)
    }

    /// A handle to a value outside the heap. It is never collected; `set_finalizer` on it
    /// is a no-op (`Outcome::NotInHeap`), as Go's on a linker-allocated global.
    ///
    /// The value's address must be below 2^48, as every user-space address is on the
    /// targets fing supports (`gc_types::word`); a `const fn` cannot check it.
    pub const fn from_static(value: &'static T) -> Gc<T> {
        Gc {
            // SAFETY: a reference is never null. Its address is below 2^48, as every
            // user-space address on the targets fing supports (gc_types::word): the tag,
            // 0, says "outside".
            word: unsafe { NonNull::new_unchecked(value as *const T as *mut T) },
            _owns: PhantomData,
        }
    }

    /// Do two handles point at the same address? (Interior handles to different fields
    /// of one object are different.)
    pub fn ptr_eq(a: &Gc<T>, b: &Gc<T>) -> bool {
        core::ptr::addr_eq(a.addr(), b.addr())
    }

    /// The address the handle points at.
    pub fn as_ptr(this: &Gc<T>) -> *const T {
        this.addr()
    }

    /// Does the handle point into the heap (is it counted)?
    pub fn is_in_heap(this: &Gc<T>) -> bool {
        this.counted().is_some()
    }

    /// The address of the object the handle counts on, if it is in the heap (for a handle
    /// made by `map`, the object it was mapped from).
    pub fn object_addr(this: &Gc<T>) -> Option<NonNull<u8>> {
        this.owner()
    }

    /// Do two handles count on the same heap object (whatever they point at)?
    pub fn same_object<U: ?Sized>(a: &Gc<T>, b: &Gc<U>) -> bool {
        a.owner().is_some() && a.owner() == b.owner()
    }

    /// An interior handle: points at what `f` returns, counts on (keeps alive) the object
    /// this handle counts on, whatever address that is. A result more than 64 KiB past
    /// the object's start, or outside the object, allocates a small cell (see the module
    /// docs); every other map allocates nothing.
    pub fn map<U: ?Sized + 'static>(&self, f: impl for<'a> FnOnce(&'a T) -> &'a U) -> Gc<U> {
        let ptr: *const U = f(self);
        let Some(obj) = self.counted() else {
            word::assert_addr(ptr.cast::<u8>().addr());
            return Gc {
                // SAFETY: from a reference: not null.
                word: unsafe { NonNull::new_unchecked(ptr.cast_mut()) },
                _owns: PhantomData,
            };
        };
        // The count of this clone moves to the new handle.
        core::mem::forget(self.clone());
        // SAFETY: `obj` is the object this handle (word) counts on, now counted once more,
        // and `f`'s result borrows from it: valid while it is allocated.
        unsafe { Gc::from_parts(ptr, obj, self.thin()) }
    }
}

impl<T: ?Sized + 'static> Clone for Gc<T> {
    /// Adds one to the object's count. No mutator section is needed (see `world`): a
    /// clone only raises a count, and only of an object reachable from handles this thread
    /// holds, which are roots while it holds them.
    #[inline]
    fn clone(&self) -> Gc<T> {
        if let Some(obj) = self.counted() {
            // SAFETY: `obj` is the header of an object this handle keeps allocated.
            crate::slot::count_one_more(unsafe { obj.cast::<crate::slot::Header>().as_ref() });
        }
        Gc {
            word: self.word,
            _owns: PhantomData,
        }
    }
}

impl<T: ?Sized + 'static> Drop for Gc<T> {
    /// Takes one from the object's count, inside a mutator section (or, while a collector
    /// holds the world, records the drop for later). At zero the object is freed here,
    /// with what only it kept alive, its destructor run once this thread is outside its
    /// sections; except the objects `Gc`'s docs list, which the next collection frees.
    #[inline]
    fn drop(&mut self) {
        if let Some(obj) = self.counted() {
            crate::release::release(obj);
        }
    }
}

impl<T: ?Sized + 'static> Deref for Gc<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the address is valid for reads for as long as the handle lives (module
        // invariant: a static, or kept valid by the object the handle counts on).
        unsafe { &*self.addr() }
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

impl<T: ?Sized + 'static> fmt::Pointer for Gc<T> {
    /// The address the handle points at.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Pointer::fmt(&self.addr(), f)
    }
}

impl<T: ?Sized + PartialEq + 'static> PartialEq for Gc<T> {
    /// Compares the values (`Gc::ptr_eq` compares addresses).
    #[inline]
    fn eq(&self, other: &Gc<T>) -> bool {
        **self == **other
    }
}

impl<T: ?Sized + Eq + 'static> Eq for Gc<T> {}

impl<T: ?Sized + PartialOrd + 'static> PartialOrd for Gc<T> {
    #[inline]
    fn partial_cmp(&self, other: &Gc<T>) -> Option<core::cmp::Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<T: ?Sized + Ord + 'static> Ord for Gc<T> {
    #[inline]
    fn cmp(&self, other: &Gc<T>) -> core::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl<T: ?Sized + core::hash::Hash + 'static> core::hash::Hash for Gc<T> {
    /// Hashes the value, as `==` compares it.
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl<T: ?Sized + 'static> AsRef<T> for Gc<T> {
    #[inline]
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T: ?Sized + 'static> core::borrow::Borrow<T> for Gc<T> {
    #[inline]
    fn borrow(&self) -> &T {
        self
    }
}

impl<T: Trace + Send + Sync + 'static> Gc<T> {
    /// Sets the finalizer of the object this handle points to: Go's `SetFinalizer`, typed.
    /// `f` runs once, on the finalizer thread, after a collection finds the object
    /// unreachable; the object is resurrected for it. The whole contract (ordering,
    /// cycles, tiny objects, what is guaranteed at exit) is
    /// [`set_finalizer`](crate::set_finalizer)'s.
    ///
    /// The compiler checks what the types say (rows 1, 2, 7, 8, 9 and 11 of that table:
    /// `f`'s one parameter is `Gc<T>`, `T` is `Send + Sync`, `f` is `Send`); the rest are
    /// checked as for any caller: a value outside the heap or zero-sized is a no-op
    /// ([`Outcome::NotInHeap`](crate::Outcome::NotInHeap),
    /// [`Outcome::ZeroSized`](crate::Outcome::ZeroSized)), a handle from
    /// [`map`](Gc::map) not at its object's start is refused unless the object is tiny,
    /// and a second finalizer at the same address is refused
    /// ([`FinalizerError::AlreadySet`](crate::FinalizerError::AlreadySet)).
    pub fn set_finalizer<F: FnOnce(Gc<T>) + Send + 'static>(
        &self,
        f: F,
    ) -> Result<crate::Outcome, crate::FinalizerError> {
        // Rows 1, 2, 7, 8, 9 and 11 are the signature's; the rest run as for any caller.
        // `self` keeps the object alive during the call.
        let (ptr, obj) = self.parts();
        crate::mfinal::set_typed::<T, F>(ptr, obj, Some(f))
    }

    /// Removes the finalizer set at exactly this handle's address, if any.
    pub fn clear_finalizer(&self) -> Result<crate::Outcome, crate::FinalizerError> {
        let (ptr, obj) = self.parts();
        crate::mfinal::set_typed::<T, fn(Gc<T>)>(ptr, obj, None)
    }
}

/// A handle from its parts (for `#[derive(Trace)]`'s interface conversions).
///
/// # Safety
/// `obj` must be the header of the heap object `ptr` lies in (or that keeps `ptr` valid),
/// and the caller hands over one count on `obj` to the handle.
#[doc(hidden)]
pub unsafe fn gc_from_raw_parts<T: ?Sized>(ptr: *const T, obj: NonNull<u8>) -> Gc<T> {
    // One byte past a header, tagged 1, is a near handle word counting on its object
    // (never dereferenced).
    let near = obj.as_ptr().wrapping_add(1).cast_const();
    let source = near.map_addr(|a| a | word::tag_bits(near, obj));
    // SAFETY: the caller's contract is `from_parts`'s.
    unsafe { Gc::from_parts(ptr, obj, source) }
}

/// What `Gc<Self>` is, as a type: for every sized `Trace` type an unnamed pointer type
/// with element `Self`; for `dyn Trait` of a `#[fing::interface]` trait, an interface type.
/// (Glue: implemented for every `Trace` type, and by `#[fing::interface]`.)
///
/// # Safety
/// `GC_TYPE` must describe `Gc<Self>` exactly ([`Typed`]'s contract), with kind pointer
/// and element `Self`, or kind interface.
#[doc(hidden)]
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
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const GC_TYPE: &'static Type = &unsafe { Type::rust::<Gc<T>>(Kind::Pointer) }
        .with_elem(TypeRef::of::<T>())
        .with_send_sync(SendSync::Pointer);
}

// SAFETY: `Gc<[T]>` is a wide handle (the handle word, made a slice pointer, and the
// length), kind slice with element `T`, Send/Sync as the element. It is *named* (`Gc`,
// shown with the argument `[T]`, which is `Vec<T>`'s descriptor's display): Go's identity
// equates unnamed slice types with identical elements, and a `Vec<T>` is a slice kind of
// another representation; a named type is identical only to itself.
unsafe impl<T: Trace> GcTarget for [T] {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const GC_TYPE: &'static Type = &unsafe { Type::rust::<Gc<[T]>>(Kind::Slice) }
        .with_elem(TypeRef::of::<T>())
        .named("Gc")
        .with_args(&[TypeRef::of::<Vec<T>>()])
        .with_send_sync(SendSync::Pointer);
}

// SAFETY: `Gc<str>` is a wide handle (word and length) to UTF-8 bytes: kind string,
// named (so identical only to itself, never to `String` or `Box<str>`), Send and Sync.
unsafe impl GcTarget for str {
    // SAFETY: the impl's own argument: this descriptor describes the type exactly.
    const GC_TYPE: &'static Type = &unsafe { Type::rust::<Gc<str>>(Kind::String) }.named("Gc<str>");
}

// SAFETY: forwards to `GcTarget`, whose contract is this one.
unsafe impl<T: ?Sized + GcTarget> Typed for Gc<T> {
    const TYPE: &'static Type = T::GC_TYPE;
}

// SAFETY: a handle owns one count on its object and reports it once. A sized `T`'s handle
// is one word, the handle word, which the mask marks; a wide handle's data half is not
// at an offset the language fixes, so its mask is unknown and the collector traces it.
unsafe impl<T: ?Sized + GcTarget> Trace for Gc<T> {
    const NO_SCAN: bool = false;
    const PTRMASK: PtrMask = if core::mem::size_of::<Gc<T>>() == core::mem::size_of::<usize>() {
        PtrMask::Small(1)
    } else {
        PtrMask::Unknown
    };
    const NONE_IS_NULL: bool = true;
    const HANDLES_ONLY_DROP: bool = true;
    #[inline]
    fn trace(&self, tracer: &mut Tracer) {
        if let Some(obj) = self.counted() {
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

impl<T: Trace> From<Gc<[T]>> for gc_types::Value {
    fn from(g: Gc<[T]>) -> gc_types::Value {
        gc_types::Value::new(g)
    }
}

impl From<Gc<str>> for gc_types::Value {
    fn from(g: Gc<str>) -> gc_types::Value {
        gc_types::Value::new(g)
    }
}
