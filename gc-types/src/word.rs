//! The handle word: how a `Gc<T>` (gc-core) names both what it points at and the object it
//! counts on, in one word. Every reader of handles (the handle itself, the collector's
//! mask scan, `Type::trace_value`, the sweeper, `set_finalizer`) decodes through here.
//!
//! A handle word is
//! - `0`: no handle (`Option::<Gc<T>>::None`);
//! - tag `0` (the high 16 bits clear), address `a`: a handle outside every heap
//!   (`Gc::from_static`, a zero-sized value); it counts on nothing and points at `a`;
//! - tag `d` in `1..=MAX_NEAR`, address `a`: points at `a` and counts on the object whose
//!   header is at `a - d` ("near": the address lies `d` bytes past the header, which every
//!   handle made by allocation, every tiny object's handle and every `Gc::map` into the
//!   first 64 KiB of an object is);
//! - tag `FAR`, address `c + FAR`: counts on the object `c`, a cell (gc-core's `FarCell`)
//!   that holds the address the handle points at and a handle to the object it counts on
//!   (a `Gc::map` that points outside its object, or far into it).
//!
//! So the object a handle counts on is always `address - tag` for a non-zero tag, one
//! subtraction with no branch on the kind of handle; only `Deref` of a far handle reads
//! its cell. Why one word: a node of two links is then a 32-byte slot, like a `Box` node's
//! malloc chunk; two-word handles made it 48, and that memory traffic is what kept
//! binary-trees slower than `Box`.
//!
//! The address takes the low 48 bits: user-space addresses on x86-64 and AArch64 Linux,
//! macOS and Windows are below 2^47 (2^48 with 52-bit AArch64 only on request), which
//! `assert_addr` checks where a handle is made. Handles exist only on 64-bit targets.

use core::ptr::NonNull;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("fing's handles keep a tag in the high 16 bits of a pointer: 64-bit targets only");

/// Where the tag starts.
pub const TAG_SHIFT: u32 = 48;
/// The address bits.
pub const ADDR_MASK: usize = (1 << TAG_SHIFT) - 1;
/// The tag of a far handle.
pub const FAR: usize = 0xFFFF;
/// The largest distance from header to address a near handle stores.
pub const MAX_NEAR: usize = FAR - 1;

/// The tag of a handle word.
#[inline(always)]
pub fn tag(w: usize) -> usize {
    w >> TAG_SHIFT
}

/// The object a handle word counts on: `None` for no handle and for a handle outside every
/// heap.
///
/// # Safety
/// `w` must be zero or a handle word (module docs), read from a live handle.
#[inline(always)]
pub unsafe fn object_of(w: *const u8) -> Option<NonNull<u8>> {
    if tag(w.addr()) == 0 {
        return None;
    }
    // SAFETY: a non-zero tag is a counted handle's, whose address lies `tag` bytes past
    // the header of its object (module docs): that header is never null.
    Some(unsafe { NonNull::new_unchecked(object_bits(w).cast_mut()) })
}

/// The address bits minus the tag: for a counted handle, the object it counts on (for a
/// far one, its cell); for an empty or outside word, an address no one may read (a
/// prefetch may take it).
#[inline(always)]
pub fn object_bits(w: *const u8) -> *const u8 {
    w.map_addr(|a| (a & ADDR_MASK).wrapping_sub(tag(a)))
}

/// The tag bits (already shifted) of a handle to `addr` counting on the object at `obj`,
/// for a caller that knows `addr` is near it (`1..=MAX_NEAR` bytes past). The caller ORs
/// them into the address (`map_addr`, which keeps a wide pointer's metadata).
#[inline(always)]
pub fn tag_bits(addr: *const u8, obj: NonNull<u8>) -> usize {
    distance(addr, obj) << TAG_SHIFT
}

/// `tag_bits`, if `addr` is near enough to `obj` for a near handle.
#[inline(always)]
pub fn near_tag(addr: *const u8, obj: NonNull<u8>) -> Option<usize> {
    let d = distance(addr, obj);
    (d.wrapping_sub(1) < MAX_NEAR).then_some(d << TAG_SHIFT)
}

/// How far `addr` lies past `obj` (wrapped when before it).
#[inline(always)]
fn distance(addr: *const u8, obj: NonNull<u8>) -> usize {
    addr.addr().wrapping_sub(obj.as_ptr().addr())
}

/// The word of a far handle counting on the cell object at `cell`.
#[inline]
pub fn far(cell: NonNull<u8>) -> *const u8 {
    assert_addr(cell.as_ptr().addr() + FAR);
    cell.as_ptr()
        .cast_const()
        .map_addr(|a| (a + FAR) | FAR << TAG_SHIFT)
}

/// The address bits of a handle word: what a near or outside handle points at, the cell
/// (plus `FAR`) of a far one.
#[inline(always)]
pub fn addr_bits(w: *const u8) -> *const u8 {
    w.map_addr(|a| a & ADDR_MASK)
}

/// Panics if `a` does not fit the address bits (the module docs' premise).
#[inline(always)]
pub fn assert_addr(a: usize) {
    assert!(
        a >> TAG_SHIFT == 0,
        "fing::Gc: address {a:#x} is above 2^48; handles keep their tag in the high 16 bits"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_word_gives_back_its_address_and_object() {
        let mem = [0u64; 4];
        let obj = NonNull::from(&mem).cast::<u8>();
        let addr = obj.as_ptr().wrapping_add(16).cast_const();
        let w = addr.map_addr(|a| a | near_tag(addr, obj).unwrap());
        assert_eq!(tag(w.addr()), 16);
        assert_eq!(addr_bits(w), addr);
        // SAFETY: `w` is a near handle word.
        assert_eq!(unsafe { object_of(w) }, Some(obj));
    }

    #[test]
    fn addresses_before_or_far_past_the_object_have_no_near_word() {
        let mem = [0u8; 64];
        let obj = NonNull::from(&mem[32]);
        assert!(near_tag(&mem[0], obj).is_none());
        assert!(
            near_tag(&mem[32], obj).is_none(),
            "distance 0 is the outside tag"
        );
        assert!(near_tag(obj.as_ptr().wrapping_add(FAR), obj).is_none());
        assert!(near_tag(obj.as_ptr().wrapping_add(MAX_NEAR), obj).is_some());
    }

    #[test]
    fn a_far_word_counts_on_its_cell_and_an_outside_word_on_nothing() {
        let mem = [0u64; 2];
        let cell = NonNull::from(&mem).cast::<u8>();
        let w = far(cell);
        assert_eq!(tag(w.addr()), FAR);
        // SAFETY: a far handle word.
        assert_eq!(unsafe { object_of(w) }, Some(cell));
        // SAFETY: an outside handle word.
        assert_eq!(unsafe { object_of(cell.as_ptr()) }, None);
        // SAFETY: the empty word.
        assert_eq!(unsafe { object_of(core::ptr::null()) }, None);
    }
}
