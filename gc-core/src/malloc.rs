//! Allocation paths (Go's mallocgc): what allocating a `T` takes is decided at compile time
//! ([`Plan`]: tiny, a size class, or large, and whether its destructor runs user code,
//! which marks its span for `mgcmark::mark_doomed`); then the tiny block or a slot of the class comes from the thread's cache,
//! or a large object gets a span of its own.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use gc_types::Trace;

use crate::mcache::{MCache, TINY_SIZE};
use crate::mheap::{lock, MHeap};
use crate::mspan::SpanClass;
use crate::sizeclasses::{class_for, PAGE_SIZE};
use crate::slot::{data_offset, Header};

impl MHeap {
    /// Allocates a slot for a value of `size` bytes and alignment `align`: returns the
    /// object's header and the value's address. Inside a section. Inlined into each
    /// `alloc::<T>`, where the request is a constant: the tiny, small or large path is
    /// chosen at compile time.
    #[inline(always)]
    pub(crate) fn malloc(
        &'static self,
        cache: &mut MCache,
        r: Request,
    ) -> Option<(NonNull<Header>, NonNull<u8>)> {
        let Request {
            class,
            sweep_drop,
            size,
            align,
            noscan,
            tiny,
        } = r;
        if tiny {
            return cache.alloc_tiny(size, align);
        }
        let off = data_offset(align);
        match class {
            Some(class) => {
                let slot = cache.alloc_small(SpanClass::new(class, noscan), sweep_drop)?;
                Some((slot.cast(), NonNull::new(slot.as_ptr().wrapping_add(off))?))
            }
            None => self.malloc_large(size, align, noscan, sweep_drop),
        }
    }

    /// A large object: a span of its own. One aligned to more than a page has its header
    /// end its first page and its value start the next, which is aligned (`data_offset`).
    #[cold]
    #[inline(never)]
    fn malloc_large(
        &'static self,
        size: usize,
        align: usize,
        noscan: bool,
        sweep_drop: bool,
    ) -> Option<(NonNull<Header>, NonNull<u8>)> {
        let (npages, span_align) = if align > PAGE_SIZE {
            (1 + size.max(1).div_ceil(PAGE_SIZE), align)
        } else {
            (data_offset(align).checked_add(size)?.div_ceil(PAGE_SIZE), 0)
        };
        let s = self.new_span(
            npages,
            npages * PAGE_SIZE,
            SpanClass::new(0, noscan),
            span_align,
        )?;
        let span = s.get();
        span.next_free()
            .expect("fing::malloc: fresh large span is full");
        if crate::mheap::cycling() == self.id {
            // Black, as every allocation during a cycle (`mgcwork`).
            span.mark_shared(0);
        }
        if sweep_drop {
            span.note_sweep_drop();
        }
        self.grew(span.bytes());
        self.large_mallocs.fetch_add(1, Ordering::Relaxed);
        lock(&self.counters).base.bytes += span.bytes() as u64;
        let slot = span.slot(0);
        let data = slot.wrapping_add(data_offset(align));
        debug_assert!(
            data.addr().is_multiple_of(align),
            "fing::malloc: a misaligned value"
        );
        Some((NonNull::new(slot)?.cast(), NonNull::new(data)?))
    }
}

/// What allocating a `T` takes, decided at compile time.
pub(crate) struct Plan<T>(core::marker::PhantomData<T>);

impl<T: Trace> Plan<T> {
    pub(crate) const SIZE: usize = core::mem::size_of::<T>();
    pub(crate) const ALIGN: usize = core::mem::align_of::<T>();
    /// Tiny allocator: noscan, no destructor, under 16 bytes, word alignment at most.
    pub(crate) const TINY: bool = T::NO_SCAN
        && !core::mem::needs_drop::<T>()
        && Self::SIZE > 0
        && Self::SIZE < TINY_SIZE
        && Self::ALIGN <= 8;
    /// Refuses, at compile time, an alignment fing does not honour.
    pub(crate) const ALIGN_OK: () = assert!(
        Self::ALIGN <= crate::slot::MAX_ALIGN,
        "fing::Heap::alloc: this type's alignment is above fing::MAX_ALIGN (16 MiB)"
    );
    /// The size class (`None`: a large object).
    pub(crate) const CLASS: Option<usize> = class_for(
        data_offset(Self::ALIGN) + Self::SIZE,
        if Self::ALIGN > 8 { Self::ALIGN } else { 8 },
    );
    /// Does its destructor run user code (so its span is marked `needs_sweep_drop`)?
    /// `Type::at_zero`'s `Doom`, from the same constants.
    pub(crate) const SWEEP_DROP: bool =
        core::mem::needs_drop::<T>() && !T::HANDLES_ONLY_DROP && !T::DROP_ONLY_FREES;
    pub(crate) const REQUEST: Request = Request {
        class: Self::CLASS,
        sweep_drop: Self::SWEEP_DROP,
        size: Self::SIZE,
        align: Self::ALIGN,
        noscan: T::NO_SCAN,
        tiny: Self::TINY,
    };
}

impl Request {
    /// The request for a value whose size is known only at run time (a slice's elements:
    /// `Heap::alloc_slice`), decided as `Plan` decides it for a type: `size` bytes aligned
    /// to `align` (at most `MAX_ALIGN`), holding handles unless `noscan`, with a destructor
    /// that runs user code if `sweep_drop`. Tiny when noscan, without destructor, under
    /// 16 bytes and word-aligned at most.
    pub(crate) fn runtime(
        size: usize,
        align: usize,
        noscan: bool,
        needs_drop: bool,
        sweep_drop: bool,
    ) -> Request {
        debug_assert!(align <= crate::slot::MAX_ALIGN && align.is_power_of_two());
        Request {
            class: data_offset(align)
                .checked_add(size)
                .and_then(|s| class_for(s, align.max(8))),
            sweep_drop,
            size,
            align,
            noscan,
            tiny: noscan && !needs_drop && size > 0 && size < TINY_SIZE && align <= 8,
        }
    }

    /// Does the slot come from the tiny allocator (whose block's header is written and
    /// counted already)?
    pub(crate) fn is_tiny(&self) -> bool {
        self.tiny
    }
}

/// An allocation request (see `Plan`).
#[derive(Clone, Copy)]
pub(crate) struct Request {
    class: Option<usize>,
    sweep_drop: bool,
    size: usize,
    align: usize,
    noscan: bool,
    tiny: bool,
}
