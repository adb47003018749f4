//! The queue of finalizers ready to run (Go's finq): fixed-size blocks on a list, a cache
//! of free blocks (Go's finc), and a count of every block ever made (Go's allfin, which Go's
//! marker scans; here each entry holds a counted handle, so the queue is a root without a
//! scan).
//!
//! Invariant: an entry is pushed by the collector (world stopped) and taken by the
//! finalizer thread; every entry is run exactly once, then dropped (which drops its
//! handle and its `Func`).

use core::mem::MaybeUninit;
use core::ptr::NonNull;

use gc_types::{Func, Type};

use super::Conv;

/// One queued finalizer (Go's finalizer struct: fn, arg, nret, fint, ot).
pub(crate) struct Finalizer {
    /// The address the finalizer was set on; with `obj`, a handle whose count the entry holds.
    pub(crate) ptr: *const u8,
    pub(crate) obj: NonNull<u8>,
    pub(crate) func: Func,
    pub(crate) obj_ty: &'static Type,
    pub(crate) conv: Conv,
}

// SAFETY: the entry owns one count on `obj` (a handle's worth) and a Send `Func`; handles to
// Send + Sync objects may move between threads (row 11 checked the object type).
unsafe impl Send for Finalizer {}

const BLOCK_BYTES: usize = 4096;
const HEADER_BYTES: usize = 2 * core::mem::size_of::<usize>();
/// Entries per block.
pub(crate) const PER_BLOCK: usize =
    (BLOCK_BYTES - HEADER_BYTES) / core::mem::size_of::<Finalizer>();

/// A block of entries (Go's finBlock).
pub(crate) struct FinBlock {
    next: Option<Box<FinBlock>>,
    cnt: usize,
    fin: [MaybeUninit<Finalizer>; PER_BLOCK],
}

// Layout known to the queue: a block is one 4 KiB allocation.
const _: () = assert!(core::mem::size_of::<FinBlock>() <= BLOCK_BYTES);
const _: () = assert!(PER_BLOCK >= 32);

impl FinBlock {
    fn new() -> Box<FinBlock> {
        Box::new(FinBlock {
            next: None,
            cnt: 0,
            fin: [const { MaybeUninit::uninit() }; PER_BLOCK],
        })
    }
}

impl Drop for FinBlock {
    fn drop(&mut self) {
        for f in &mut self.fin[..self.cnt] {
            // SAFETY: the first `cnt` entries are initialised and owned by the block.
            unsafe { f.assume_init_drop() };
        }
    }
}

/// The queue.
#[derive(Default)]
pub(crate) struct FinQueue {
    /// Blocks with entries; the head is the one being filled.
    pub(crate) head: Option<Box<FinBlock>>,
    /// Empty blocks for reuse.
    pub(crate) free: Option<Box<FinBlock>>,
    /// Blocks ever made.
    pub(crate) all_blocks: usize,
    /// Entries waiting.
    pub(crate) len: usize,
}

impl FinQueue {
    /// Adds an entry (Go's queuefinalizer).
    pub(crate) fn push(&mut self, f: Finalizer) {
        let full = self.head.as_ref().is_none_or(|b| b.cnt == PER_BLOCK);
        if full {
            let mut b = match self.free.take() {
                Some(mut b) => {
                    self.free = b.next.take();
                    b
                }
                None => {
                    self.all_blocks += 1;
                    FinBlock::new()
                }
            };
            b.next = self.head.take();
            self.head = Some(b);
        }
        let b = self.head.as_mut().expect("a block with room");
        b.fin[b.cnt].write(f);
        b.cnt += 1;
        self.len += 1;
    }

    /// Takes every entry, oldest block last (Go's order: blocks newest first, entries in
    /// order within a block); the emptied blocks go back to the free cache.
    pub(crate) fn take_all(&mut self) -> Vec<Finalizer> {
        let mut out = Vec::with_capacity(self.len);
        let mut cur = self.head.take();
        while let Some(mut b) = cur {
            cur = b.next.take();
            let n = core::mem::take(&mut b.cnt);
            for f in &mut b.fin[..n] {
                // SAFETY: the first `n` entries are initialised; `cnt` is now 0, so the block
                // no longer owns them and each is read once.
                out.push(unsafe { f.assume_init_read() });
            }
            b.next = self.free.take();
            self.free = Some(b);
        }
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fill_are_reused_and_entries_come_out_once() {
        let mut q = FinQueue::default();
        let obj = NonNull::<u8>::dangling();
        let n = PER_BLOCK * 2 + 3;
        for i in 0..n {
            q.push(Finalizer {
                ptr: core::ptr::without_provenance(i),
                obj,
                func: Func::nullary(|| ()),
                obj_ty: <u8 as gc_types::Typed>::TYPE,
                conv: Conv::Handle,
            });
        }
        assert_eq!((q.len, q.all_blocks), (n, 3));
        let got = q.take_all();
        assert_eq!(got.len(), n);
        let mut addrs: Vec<usize> = got.iter().map(|f| f.ptr as usize).collect();
        addrs.sort_unstable();
        assert_eq!(addrs, (0..n).collect::<Vec<_>>());
        // Reuse: no new block for the next pushes.
        for f in got {
            q.push(f);
        }
        assert_eq!(q.all_blocks, 3);
        drop(q);
    }
}
