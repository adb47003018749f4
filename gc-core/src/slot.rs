//! The object slot: what every object of every span starts with, and the markers of dead
//! slots. Below the spans: everything that reads an object's header or value (the freeing
//! path, the destructors, the marker, the sweeper, the finalizers) uses these, and nothing
//! here knows about spans, heaps or threads.
//!
//! A slot is a [`Header`] (the handle count, the collector's scratch count, the type) and
//! the value at [`data_offset`] of its alignment. The header's type says what the slot is:
//! - a `&'static Type` of a live (or not yet found dead) object;
//! - null: a tiny block (noscan values only, packed by the mcache);
//! - [`FREED`]: freed at count zero (`mfree`), waiting in a thread's free list or for the
//!   next sweep;
//! - [`DYING`]: doomed, its destructor running or about to run (`mdrop`), its real type
//!   in the [`Doomed`] that whoever destroys it holds.
//!
//! The two markers have no edges and no destructor, so every pass of the collector treats
//! such a slot as an unreachable object with nothing to do, and `Type::at_zero` says
//! `Keep` for them, so the freeing path leaves them alone.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use gc_types::Type;

use crate::sizeclasses::PAGE_SIZE;

/// The header in front of every object.
#[repr(C)]
pub(crate) struct Header {
    /// Handles that count on this object: handles outside the heap plus handles stored in
    /// heap objects.
    pub(crate) count: AtomicU32,
    /// The collector's scratch: `count` minus the references found inside the heap. Only
    /// touched with the world stopped.
    pub(crate) gc_refs: AtomicU32,
    /// The object's type; null for a tiny block.
    pub(crate) ty: AtomicPtr<Type>,
}

/// The type in the header of a slot whose object was freed when its count fell to zero
/// (`mfree`), until the slot is reused or swept: no edges, no destructor,
/// so every pass of the collector treats it as an unreachable object with nothing to do.
// SAFETY: the marker value type is never made: no value of it holds a handle; it is
// Send and Sync (a unit struct).
pub(crate) static FREED: Type =
    unsafe { Type::untraced::<Freed>("fing: freed slot", true, true) }.kept_at_zero();

/// The value type of [`FREED`] (never made).
struct Freed;

/// Size of the header.
pub(crate) const HEADER: usize = core::mem::size_of::<Header>();
const _: () = assert!(HEADER == 16, "Header layout: count, gc_refs, type pointer");

/// Where the value starts in an object of alignment `align`: right after the header, or
/// at the first multiple of `align` after it in a slot aligned to `align` (up to a page:
/// small classes and page-aligned large spans give such slots). A value aligned to more
/// than a page starts right after its header again: its large span puts the header at the
/// end of its first page, and the value at the next page, which is aligned as needed
/// (`PageHeap::alloc_aligned`). So a value is never more than a page from its header, as
/// a near handle needs (`gc_types::word::MAX_NEAR`).
#[inline]
pub(crate) const fn data_offset(align: usize) -> usize {
    if align > HEADER && align <= PAGE_SIZE {
        align
    } else {
        HEADER
    }
}

/// The largest alignment fing honours; a type aligned to more does not compile into an
/// allocation (`Plan`).
pub const MAX_ALIGN: usize = 1 << 24;

/// The header of the object at `slot`.
///
/// # Safety
/// `slot` must be the start of an allocated object slot.
#[inline]
pub(crate) unsafe fn header<'a>(slot: *mut u8) -> &'a Header {
    // SAFETY: allocated slots start with an initialised header (malloc writes it first).
    unsafe { &*slot.cast::<Header>() }
}

/// The type in the header of a doomed object until its destructor has run: no edges, no
/// destructor (the collector never reads the value, which another thread is dropping).
// SAFETY: the marker value type is never made: no value of it holds a handle; it is
// Send and Sync (a unit struct).
pub(crate) static DYING: Type =
    unsafe { Type::untraced::<Dying>("fing: object being dropped", true, true) }.kept_at_zero();

/// The value type of [`DYING`] (never made).
struct Dying;

/// A doomed object: its header and its real type.
pub(crate) struct Doomed {
    pub(crate) obj: NonNull<u8>,
    pub(crate) ty: &'static Type,
}

// SAFETY: a doomed object belongs to whoever holds its `Doomed` (no handle to it is left
// that could be used), and its type was `Send` to be allocated.
unsafe impl Send for Doomed {}

impl Doomed {
    /// Dooms the object at `obj`, of type `ty`: [`DYING`] goes into its header.
    ///
    /// # Safety
    /// `obj` heads an allocated object that no handle reaches any more (its count reached
    /// zero, or a collection found it unreachable, with the world stopped): no one else
    /// reads or writes its header's type now.
    pub(crate) unsafe fn doom(obj: NonNull<u8>, ty: &'static Type) -> Doomed {
        // SAFETY: the caller's contract.
        unsafe { set_dying(obj) };
        Doomed { obj, ty }
    }
}

/// Writes [`DYING`] into the header of the object at `obj`.
///
/// # Safety
/// As for [`Doomed::doom`].
pub(crate) unsafe fn set_dying(obj: NonNull<u8>) {
    // SAFETY: the caller's contract: `obj` heads an allocated object whose header no one
    // else touches now.
    unsafe { header(obj.as_ptr()) }
        .ty
        .store((&DYING as *const Type).cast_mut(), Ordering::Relaxed);
}

/// Adds one to `h`'s count, for a new handle (a clone, a weak handle's upgrade) or a weak
/// cell's count. As `Arc` does, it stops the process before the count could wrap: a count
/// this high means leaked handles.
#[inline(always)]
pub(crate) fn count_one_more(h: &Header) {
    if h.count.fetch_add(1, Ordering::Relaxed) >= u32::MAX / 2 {
        std::process::abort();
    }
}

/// The byte freed values are overwritten with in debug builds.
pub(crate) const POISON: u8 = 0xde;

/// Does dropping a value of `ty` run user code, so that a collection must destroy its
/// garbage after the world resumes (`mdrop`)? That is `AtZero::Doom`: a drop that only
/// drops handles is skipped by the collection, one that only frees memory besides
/// (`Trace::DROP_ONLY_FREES`: a `Vec`'s, a `String`'s) runs in its release step, as it
/// runs in the freeing section at count zero (when the object can be freed there:
/// `mfree`). False for the dead-slot markers.
#[inline]
pub(crate) fn runs_user_code(ty: &Type) -> bool {
    ty.at_zero() == gc_types::AtZero::Doom
}
