//! OS memory: the only `mmap`/`madvise`/`munmap` calls in fing.
//!
//! Arenas are reserved aligned to their size (so an address's arena is found by masking),
//! committed lazily by the OS as pages are touched, and free pages are handed back with
//! `MADV_DONTNEED`, after which they read as zero and cost no resident memory.

use core::ptr::NonNull;

/// Reserves `size` bytes aligned to `size` (a power of two). `None` if the OS refuses.
pub(crate) fn reserve_aligned(size: usize) -> Option<NonNull<u8>> {
    debug_assert!(size.is_power_of_two());
    let len = size * 2;
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let p = p.cast::<u8>();
    let addr = p as usize;
    let aligned = (addr + size - 1) & !(size - 1);
    let head = aligned - addr;
    let tail = len - head - size;
    if head > 0 {
        // SAFETY: [p, p + head) is the unaligned front of the mapping made above.
        unsafe { libc::munmap(p.cast(), head) };
    }
    if tail > 0 {
        // SAFETY: the range after the aligned part is the rest of the mapping made above.
        unsafe { libc::munmap(p.wrapping_add(head + size).cast(), tail) };
    }
    NonNull::new(p.wrapping_add(head))
}

/// Gives the pages of `[p, p + len)` back to the OS; they read as zero afterwards.
///
/// # Safety
/// The range must lie inside a mapping made by [`reserve_aligned`] and hold nothing that
/// is still used.
pub(crate) unsafe fn release(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is ours and unused.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// Resident set size of the process in bytes (Linux `/proc/self/statm`), for tests and
/// benchmarks.
pub fn resident_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page as usize)
}

/// Asks the CPU to start loading the cache line at `p` (any address: a prefetch never
/// faults). A no-op where there is no such instruction.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `prefetcht0` reads nothing architecturally and never faults, whatever `p` is.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}
