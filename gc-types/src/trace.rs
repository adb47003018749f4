//! `Trace` and `Tracer`: how the collector finds the handles a value owns.
//!
//! The collector never guesses: every handle stored in a heap object is reported by the
//! object's trace glue. Tracing does not follow handles; it pushes the address of each
//! referenced object onto the [`Tracer`]'s edge list, and the collector decides what an
//! edge means in the phase it is in (subtract one from the target's count while it looks
//! for roots, mark the target while it marks). One monomorphic push per edge, no dynamic
//! dispatch.
//!
//! Soundness: a handle that `trace` forgets only keeps its target alive
//! longer, since its count then looks like a reference from outside the heap. A handle
//! reported that the value does not own, or reported twice, makes a live object look
//! unreferenced: that is why `Trace` is an `unsafe trait`, why it is not implemented for
//! `Rc`, `Arc`, `Cell`, `RefCell` or `Mutex` holding handles (shared or unsynchronised
//! ownership), and why users get it from `#[derive(Trace)]`.

use core::ptr::NonNull;

use crate::ty::PtrMask;
use crate::Typed;

/// A type whose values the collector can trace.
///
/// # Safety
/// Implementations must keep these promises, which the collector relies on to never free
/// a live object:
/// - `trace` reports, through the `trace` of its parts, only handles that `self` owns
///   exclusively (not through `Rc`/`Arc` or any other shared ownership), each at most once,
///   and it must not mutate anything a handle can reach;
/// - `NO_SCAN` is true only if no value of the type can ever hold a handle;
/// - `PTRMASK`, when known, marks exactly the words that hold object references;
/// - `NONE_IS_NULL`, `HANDLES_ONLY_DROP` and `DROP_ONLY_FREES`, when true, are true (see
///   each);
/// - the `Typed` descriptor describes `Self` ([`Typed`]'s contract).
///
/// Derive it: `#[derive(Trace)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in fing's heap: it does not implement `Trace`",
    label = "not `Trace`",
    note = "derive it with `#[derive(Trace)]`, or mark the field `#[gc(untraced)]` if it can never hold a handle",
    note = "`Rc`, `Arc`, `Cell`, `RefCell` and `Mutex` are not `Trace`: tracing through shared or unsynchronised ownership could free live objects; use `Gc` and `GcCell`"
)]
pub unsafe trait Trace: Typed {
    /// True if no value of this type can hold a handle (Go's noscan).
    const NO_SCAN: bool;
    /// Where the handles are, word by word, if the layout allows saying so.
    const PTRMASK: PtrMask = if Self::NO_SCAN {
        PtrMask::EMPTY
    } else {
        PtrMask::Unknown
    };
    /// True if `Option<Self>` has the size of `Self` and writes `None` as zero in every word
    /// the mask marks (so the mask serves the option too). The handle type's promise.
    #[doc(hidden)]
    const NONE_IS_NULL: bool = false;
    /// True if dropping a value does nothing but drop handles: the sweeper may skip the
    /// destructor of such garbage (its handles' counts are settled by the collector).
    #[doc(hidden)]
    const HANDLES_ONLY_DROP: bool = !core::mem::needs_drop::<Self>();
    /// True if dropping a value runs no code but handle drops and the global allocator's
    /// deallocations (a `Vec` or `String` of such, an untraced field of a [`DropOnlyFrees`]
    /// type): the freeing path may run it inside a mutator section when the count reaches
    /// zero, as it runs a handles-only drop (fing itself allocates and frees with the
    /// global allocator there). Unlike a handles-only drop, a collection must still run it
    /// (it frees memory): it does in its release step, with the world stopped. Implied by
    /// `HANDLES_ONLY_DROP`.
    #[doc(hidden)]
    const DROP_ONLY_FREES: bool = Self::HANDLES_ONLY_DROP;
    /// Reports every handle `self` owns to `tracer`.
    ///
    /// It runs with the world stopped, on whichever thread the collector gives the work
    /// to: its own, its helper, or a program thread waiting out a stop. So it should read
    /// `self` and nothing else (no thread-locals, no locks, no calls into fing).
    ///
    /// It should not panic. If it does during a collection, the collection is abandoned
    /// before anything is freed (its scratch state is reset, the world resumes) and the
    /// panic reaches the thread that collected, with the type named on stderr.
    fn trace(&self, tracer: &mut Tracer);
}

/// Collects the edges (referenced objects) that tracing reports.
///
/// Owned by the collector; user code only passes it on to `Trace::trace` of its fields.
#[derive(Default)]
pub struct Tracer {
    edges: Vec<NonNull<u8>>,
}

impl core::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tracer")
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl Tracer {
    /// An empty tracer.
    pub fn new() -> Tracer {
        Tracer { edges: Vec::new() }
    }

    /// Reports an edge to the heap object at `obj`.
    ///
    /// # Safety
    /// `obj` must be the address of a live object of the heap being collected: only
    /// the handle type's own `Trace` impl calls this.
    #[inline]
    pub unsafe fn edge(&mut self, obj: NonNull<u8>) {
        self.edges.push(obj);
    }

    /// The edges reported so far.
    pub fn edges(&self) -> &[NonNull<u8>] {
        &self.edges
    }

    /// Takes one edge off the end.
    #[inline]
    pub fn pop(&mut self) -> Option<NonNull<u8>> {
        self.edges.pop()
    }

    /// Forgets every edge, keeping the buffer.
    pub fn clear(&mut self) {
        self.edges.clear();
    }
}

/// The `unsafe` half of `#[gc(unsafe_allow_drop)]`: a traced type with a `Drop` of its own.
///
/// The derive forbids `Drop` on traced types (two conflicting impls of a marker trait),
/// because a destructor could dereference a handle whose object died in the same
/// collection. `#[gc(unsafe_allow_drop)]` lifts the ban only together with this impl
/// (`tests/derive.rs` compiles this example):
///
/// ```ignore
/// use fing::{AllowDrop, Gc, GcCell, Trace};
///
/// #[derive(Trace)]
/// #[gc(unsafe_allow_drop)]
/// struct Node {
///     id: u64,
///     next: GcCell<Option<Gc<Node>>>,
/// }
///
/// // SAFETY: `drop` reads `id` only, never a handle.
/// unsafe impl AllowDrop for Node {}
///
/// impl Drop for Node {
///     fn drop(&mut self) {
///         println!("node {} dropped", self.id);
///     }
/// }
/// ```
///
/// What such a destructor may touch: it runs outside the collector's stop, where a
/// mutator may do anything (fing's `mdrop`), after its object was found dead. Its own
/// value's untraced state, and whatever that reaches (a handle hidden from the collector
/// keeps its object alive), are intact; the objects of the value's *traced* handles may
/// be dead in the same cycle, their values destroyed already (their memory stays until
/// the whole cycle's destructors have run, so dropping those handles is fine).
///
/// # Safety
/// The type's `Drop` must not dereference, clone or move out any traced handle of the
/// value being dropped (handles it can reach through untraced fields are fine).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has `#[gc(unsafe_allow_drop)]` but no `unsafe impl fing::AllowDrop for {Self} {{}}`",
    label = "missing `unsafe impl AllowDrop`",
    note = "the impl promises that `Drop` never dereferences the value's traced handles: their objects may be dead in the same collection"
)]
pub unsafe trait AllowDrop {}

/// A promise that dropping a value runs no code but the global allocator's deallocations
/// (and drops of more such values): a `Lambda` of an interpreter's compiled code behind an
/// `Arc`, say. It matters for `#[gc(untraced)]` fields, whose drop the derive cannot see
/// into: an untraced field whose type has drop glue makes its object's destructor user
/// code, which a collection must run after the world resumes, on the drop thread (fing's
/// `mdrop`), keeping the object and everything it reaches allocated until then. With
/// this impl the field's drop counts as freeing only (`Trace::DROP_ONLY_FREES`), and the
/// collection drops such garbage in its own release step, as the freeing path drops it at
/// count zero.
///
/// Implemented here for `String`, `str`, `Box`, `Vec`, `VecDeque`, `Option`, `Result`,
/// tuples, slices and arrays of such, std's maps and sets of such (with std's hasher),
/// and `Arc` of such (an `Arc`'s drop lowers a count, and at zero drops its value and
/// frees it), and for the primitive types. `tests/derive.rs` compiles this:
///
/// ```ignore
/// use std::sync::Arc;
/// use fing::{DropOnlyFrees, Gc, Trace};
///
/// /// Compiled code, shared by every closure made from it.
/// struct Code {
///     ops: Vec<u32>,
///     consts: Vec<String>,
/// }
///
/// // SAFETY: `Code` has no `Drop` of its own; its fields only free memory when dropped.
/// unsafe impl DropOnlyFrees for Code {}
///
/// #[derive(Trace)]
/// struct Closure {
///     #[gc(untraced)]
///     code: Arc<Code>,
///     env: Option<Gc<Closure>>,
/// }
/// ```
///
/// # Safety
/// Dropping a value of the type must call no code but the global allocator's `dealloc`
/// and the drops of values whose types keep this same promise: no `Drop` impl of its own
/// (or of any part) that does anything else, no lock, no I/O, no thread-local, and no
/// handle of fing (a collection runs such drops with the world stopped, on whichever
/// thread holds it: a lock there can wait for a thread that waits for the world, and
/// fing's own calls panic).
pub unsafe trait DropOnlyFrees {}

macro_rules! only_frees {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: no drop glue at all.
        unsafe impl DropOnlyFrees for $t {}
    )*};
}
only_frees!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    str,
);

// SAFETY: each frees its buffer and drops its elements, which keep the promise.
unsafe impl<T: DropOnlyFrees> DropOnlyFrees for Vec<T> {}
// SAFETY: as `Vec`.
unsafe impl<T: DropOnlyFrees> DropOnlyFrees for std::collections::VecDeque<T> {}
// SAFETY: drops its value, which keeps the promise, and frees its allocation.
unsafe impl<T: ?Sized + DropOnlyFrees> DropOnlyFrees for Box<T> {}
// SAFETY: lowers its count (an atomic operation, no code); at zero drops its value, which
// keeps the promise, and frees its allocation.
unsafe impl<T: ?Sized + DropOnlyFrees> DropOnlyFrees for std::sync::Arc<T> {}
// SAFETY: drops its value, if any.
unsafe impl<T: DropOnlyFrees> DropOnlyFrees for Option<T> {}
// SAFETY: drops each element.
unsafe impl<T: DropOnlyFrees> DropOnlyFrees for [T] {}
// SAFETY: drops each element.
unsafe impl<T: DropOnlyFrees, const N: usize> DropOnlyFrees for [T; N] {}
// SAFETY: drops its value.
unsafe impl<T: DropOnlyFrees, E: DropOnlyFrees> DropOnlyFrees for Result<T, E> {}
// SAFETY: std's hasher state: two integers, no drop glue.
unsafe impl DropOnlyFrees for std::hash::RandomState {}
// SAFETY: a zero-sized marker whose drop is its type argument's, which keeps the promise.
unsafe impl<H: DropOnlyFrees> DropOnlyFrees for std::hash::BuildHasherDefault<H> {}
// SAFETY: the maps and sets drop their entries, which keep the promise, their hasher
// (likewise), and free their nodes or tables.
unsafe impl<K: DropOnlyFrees, V: DropOnlyFrees> DropOnlyFrees for std::collections::BTreeMap<K, V> {}
// SAFETY: as `BTreeMap`.
unsafe impl<T: DropOnlyFrees> DropOnlyFrees for std::collections::BTreeSet<T> {}
// SAFETY: as `BTreeMap`.
unsafe impl<K: DropOnlyFrees, V: DropOnlyFrees, S: DropOnlyFrees> DropOnlyFrees
    for std::collections::HashMap<K, V, S>
{
}
// SAFETY: as `BTreeMap`.
unsafe impl<T: DropOnlyFrees, S: DropOnlyFrees> DropOnlyFrees for std::collections::HashSet<T, S> {}

macro_rules! only_frees_tuple {
    ($($t:ident),+) => {
        // SAFETY: drops each part, which keeps the promise.
        unsafe impl<$($t: DropOnlyFrees),+> DropOnlyFrees for ($($t,)+) {}
    };
}
only_frees_tuple!(A);
only_frees_tuple!(A, B);
only_frees_tuple!(A, B, C);
only_frees_tuple!(A, B, C, D);
