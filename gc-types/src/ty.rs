//! `Type`: the runtime type descriptor (Go's `_type`), and the parts it is made of.
//!
//! A `Type` is `'static` and immutable. Rust types get theirs from [`Typed`](crate::Typed)
//! as a constant (`Type::of::<T>()`); an interpreter builds its own at run time with
//! [`TypeBuilder`](crate::TypeBuilder), which leaks them, as Go's types live forever.
//!
//! Invariants every descriptor keeps (the collector and the frame invoker trust them):
//! - `size` and `align` are those of the Rust representation (`size_of`/`align_of` for a
//!   Rust type; C layout for a built struct);
//! - `noscan` is true only if no value of the type can hold a handle;
//! - the trace glue (a trace function, a pointer mask or, for built structs, the fields)
//!   reports exactly the handles a value owns, each once;
//! - the drop glue drops a value in place exactly as Rust would;
//! - element, length, fields, signature and method set are present exactly for the kinds
//!   that have them ([`Kind`]).
//!
//! Nested types are referred to through [`TypeRef`], which for Rust types is a function
//! returning the descriptor: descriptors of recursive types (`struct List { next:
//! Option<Gc<List>> }`) refer to themselves, and a constant cannot.

use core::any::{Any, TypeId};
use core::fmt;

use crate::kind::Kind;
use crate::trace::Tracer;

/// Traces the handles of a value in place. See [`Trace`](crate::Trace).
pub type TraceFn = unsafe fn(*const u8, &mut Tracer);
/// Drops a value in place.
pub type DropFn = unsafe fn(*mut u8);

/// A reference to a descriptor, resolved when it is used.
#[derive(Clone, Copy)]
pub enum TypeRef {
    /// A Rust type's descriptor, produced on demand (breaks cycles between constants).
    Lazy(fn() -> &'static Type),
    /// A descriptor that already exists (every type built at run time).
    Static(&'static Type),
}

impl TypeRef {
    /// The reference to `T`'s descriptor.
    pub const fn of<T: crate::Typed>() -> TypeRef {
        TypeRef::Lazy(Type::of::<T>)
    }

    /// The descriptor.
    #[inline]
    pub fn get(self) -> &'static Type {
        match self {
            TypeRef::Lazy(f) => f(),
            TypeRef::Static(t) => t,
        }
    }
}

impl fmt::Debug for TypeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.get(), f)
    }
}

/// What makes two descriptors the same type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeIdent {
    /// A Rust type.
    Rust(TypeId),
    /// A type built at run time (unique per build).
    Runtime(u64),
}

/// One field of a struct (or tuple) type.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The field's name (`"0"`, `"1"`, … for tuple fields).
    pub name: &'static str,
    /// Byte offset from the start of the value.
    pub offset: usize,
    /// The field's type.
    pub ty: TypeRef,
    /// True for a `#[gc(untraced)]` field: not traced, not looked inside.
    pub untraced: bool,
}

/// One method of an interface's method set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method {
    /// The method's name.
    pub name: &'static str,
}

/// Writes an interface handle (`Gc<dyn Trait>`) for the value at `data`, counting on the
/// object at `obj`, to `dst`. The handle takes over one count the caller holds.
pub type WriteHandleFn = unsafe fn(data: *const u8, obj: core::ptr::NonNull<u8>, dst: *mut u8);

/// An interface a named type implements (Go's itab): the interface type and the
/// conversions from a data pointer to the Rust trait object.
///
/// `cast` holds an `fn(*const u8) -> *const dyn Trait` for the interface's trait; the
/// code that knows the trait (the `#[fing::interface]` expansion) downcasts it, so a
/// mismatch is a failed downcast, never a wrong transmute. `write_handle` makes the
/// interface handle the frame invoker passes to a finalizer taking `Gc<dyn Trait>`, which
/// it trusts: an itab is made only by `unsafe` code ([`Itab::new`]).
#[derive(Clone, Copy)]
pub struct Itab {
    iface: TypeRef,
    cast: &'static (dyn Any + Send + Sync),
    write_handle: WriteHandleFn,
}

impl Itab {
    /// An itab for interface `iface` (`Gc<dyn Trait>`'s descriptor, or an interpreter's
    /// built interface), with the type-erased conversion `cast` and the writer of the
    /// interface handle.
    ///
    /// # Safety
    /// `write_handle`, given `data` pointing to a live value of the type this itab is put
    /// on (inside the heap object at `obj`, whose count the caller hands over) and `dst`
    /// valid for writes of `iface`'s size, must write a valid value of type `iface` there
    /// that owns that count; `cast`, when it is an `fn(*const u8) -> *const dyn Trait`,
    /// must turn such a `data` into a valid trait object of that value.
    pub const unsafe fn new(
        iface: TypeRef,
        cast: &'static (dyn Any + Send + Sync),
        write_handle: WriteHandleFn,
    ) -> Itab {
        Itab {
            iface,
            cast,
            write_handle,
        }
    }

    /// The interface type.
    pub fn iface(&self) -> &'static Type {
        self.iface.get()
    }

    /// The type-erased conversion from a data pointer to the trait object (the
    /// `#[fing::interface]` expansion downcasts it).
    pub fn cast(&self) -> &'static (dyn Any + Send + Sync) {
        self.cast
    }

    /// The writer of the interface handle (see [`Itab::new`]).
    pub fn write_handle(&self) -> WriteHandleFn {
        self.write_handle
    }
}

impl fmt::Debug for Itab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Itab({})", self.iface.get())
    }
}

/// Where the handles of a value are, word by word (Go's pointer bitmap).
///
/// Bit `i` set means the `i`-th pointer-sized word of the value is a handle word (see
/// [`word`](crate::word)), or null (a `None` of `Option<Gc<T>>`): the collector decodes
/// the object it counts on from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtrMask {
    /// The layout does not allow a mask (handles behind a tag, a `Vec`, …): trace by
    /// function.
    Unknown,
    /// The mask of a value of at most 64 words.
    Small(u64),
    /// The mask of a larger value (built types).
    Words(&'static [u64]),
}

impl PtrMask {
    /// The mask of a type with no handles.
    pub const EMPTY: PtrMask = PtrMask::Small(0);

    /// Is the mask known?
    pub const fn is_known(&self) -> bool {
        !matches!(self, PtrMask::Unknown)
    }

    /// Is word `i` an object reference? `None` if the mask is unknown.
    pub fn word(&self, i: usize) -> Option<bool> {
        match *self {
            PtrMask::Unknown => None,
            PtrMask::Small(m) => Some(i < 64 && m >> i & 1 == 1),
            PtrMask::Words(w) => Some(w.get(i / 64).is_some_and(|m| m >> (i % 64) & 1 == 1)),
        }
    }

    /// The mask of a struct from its fields' masks and offsets, if every field has a
    /// known mask, every field with handles sits at a word-aligned offset, and the
    /// struct is at most 64 words. Used by derived code, at compile time.
    pub const fn of_fields(size: usize, fields: &[(usize, PtrMask)]) -> PtrMask {
        let word = core::mem::size_of::<usize>();
        let mut acc = 0u64;
        let mut i = 0;
        while i < fields.len() {
            let (offset, mask) = fields[i];
            match mask {
                PtrMask::Small(0) => {}
                PtrMask::Small(m) => {
                    if !offset.is_multiple_of(word) || size > 64 * word {
                        return PtrMask::Unknown;
                    }
                    acc |= m << (offset / word);
                }
                _ => return PtrMask::Unknown,
            }
            i += 1;
        }
        PtrMask::Small(acc)
    }
}

/// How a descriptor answers "is a value of this type `Send` and `Sync`?".
///
/// Rust's auto traits are structural, so the answer of a generic type is the answer of
/// its parts; a concrete type knows it at compile time. Recursive types are answered
/// coinductively, as the compiler does.
#[derive(Clone, Copy, Debug)]
pub enum SendSync {
    /// Known when the descriptor was made.
    Known {
        /// `Send`.
        send: bool,
        /// `Sync`.
        sync: bool,
    },
    /// Send and Sync exactly when every component (fields, element, type arguments) is.
    Structural,
    /// A handle: `Send` and `Sync` exactly when its element is both.
    Pointer,
}

/// What the heap does with an object of a type when its count reaches zero (gc-core's
/// `mfree`), one byte read on the freeing path. Derived from the drop glue; `Keep` only
/// for the heap's own markers of dead slots.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtZero {
    /// Its drop only drops handles, or only those and frees memory: freed in the dropping
    /// section.
    Free,
    /// Its drop runs user code: doomed, destroyed outside every section.
    Doom,
    /// Never freed at zero (a dead slot's marker type): left to the collector.
    Keep,
}

impl AtZero {
    pub(crate) const fn of(needs_drop: bool, handles_only_drop: bool, only_frees: bool) -> AtZero {
        if needs_drop && !handles_only_drop && !only_frees {
            AtZero::Doom
        } else {
            AtZero::Free
        }
    }
}

/// A runtime type descriptor. See the module documentation for its invariants.
pub struct Type {
    pub(crate) ident: TypeIdent,
    pub(crate) kind: Kind,
    pub(crate) size: usize,
    pub(crate) align: usize,
    pub(crate) name: Option<&'static str>,
    pub(crate) args: &'static [TypeRef],
    pub(crate) noscan: bool,
    pub(crate) send_sync: SendSync,
    pub(crate) trace: Option<TraceFn>,
    pub(crate) drop: Option<DropFn>,
    pub(crate) needs_drop: bool,
    pub(crate) handles_only_drop: bool,
    pub(crate) at_zero: AtZero,
    pub(crate) ptrmask: PtrMask,
    pub(crate) elem: Option<TypeRef>,
    pub(crate) len: usize,
    pub(crate) fields: &'static [Field],
    pub(crate) variants: &'static [&'static str],
    pub(crate) params: &'static [TypeRef],
    pub(crate) results: &'static [TypeRef],
    pub(crate) variadic: bool,
    pub(crate) methods: &'static [Method],
    pub(crate) implements: &'static [Itab],
}

impl Type {
    /// A descriptor with the given identity, kind, size and alignment, and nothing else:
    /// noscan, no glue, no parts (the one literal every constructor starts from).
    pub(crate) const fn blank(ident: TypeIdent, kind: Kind, size: usize, align: usize) -> Type {
        Type {
            ident,
            kind,
            size,
            align,
            name: None,
            args: &[],
            noscan: true,
            send_sync: SendSync::Structural,
            trace: None,
            drop: None,
            needs_drop: false,
            handles_only_drop: true,
            at_zero: AtZero::Free,
            ptrmask: PtrMask::EMPTY,
            elem: None,
            len: 0,
            fields: &[],
            variants: &[],
            params: &[],
            results: &[],
            variadic: false,
            methods: &[],
            implements: &[],
        }
    }

    /// Sets what dropping a value does: `needs_drop` (there is drop glue at all),
    /// `handles_only_drop` (it only drops handles: a collection may skip it) and
    /// `only_frees` (it runs no code but handle drops and deallocations: the freeing path
    /// may run it in a section), and so `at_zero`, which the freeing path reads instead:
    /// the one place they are set together.
    pub(crate) const fn set_drop_glue(
        &mut self,
        needs_drop: bool,
        handles_only_drop: bool,
        only_frees: bool,
    ) {
        self.needs_drop = needs_drop;
        self.handles_only_drop = handles_only_drop;
        self.at_zero = AtZero::of(needs_drop, handles_only_drop, only_frees);
    }
}

/// Traces a `T` in place.
///
/// # Safety
/// `p` must point to a valid `T`.
unsafe fn trace_thunk<T: crate::Trace>(p: *const u8, t: &mut Tracer) {
    // SAFETY: the caller guarantees `p` points to a valid `T` (the descriptor's contract).
    let v = unsafe { &*p.cast::<T>() };
    v.trace(t);
}

/// Drops a `T` in place.
///
/// # Safety
/// `p` must point to a valid `T` that is not used again.
unsafe fn drop_thunk<T>(p: *mut u8) {
    // SAFETY: the caller guarantees `p` points to a valid `T` it gives up.
    unsafe { core::ptr::drop_in_place(p.cast::<T>()) }
}

impl Type {
    /// The descriptor of `T`.
    #[inline]
    pub fn of<T: crate::Typed>() -> &'static Type {
        T::TYPE
    }

    /// The descriptor of a Rust type `T` of kind `kind`, with its size, alignment,
    /// identity, trace glue (from `T: Trace`), drop glue and pointer mask. The
    /// builder methods below add the rest. For use in `Typed` impls, at compile time.
    ///
    /// # Safety
    /// Everything that reads or writes memory by a descriptor (frames, `Value`, the frame
    /// invoker, the collector) trusts it, so the descriptor this returns, with whatever the
    /// builder methods then set, must describe `T` exactly as [`Typed`](crate::Typed)'s
    /// contract says: `kind` is `T`'s kind and its parts are present exactly as that kind
    /// has them (a pointer kind is a handle with `Gc`'s representation and element
    /// `elem`; an array holds `len` elements of `elem` back to back; a func kind is a
    /// function pointer or a `Func` as its signature says; an interface is `Value` or
    /// `Gc<dyn Trait>`), the identity is `T`'s own unless the descriptor stands for
    /// another type of the same representation, and the implemented interfaces' itabs
    /// are made for `T`.
    pub const unsafe fn rust<T: crate::Trace>(kind: Kind) -> Type {
        let mut t = Type::blank(
            TypeIdent::Rust(TypeId::of::<T>()),
            kind,
            core::mem::size_of::<T>(),
            core::mem::align_of::<T>(),
        );
        t.noscan = T::NO_SCAN;
        if !T::NO_SCAN {
            t.trace = Some(trace_thunk::<T> as TraceFn);
        }
        if core::mem::needs_drop::<T>() {
            t.drop = Some(drop_thunk::<T> as DropFn);
        }
        t.set_drop_glue(
            core::mem::needs_drop::<T>(),
            T::HANDLES_ONLY_DROP,
            T::DROP_ONLY_FREES,
        );
        t.ptrmask = T::PTRMASK;
        t
    }

    #[doc(hidden)]
    /// The descriptor of a `#[gc(untraced)]` field's type: opaque, never traced, named
    /// by its source text, with the Send/Sync answers the derive computed for it.
    ///
    /// # Safety
    /// No value of `T` may hold a handle (it is never traced: a handle there could only
    /// keep its object alive, but `T` is also described as noscan), and `send`/`sync` must
    /// be `T`'s (the derive asks the compiler).
    pub const unsafe fn untraced<T: 'static>(name: &'static str, send: bool, sync: bool) -> Type {
        let mut t = Type::blank(
            TypeIdent::Rust(TypeId::of::<T>()),
            Kind::Opaque,
            core::mem::size_of::<T>(),
            core::mem::align_of::<T>(),
        );
        t.name = Some(name);
        t.send_sync = SendSync::Known { send, sync };
        if core::mem::needs_drop::<T>() {
            t.drop = Some(drop_thunk::<T> as DropFn);
        }
        let no_drop = !core::mem::needs_drop::<T>();
        t.set_drop_glue(!no_drop, no_drop, no_drop);
        t
    }

    // The builder methods are safe: an owned `Type` is only ever made by the `unsafe`
    // constructors above (it is neither `Clone` nor `Default`, and descriptors are handed
    // out as `&'static Type`), whose contract covers what the caller then sets. All but
    // `named` are the derive's glue, hidden from the docs: a hand-written `Typed` impl
    // (for a hand-written `Trace`) names its struct with `rust` and `named`.

    #[doc(hidden)]
    /// Sets the identity (for descriptors that stand for a type other than the Rust type
    /// they were made from, as a variadic signature does).
    pub const fn with_ident(mut self, ident: TypeIdent) -> Type {
        self.ident = ident;
        self
    }
    /// Sets the name: the type becomes a named type.
    pub const fn named(mut self, name: &'static str) -> Type {
        self.name = Some(name);
        self
    }
    #[doc(hidden)]
    /// Sets the type arguments shown after the name (`Option<i32>`).
    pub const fn with_args(mut self, args: &'static [TypeRef]) -> Type {
        self.args = args;
        self
    }
    #[doc(hidden)]
    /// Sets how Send/Sync is answered.
    pub const fn with_send_sync(mut self, s: SendSync) -> Type {
        self.send_sync = s;
        self
    }
    #[doc(hidden)]
    /// Sets the element type (pointer, array, slice).
    pub const fn with_elem(mut self, elem: TypeRef) -> Type {
        self.elem = Some(elem);
        self
    }
    #[doc(hidden)]
    /// Sets the array length.
    pub const fn with_len(mut self, len: usize) -> Type {
        self.len = len;
        self
    }
    #[doc(hidden)]
    /// Sets the fields (struct, tuple).
    pub const fn with_fields(mut self, fields: &'static [Field]) -> Type {
        self.fields = fields;
        self
    }
    #[doc(hidden)]
    /// Sets the variant names (enum).
    pub const fn with_variants(mut self, variants: &'static [&'static str]) -> Type {
        self.variants = variants;
        self
    }
    #[doc(hidden)]
    /// Sets the signature (func).
    pub const fn with_signature(
        mut self,
        params: &'static [TypeRef],
        results: &'static [TypeRef],
        variadic: bool,
    ) -> Type {
        self.params = params;
        self.results = results;
        self.variadic = variadic;
        self
    }
    #[doc(hidden)]
    /// Sets the method set (interface).
    pub const fn with_methods(mut self, methods: &'static [Method]) -> Type {
        self.methods = methods;
        self
    }
    #[doc(hidden)]
    /// Sets the interfaces the type implements.
    pub const fn with_implements(mut self, itabs: &'static [Itab]) -> Type {
        self.implements = itabs;
        self
    }

    /// The kind.
    #[inline]
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The identity: equal identities are the same type.
    #[inline]
    pub fn ident(&self) -> TypeIdent {
        self.ident
    }
    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }
    /// Alignment in bytes.
    #[inline]
    pub fn align(&self) -> usize {
        self.align
    }
    /// The name of a named type (`demo::File`, `i32`), `None` for unnamed types
    /// (`Gc<T>`, arrays, tuples, signatures).
    #[inline]
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }
    /// Is this a named type?
    #[inline]
    pub fn is_named(&self) -> bool {
        self.name.is_some()
    }
    /// Type arguments of a generic named type.
    pub fn type_args(&self) -> impl ExactSizeIterator<Item = &'static Type> + '_ {
        self.args.iter().map(|r| r.get())
    }
    /// True if no value of this type holds a handle (Go's noscan): such objects go to
    /// noscan spans and are never scanned.
    #[inline]
    pub fn is_noscan(&self) -> bool {
        self.noscan
    }
    /// The pointer mask (`Unknown` where the layout does not allow one).
    #[inline]
    pub fn ptrmask(&self) -> PtrMask {
        self.ptrmask
    }
    /// Does dropping a value run code?
    #[inline]
    pub fn needs_drop(&self) -> bool {
        self.needs_drop
    }
    /// Does dropping a value do nothing but drop handles? (The sweeper skips such
    /// destructors.)
    #[inline]
    pub fn handles_only_drop(&self) -> bool {
        self.handles_only_drop
    }
    /// What the heap does with an object of this type when its count reaches zero.
    #[doc(hidden)]
    #[inline]
    pub fn at_zero(&self) -> AtZero {
        self.at_zero
    }
    /// Does dropping a value do more than drop handles (it frees memory, or runs user
    /// code), so that garbage of this type cannot just be discarded: a collection drops
    /// it in its release step (`at_zero` is `Free`: the drop only frees) or destroys it
    /// after the world resumes (`Doom`).
    #[doc(hidden)]
    #[inline]
    pub fn drops_more_than_handles(&self) -> bool {
        self.needs_drop && !self.handles_only_drop
    }
    /// Marks a descriptor as never freed at count zero (the heap's markers of dead slots;
    /// safe: such objects are left to the collector).
    #[doc(hidden)]
    pub const fn kept_at_zero(mut self) -> Type {
        self.at_zero = AtZero::Keep;
        self
    }
    /// Element type of a pointer, array or slice.
    pub fn elem(&self) -> Option<&'static Type> {
        self.elem.map(TypeRef::get)
    }
    /// Length of an array.
    pub fn array_len(&self) -> Option<usize> {
        (self.kind == Kind::Array).then_some(self.len)
    }
    /// Fields of a struct or tuple.
    pub fn fields(&self) -> &'static [Field] {
        self.fields
    }
    /// Variant names of an enum.
    pub fn variants(&self) -> &'static [&'static str] {
        self.variants
    }
    /// Parameter types of a func.
    pub fn params(&self) -> impl ExactSizeIterator<Item = &'static Type> + '_ {
        self.params.iter().map(|r| r.get())
    }
    /// Result types of a func.
    pub fn results(&self) -> impl ExactSizeIterator<Item = &'static Type> + '_ {
        self.results.iter().map(|r| r.get())
    }
    /// Is a func variadic (its last parameter a `Vec<T>` shown as `...T`)?
    pub fn is_variadic(&self) -> bool {
        self.variadic
    }
    /// Method set of an interface (empty for `Value`).
    pub fn methods(&self) -> &'static [Method] {
        self.methods
    }
    /// Interfaces this named type implements.
    pub fn implements(&self) -> &'static [Itab] {
        self.implements
    }
    /// Is this a type built at run time?
    pub fn is_built(&self) -> bool {
        matches!(self.ident, TypeIdent::Runtime(_))
    }

    /// Do all-zero bytes make a valid value of this type, as Go's zero value (what an
    /// object allocated by `Heap::alloc_zeroed` holds)? True of `bool`, `char`, integers
    /// and floats; of arrays of such; and of structs built at run time whose fields are
    /// such, or pointers (nil in a built object: the collector, the drop glue and
    /// `reflect::field` of built types step over a null handle). Not of Rust structs and
    /// enums (their invariants are their constructors'), `Value`, funcs or interfaces.
    pub fn has_zero_value(&self) -> bool {
        self.zeroless_part().is_none()
    }

    /// The first part of this type without a zero value (the type itself, if it is not
    /// an aggregate), or `None` if it has one (`has_zero_value`): what an error names.
    pub fn zeroless_part(&self) -> Option<&Type> {
        self.zeroless_in(false)
    }

    /// `zeroless_part`, for a part of a built type when `in_built`: a pointer may be nil
    /// there.
    fn zeroless_in(&self, in_built: bool) -> Option<&Type> {
        let ok = match self.kind {
            Kind::Bool
            | Kind::Char
            | Kind::I8
            | Kind::I16
            | Kind::I32
            | Kind::I64
            | Kind::I128
            | Kind::Isize
            | Kind::U8
            | Kind::U16
            | Kind::U32
            | Kind::U64
            | Kind::U128
            | Kind::Usize
            | Kind::F32
            | Kind::F64 => true,
            Kind::Pointer => in_built,
            Kind::Array if self.len == 0 => true,
            Kind::Array => {
                return match self.elem() {
                    Some(e) => e.zeroless_in(self.is_built()),
                    None => Some(self),
                }
            }
            Kind::Struct if self.is_built() => {
                return self
                    .fields
                    .iter()
                    .find_map(|f| f.ty.get().zeroless_in(true))
            }
            _ => false,
        };
        (!ok).then_some(self)
    }

    /// Is the value at `p`, a part of a built type, a nil pointer (which has no handle to
    /// trace or drop)?
    ///
    /// # Safety
    /// `p` points to a readable value of this type.
    unsafe fn is_nil_part(&self, p: *const u8) -> bool {
        // SAFETY: a pointer kind is one handle word (`Type::rust`'s contract), readable.
        self.kind == Kind::Pointer && unsafe { p.cast::<usize>().read() } == 0
    }

    /// Is a value of this type `Send` and `Sync`? (Row 11 of `set_finalizer`.)
    pub fn is_send_sync(&self) -> bool {
        let (s, y) = self.send_sync_in(&mut Vec::new());
        s && y
    }

    fn send_sync_in(&self, visiting: &mut Vec<*const Type>) -> (bool, bool) {
        let me = self as *const Type;
        if visiting.contains(&me) {
            // Coinductive, like the compiler's auto-trait solver: a cycle proves nothing
            // false.
            return (true, true);
        }
        visiting.push(me);
        let r = match self.send_sync {
            SendSync::Known { send, sync } => (send, sync),
            SendSync::Pointer => {
                let both = self.elem().is_none_or(|e| {
                    let (s, y) = e.send_sync_in(visiting);
                    s && y
                });
                (both, both)
            }
            SendSync::Structural => {
                let mut acc = (true, true);
                let parts = self
                    .fields
                    .iter()
                    .map(|f| f.ty)
                    .chain(self.elem)
                    .chain(self.args.iter().copied());
                for part in parts {
                    let (s, y) = part.get().send_sync_in(visiting);
                    acc = (acc.0 && s, acc.1 && y);
                }
                acc
            }
        };
        visiting.pop();
        r
    }

    /// Reports the handles of the value at `p` to `tracer`, by trace function, pointer
    /// mask or fields, whichever the descriptor has. Does nothing for noscan types.
    ///
    /// # Safety
    /// `p` must point to a valid value of this type, not mutated during the call.
    pub unsafe fn trace_value(&self, p: *const u8, tracer: &mut Tracer) {
        if self.noscan {
            return;
        }
        if let Some(f) = self.trace {
            // SAFETY: the caller guarantees `p` points to a valid value of this type, which
            // is what the descriptor's trace function requires.
            unsafe { f(p, tracer) };
            return;
        }
        if !self.ptrmask.is_known() && self.kind == Kind::Array {
            // A built array: element by element, by stride (O(1) descriptor).
            if let Some(elem) = self.elem() {
                for i in 0..self.len {
                    let e = p.wrapping_add(i * elem.size);
                    // SAFETY: element `i` lies at `i * elem.size` inside the array, a valid
                    // value of the element type (or a nil pointer, stepped over).
                    if !unsafe { elem.is_nil_part(e) } {
                        // SAFETY: as above.
                        unsafe { elem.trace_value(e, tracer) };
                    }
                }
            }
            return;
        }
        if self.ptrmask.is_known() {
            let words = self.size / core::mem::size_of::<usize>();
            for i in 0..words {
                if self.ptrmask.word(i) == Some(true) {
                    // SAFETY: word `i` lies inside the value (i < size / word) and the mask
                    // invariant says it holds an object reference or null.
                    let w = unsafe { p.cast::<*const u8>().wrapping_add(i).read() };
                    // SAFETY: a mask word holds null or a handle word (the mask invariant),
                    // whose object, if any, is a heap object's address.
                    if let Some(obj) = unsafe { crate::word::object_of(w) } {
                        // SAFETY: as above.
                        unsafe { tracer.edge(obj) };
                    }
                }
            }
            return;
        }
        for f in self.fields.iter().filter(|f| !f.untraced) {
            // SAFETY: built structs lay out their fields at `offset` inside the value.
            let fp = unsafe { p.add(f.offset) };
            let ty = f.ty.get();
            // SAFETY: `fp` points to a valid value of the field's type (or a nil pointer,
            // stepped over).
            if !unsafe { ty.is_nil_part(fp) } {
                // SAFETY: as above.
                unsafe { ty.trace_value(fp, tracer) };
            }
        }
    }

    /// Drops the value at `p` in place.
    ///
    /// # Safety
    /// `p` must point to a valid value of this type that is not used again.
    pub unsafe fn drop_value(&self, p: *mut u8) {
        if let Some(d) = self.drop {
            // SAFETY: the caller gives up a valid value of this type, as `d` requires.
            unsafe { d(p) };
        } else if self.needs_drop && self.kind == Kind::Array {
            // A built array: element by element, by stride.
            if let Some(elem) = self.elem() {
                for i in 0..self.len {
                    let e = p.wrapping_add(i * elem.size);
                    // SAFETY: element `i` lies at `i * elem.size`; each is given up once (a
                    // nil pointer has nothing to drop).
                    if !unsafe { elem.is_nil_part(e) } {
                        // SAFETY: as above.
                        unsafe { elem.drop_value(e) };
                    }
                }
            }
        } else if self.needs_drop {
            // A built struct: drop glue is its fields' drop glue.
            for f in self.fields {
                // SAFETY: built structs lay out their fields at `offset`.
                let fp = unsafe { p.add(f.offset) };
                let ty = f.ty.get();
                // SAFETY: the field is a valid value the caller gives up with its owner (a
                // nil pointer has nothing to drop).
                if !unsafe { ty.is_nil_part(fp) } {
                    // SAFETY: as above.
                    unsafe { ty.drop_value(fp) };
                }
            }
        }
    }
}

impl fmt::Debug for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Type({} {}, size {}, align {})",
            self.kind, self, self.size, self.align
        )
    }
}

/// The type string used in every message: `Gc<demo::File>`, `i32`,
/// `fn(Gc<demo::File>) -> [u8; 32]`, `dyn demo::Closer`, `Value`.
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, items: &[TypeRef]) -> fmt::Result {
            for (i, t) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}", t.get())?;
            }
            Ok(())
        }
        match (self.kind, self.name) {
            (Kind::Interface, Some(n)) => write!(f, "dyn {n}"),
            (Kind::Interface, None) => f.write_str("Value"),
            (_, Some(n)) => {
                f.write_str(n)?;
                if !self.args.is_empty() {
                    f.write_str("<")?;
                    list(f, self.args)?;
                    f.write_str(">")?;
                }
                Ok(())
            }
            (Kind::Pointer, None) => match self.elem {
                Some(e) => write!(f, "Gc<{}>", e.get()),
                None => f.write_str("Gc<?>"),
            },
            (Kind::Array, None) => match self.elem {
                Some(e) => write!(f, "[{}; {}]", e.get(), self.len),
                None => f.write_str("[?]"),
            },
            (Kind::Slice, None) => match self.elem {
                Some(e) => write!(f, "[{}]", e.get()),
                None => f.write_str("[?]"),
            },
            (Kind::Tuple, None) => {
                f.write_str("(")?;
                for (i, fl) in self.fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", fl.ty.get())?;
                }
                if self.fields.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
            (Kind::Func, None) => {
                f.write_str("fn(")?;
                for (i, p) in self.params.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    let p = p.get();
                    if self.variadic && i + 1 == self.params.len() {
                        match p.elem() {
                            Some(e) => write!(f, "...{e}")?,
                            None => write!(f, "...{p}")?,
                        }
                    } else {
                        write!(f, "{p}")?;
                    }
                }
                f.write_str(")")?;
                match self.results.len() {
                    0 => Ok(()),
                    1 => write!(f, " -> {}", self.results[0].get()),
                    _ => {
                        f.write_str(" -> (")?;
                        list(f, self.results)?;
                        f.write_str(")")
                    }
                }
            }
            (Kind::Invalid, None) => f.write_str("nil"),
            (k, None) => write!(f, "<unnamed {k}>"),
        }
    }
}
