//! The fences of the world lock's handshake (see `handshake`): each side stores its flag,
//! fences, then reads the other's. Where the OS allows (Linux `membarrier`, private
//! expedited), the fences are asymmetric: the mutator's side is a compiler fence only, and
//! the collector's `membarrier` call makes every running thread of the process execute a
//! full fence, which is what the mutator's side needed. Elsewhere (or under Miri and loom)
//! both sides use `fence(SeqCst)`, and a mutator pays one `mfence` per outermost section.
//!
//! The mode is decided once, by the first thread that makes its `Local` or stops the
//! world, before any handshake: every thread sees the same mode for the process's life.

use core::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

/// How the handshake's fences are made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Fences {
    /// Not decided yet (no `Local` made, no world stopped).
    Undecided = 0,
    /// The mutator fences for the compiler; the collector calls `membarrier`.
    Asymmetric = 1,
    /// Both sides `fence(SeqCst)`.
    Symmetric = 2,
}

/// The process's `Fences`, as its `u8`.
static FENCES: AtomicU8 = AtomicU8::new(Fences::Undecided as u8);

#[cfg(all(target_os = "linux", not(miri), not(loom)))]
const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;

#[cfg(all(target_os = "linux", not(miri), not(loom)))]
fn try_membarrier() -> bool {
    const QUERY: libc::c_long = 0;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    // SAFETY: membarrier's query and register commands take no pointers and have no
    // effect beyond the return value and the registration.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
    supported >= 0
        && supported & PRIVATE_EXPEDITED != 0
        // SAFETY: as above.
        && unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) } == 0
}

#[cfg(not(all(target_os = "linux", not(miri), not(loom))))]
fn try_membarrier() -> bool {
    false
}

/// Decides the mode, once.
pub(super) fn init() {
    if FENCES.load(Ordering::Acquire) == Fences::Undecided as u8 {
        let mode = if try_membarrier() {
            Fences::Asymmetric
        } else {
            Fences::Symmetric
        };
        let _ = FENCES.compare_exchange(
            Fences::Undecided as u8,
            mode as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

#[inline]
fn asymmetric() -> bool {
    FENCES.load(Ordering::Relaxed) == Fences::Asymmetric as u8
}

/// The mutator's side of the handshake's fence: a compiler fence when the collector's
/// `membarrier` supplies the rest, a full fence otherwise.
#[inline]
pub(super) fn mutator_fence() {
    if asymmetric() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The collector's side of the handshake: a full fence on every thread of the process.
pub(super) fn heavy_fence() {
    if asymmetric() {
        #[cfg(all(target_os = "linux", not(miri), not(loom)))]
        {
            // SAFETY: the process registered for private expedited membarrier (`init`).
            let r = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) };
            assert!(r == 0, "fing::world: membarrier failed after registration");
        }
    } else {
        fence(Ordering::SeqCst);
    }
}
