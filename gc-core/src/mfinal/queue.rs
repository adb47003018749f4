//! The queue of finalizers ready to run (Go's finq): fixed-size blocks on a list, a cache
//! of free blocks (Go's finc), and a count of every block ever made (Go's allfin, which Go's
//! marker scans; here each entry holds a counted handle, so the queue is a root without a
//! scan).
//!
//! Beside the blocks, the queue holds *runs*: whole record vectors of spans in which
//! everything died (a burst of garbage), taken over as they are, so a burst's entries are
//! neither copied nor put in new blocks. (Go copies each finalizer into finq; its specials
//! are a linked list, with no vector to hand over.)
//!
//! Invariant: an entry is pushed by the collector (world stopped) and taken by the
//! finalizer thread; every entry is run exactly once, then dropped (which drops its
//! handle and its `Func`).

use core::mem::MaybeUninit;

use super::PREFETCH_AHEAD;

/// One queued finalizer (Go's finalizer struct: fn, arg, nret, fint, ot): the record it
/// was, moved here whole, now owning one count on its object (a handle's worth).
pub(crate) type Finalizer = super::Record;

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
        // The rest of the list, one block at a time (a burst's list is long: no recursion).
        let mut next = self.next.take();
        while let Some(mut b) = next {
            next = b.next.take();
        }
    }
}

/// The queue.
#[derive(Default)]
pub(crate) struct FinQueue {
    /// Blocks with entries; the head is the one being filled.
    head: Option<Box<FinBlock>>,
    /// Empty blocks for reuse.
    free: Option<Box<FinBlock>>,
    /// Blocks in `head` and `free`.
    pub(crate) all_blocks: usize,
    /// Whole vectors of entries (see the module docs).
    runs: Vec<Vec<Finalizer>>,
    /// Entries waiting, in blocks and runs.
    pub(crate) len: usize,
}

/// The length of a list of blocks.
fn count(list: Option<&FinBlock>) -> usize {
    core::iter::successors(list, |b| b.next.as_deref()).count()
}

/// Empty blocks kept for reuse after a batch (256 KiB); a burst's extra blocks are freed.
const MAX_FREE: usize = 64;

/// Emptied record vectors, for spans to take when they get their first record (Go takes
/// its specials from a fixed-size allocator, which keeps their memory). A vector that was
/// a run comes back here once the finalizer thread has run it, with its capacity: in a
/// steady cycle of bursts, records are written to memory that is already mapped and
/// sized, with no `malloc`, `realloc` copy or page fault (after another workload had
/// left `malloc` trimming its heap, the 1M cycle faulted in its 48 MB of records anew in
/// every round, a quarter of its time). At most `VecPool::MAX_RECORDS` records' worth of
/// capacity is kept; the rest is freed.
pub(crate) struct VecPool {
    vecs: Vec<Vec<Finalizer>>,
    /// Records the kept vectors have room for.
    capacity: usize,
}

static POOL: crate::spin::SpinLock<VecPool> = crate::spin::SpinLock::new(VecPool {
    vecs: Vec::new(),
    capacity: 0,
});

impl VecPool {
    /// 48 MiB of records (the 1M-finalizer burst's).
    const MAX_RECORDS: usize = 1 << 20;

    /// An empty vector with room for records, if one is kept.
    pub(crate) fn take() -> Option<Vec<Finalizer>> {
        POOL.lock().pop()
    }

    /// Keeps emptied vectors, up to the limit (the rest are freed outside the lock).
    fn give_back(vecs: Vec<Vec<Finalizer>>) {
        if !vecs.is_empty() {
            let freed = POOL.lock().keep(vecs);
            drop(freed);
        }
    }

    fn pop(&mut self) -> Option<Vec<Finalizer>> {
        let v = self.vecs.pop()?;
        self.capacity -= v.capacity();
        Some(v)
    }

    /// Keeps what fits of `vecs`; returns the others.
    fn keep(&mut self, vecs: Vec<Vec<Finalizer>>) -> Vec<Vec<Finalizer>> {
        let mut refused = Vec::new();
        for v in vecs {
            debug_assert!(v.is_empty(), "fing::mfinal: a pooled vector holds records");
            if v.capacity() > 0 && self.capacity + v.capacity() <= Self::MAX_RECORDS {
                self.capacity += v.capacity();
                self.vecs.push(v);
            } else {
                refused.push(v);
            }
        }
        refused
    }
}

/// A taken batch: the queue's blocks and runs, entries in them (see `FinQueue::take_all`).
pub(crate) struct Blocks(Option<Box<FinBlock>>, Vec<Vec<Finalizer>>);

impl Blocks {
    /// Hands every entry to `run`: the blocks' first, oldest block last (Go's order: blocks
    /// newest first, entries in order within a block), then the runs', each in address
    /// order, prefetching the object of the entry `PREFETCH_AHEAD` later. Returns the
    /// emptied blocks and run vectors (for `FinQueue::recycle`). If `run` unwinds, the
    /// entries not handed out yet are leaked, never read twice.
    ///
    /// Each entry is handed out where it lies, not moved: a 48-byte copy to the stack,
    /// read back in other widths by the invoker, stalled on store forwarding.
    ///
    /// # Safety
    /// `run` takes over the entry it is given: it reads it exactly once (`ptr::read`) and
    /// keeps no pointer to it.
    pub(crate) unsafe fn run_each(mut self, mut run: impl FnMut(*mut Finalizer)) -> Blocks {
        let mut cur = self.0.as_deref_mut();
        while let Some(b) = cur {
            let n = core::mem::take(&mut b.cnt);
            // SAFETY: the first `n` entries are initialised (`MaybeUninit` has the entry's
            // layout); `cnt` is now 0, so the block no longer owns them.
            unsafe { hand_out(b.fin.as_mut_ptr().cast(), n, &mut run) };
            cur = b.next.as_deref_mut();
        }
        for v in &mut self.1 {
            let n = v.len();
            // SAFETY: 0 is in bounds; the vector no longer owns its `n` entries, which stay
            // initialised in its buffer until handed out.
            unsafe { v.set_len(0) };
            // SAFETY: those `n` entries, owned by no one else now.
            unsafe { hand_out(v.as_mut_ptr(), n, &mut run) };
        }
        self
    }
}

/// Hands the `n` entries at `base` to `run` in order, prefetching objects ahead.
///
/// # Safety
/// The entries are initialised and owned by no one else; `run` takes each over (see
/// `Blocks::run_each`).
unsafe fn hand_out(base: *mut Finalizer, n: usize, run: &mut impl FnMut(*mut Finalizer)) {
    for i in 0..n {
        if i + PREFETCH_AHEAD < n {
            // SAFETY: an initialised entry (the caller's), handed out later.
            let ahead = unsafe { &*base.wrapping_add(i + PREFETCH_AHEAD) };
            crate::mem::prefetch(ahead.ptr);
        }
        run(base.wrapping_add(i));
    }
}

impl FinQueue {
    /// The head block, with room for at least one entry (a spare or new block is put at
    /// the head when it is full).
    fn head_with_room(&mut self) -> &mut FinBlock {
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
        self.head.as_mut().expect("a block with room")
    }

    /// Adds an entry (Go's queuefinalizer).
    pub(crate) fn push(&mut self, f: Finalizer) {
        let b = self.head_with_room();
        b.fin[b.cnt].write(f);
        b.cnt += 1;
        self.len += 1;
    }

    /// Takes over a whole vector of entries (a run).
    pub(crate) fn push_run(&mut self, v: Vec<Finalizer>) {
        if !v.is_empty() {
            self.len += v.len();
            self.runs.push(v);
        }
    }

    /// Takes every entry, in their blocks: no entry is moved.
    pub(crate) fn take_all(&mut self) -> Blocks {
        self.len = 0;
        Blocks(self.head.take(), core::mem::take(&mut self.runs))
    }

    /// Moves the entries and spare blocks of `other` (a collection's batch) into this
    /// queue, its blocks ahead of these (newest first).
    pub(crate) fn append(&mut self, other: FinQueue) {
        let FinQueue {
            head,
            free,
            all_blocks,
            runs,
            len,
        } = other;
        self.all_blocks += all_blocks;
        self.len += len;
        self.runs.extend(runs);
        if let Some(mut new) = head {
            let mut tail = &mut new;
            while tail.next.is_some() {
                tail = tail.next.as_mut().expect("checked above");
            }
            tail.next = self.head.take();
            self.head = Some(new);
        }
        self.recycle(Blocks(free, Vec::new()));
    }

    /// How many blocks the free cache holds (at most `MAX_FREE`, so walking it is cheap).
    fn free_blocks(&self) -> usize {
        count(self.free.as_deref())
    }

    /// An empty queue (const: the finalizer thread's is a static).
    pub(crate) const fn new() -> FinQueue {
        FinQueue {
            head: None,
            free: None,
            all_blocks: 0,
            runs: Vec::new(),
            len: 0,
        }
    }

    /// Takes back emptied blocks and run vectors: up to `MAX_FREE` blocks stay for reuse,
    /// the rest are freed; the vectors go to the record vectors' pool (`VecPool`).
    pub(crate) fn recycle(&mut self, blocks: Blocks) {
        VecPool::give_back(blocks.1);
        let mut kept = self.free_blocks();
        let mut cur = blocks.0;
        while let Some(mut b) = cur {
            cur = b.next.take();
            debug_assert_eq!(b.cnt, 0, "fing::mfinal: a recycled block holds entries");
            if kept < MAX_FREE {
                b.next = self.free.take();
                self.free = Some(b);
                kept += 1;
            } else {
                self.all_blocks -= 1;
            }
        }
    }

    /// Takes the entries (and their blocks) out of this queue, keeping its spare blocks:
    /// what a collection hands over while it goes on filling.
    pub(crate) fn take_filled(&mut self) -> FinQueue {
        let blocks = count(self.head.as_deref());
        self.all_blocks -= blocks;
        FinQueue {
            head: self.head.take(),
            free: None,
            all_blocks: blocks,
            runs: core::mem::take(&mut self.runs),
            len: core::mem::take(&mut self.len),
        }
    }

    /// A queue for one collection to fill, with this queue's spare blocks.
    pub(crate) fn split_spare(&mut self) -> FinQueue {
        let n = self.free_blocks();
        self.all_blocks -= n;
        FinQueue {
            head: None,
            free: self.free.take(),
            all_blocks: n,
            runs: Vec::new(),
            len: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry whose `Func` holds a clone of `token` (so drops can be counted).
    fn entry(i: usize, token: &std::sync::Arc<()>) -> Finalizer {
        let t = token.clone();
        Finalizer {
            ptr: core::ptr::without_provenance(i),
            func: gc_types::Func::nullary(move || {
                core::hint::black_box(&t);
            }),
            obj_ty: <u8 as gc_types::Typed>::TYPE,
        }
    }

    #[test]
    fn the_vector_pool_keeps_emptied_vectors_up_to_its_limit() {
        let mut p = VecPool {
            vecs: Vec::new(),
            capacity: 0,
        };
        let with_room = |n| Vec::<Finalizer>::with_capacity(n);
        let refused = p.keep(vec![
            with_room(512),
            Vec::new(),
            with_room(VecPool::MAX_RECORDS),
        ]);
        assert_eq!(
            refused.len(),
            2,
            "no room in one, too much room in the other"
        );
        assert_eq!(p.capacity, p.vecs[0].capacity());
        let v = p.pop().expect("a kept vector");
        assert!(v.capacity() >= 512 && v.is_empty());
        assert_eq!((p.capacity, p.pop().is_none()), (0, true));
    }

    #[test]
    fn blocks_and_runs_fill_blocks_are_reused_and_entries_come_out_once() {
        let token = std::sync::Arc::new(());
        let mut q = FinQueue::new();
        let n = PER_BLOCK * 2 + 3;
        // Some one at a time, most as a run (a dead span's record vector), some more singly.
        for i in 0..5 {
            q.push(entry(i, &token));
        }
        q.push_run((5..n - 3).map(|i| entry(i, &token)).collect());
        q.push_run(Vec::new());
        for i in n - 3..n {
            q.push(entry(i, &token));
        }
        assert_eq!((q.len, q.all_blocks), (n, 1));
        let mut got = Vec::new();
        let take = |f: *mut Finalizer| {
            // SAFETY: an entry handed out once, ours to take.
            got.push(unsafe { f.read() })
        };
        // SAFETY: `take` reads each entry once.
        let empty = unsafe { q.take_all().run_each(take) };
        assert_eq!((got.len(), q.len), (n, 0));
        let mut addrs: Vec<usize> = got.iter().map(|f| f.ptr as usize).collect();
        addrs.sort_unstable();
        assert_eq!(addrs, (0..n).collect::<Vec<_>>());
        q.recycle(empty);
        // Reuse: a collection's batch is filled from the spare blocks, handed over in
        // parts, then appended.
        let mut batch = q.split_spare();
        assert_eq!((q.all_blocks, batch.all_blocks), (0, 1));
        let mut rest = got.split_off(PER_BLOCK + 1);
        for f in got {
            batch.push(f);
        }
        let part = batch.take_filled();
        assert_eq!(
            (part.len, part.all_blocks, batch.all_blocks),
            (PER_BLOCK + 1, 2, 0)
        );
        q.append(part);
        let last = rest.pop().expect("entries left");
        batch.push_run(rest);
        batch.push(last);
        q.append(batch);
        assert_eq!((q.len, q.all_blocks), (n, 3));
        assert_eq!(std::sync::Arc::strong_count(&token), n + 1);
        drop(q);
        assert_eq!(
            std::sync::Arc::strong_count(&token),
            1,
            "each entry dropped once"
        );
    }
}
