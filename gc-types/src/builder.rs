//! `TypeBuilder`: descriptors made at run time, for interpreters whose types exist only
//! while they run.
//!
//! What it builds:
//! - structs in C layout (each field at its offset aligned up to its alignment, the size
//!   rounded up to the largest alignment), traced by pointer mask when every field's mask
//!   is known, else field by field; dropped field by field;
//! - pointer types, sharing the representation (size, drop and trace glue) of a Rust
//!   handle type such as `Gc<()>`: every handle has the same representation whatever it
//!   points to;
//! - arrays, func signatures, and interfaces (a method set, for an interpreter's own
//!   interface types).
//!
//! A built type lives for the rest of the process (it is leaked, as Go's types are).
//! Unnamed types are interned, as Go's `reflect.PointerTo`, `ArrayOf`, `FuncOf` and
//! `StructOf` cache theirs: building a pointer, array, func or struct type again from the
//! same parts (the same component descriptors, by address; the same field names,
//! length, variadic flag) gives the same `&'static Type`, so an interpreter that builds its types
//! per call does not leak, and the results compare identical by identity. A named type,
//! a struct that declares interfaces and every interface type get a fresh identity each
//! time (Go's named types are distinct).
//!
//! The intern table is a `DashMap` (sharded locks): interpreter threads that build types
//! at once contend only when their keys share a shard, where one lock would serialise
//! every build. A hit costs a hash of the parts and a shard's read lock.

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use dashmap::DashMap;

use crate::kind::Kind;
use crate::ty::{AtZero, Field, Itab, Method, PtrMask, SendSync, Type, TypeIdent, TypeRef};

static NEXT_IDENT: AtomicU64 = AtomicU64::new(1);

const WORD: usize = core::mem::size_of::<usize>();

fn fresh(kind: Kind, size: usize, align: usize) -> Type {
    let ident = TypeIdent::Runtime(NEXT_IDENT.fetch_add(1, Ordering::Relaxed));
    Type::blank(ident, kind, size, align)
}

/// What an unnamed built type is made of: its intern key. Component descriptors are
/// named by address, not by `TypeIdent`: descriptors that share an identity may differ
/// (an untraced field's opaque descriptor shares its Rust type's `TypeId`), and a built
/// type must be made of exactly the descriptors it was given. (A Rust type whose
/// descriptor the compiler emitted twice is then two keys: two equal built types, never a
/// wrong one.)
#[derive(PartialEq, Eq, Hash)]
enum Key {
    Pointer {
        repr: usize,
        elem: usize,
    },
    Array {
        elem: usize,
        len: usize,
    },
    Func {
        params: Box<[usize]>,
        results: Box<[usize]>,
        variadic: bool,
    },
    Struct {
        fields: Box<[(Box<str>, usize)]>,
    },
}

/// A descriptor's address: its part of an intern key.
fn addr(t: &'static Type) -> usize {
    t as *const Type as usize
}

/// The built type for `key`, made by `make` (and leaked) the first time.
fn intern(key: Key, make: impl FnOnce() -> Type) -> &'static Type {
    static TABLE: OnceLock<DashMap<Key, &'static Type>> = OnceLock::new();
    let table = TABLE.get_or_init(DashMap::new);
    if let Some(t) = table.get(&key) {
        return *t;
    }
    *table
        .entry(key)
        .or_insert_with(|| Box::leak(Box::new(make())))
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Vec::leak(v)
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// Builds type descriptors at run time. See the module documentation.
#[derive(Debug)]
pub struct TypeBuilder;

impl TypeBuilder {
    /// Starts a struct type; `name` makes it a named type.
    pub fn structure(name: Option<&str>) -> StructBuilder {
        StructBuilder {
            name: name.map(str::to_owned),
            fields: Vec::new(),
            implements: Vec::new(),
        }
    }

    /// A pointer type to `elem` with the representation of `repr`, a Rust handle type
    /// (`Type::of::<Gc<()>>()`). Named if `name` is given (Go's `type P *T`); an unnamed
    /// one is interned (see the module docs).
    ///
    /// # Panics
    /// If `repr` is not a plain Rust handle type: an unnamed Rust type of pointer kind, one
    /// word, whose drop only drops the handle (a named `#[gc(pointer)]` newtype may have a
    /// destructor of its own, which would then run on objects of other types).
    pub fn pointer(repr: &'static Type, name: Option<&str>, elem: &'static Type) -> &'static Type {
        assert!(
            repr.kind() == Kind::Pointer
                && !repr.is_built()
                && !repr.is_named()
                && repr.size == WORD
                && repr.align == WORD
                && repr.handles_only_drop
                && repr.ptrmask == PtrMask::Small(1),
            "fing::TypeBuilder::pointer: {repr} is not a plain Rust handle type (Gc<T>)"
        );
        let make = || {
            let mut t = fresh(Kind::Pointer, repr.size, repr.align);
            t.name = name.map(leak_str);
            t.noscan = repr.noscan;
            t.trace = repr.trace;
            t.drop = repr.drop;
            t.set_drop_glue(
                repr.needs_drop,
                repr.handles_only_drop,
                repr.at_zero == AtZero::Free,
            );
            t.ptrmask = repr.ptrmask;
            t.send_sync = SendSync::Pointer;
            t.elem = Some(TypeRef::Static(elem));
            t
        };
        match name {
            Some(_) => Box::leak(Box::new(make())),
            None => intern(
                Key::Pointer {
                    repr: addr(repr),
                    elem: addr(elem),
                },
                make,
            ),
        }
    }

    /// An array type `[elem; len]`: element and length only, whatever the length (traced
    /// by mask when that fits in 64 words, else element by element, and dropped element by
    /// element, by stride). Interned.
    ///
    /// # Panics
    /// If the array's size overflows `isize`.
    pub fn array(elem: &'static Type, len: usize) -> &'static Type {
        let size = elem
            .size
            .checked_mul(len)
            .filter(|&s| s <= isize::MAX as usize)
            .unwrap_or_else(|| {
                panic!("fing::TypeBuilder::array: [{elem}; {len}] is larger than isize::MAX bytes")
            });
        let make = || {
            let mut t = fresh(Kind::Array, size, elem.align);
            t.elem = Some(TypeRef::Static(elem));
            t.len = len;
            t.noscan = len == 0 || elem.noscan;
            t.set_drop_glue(
                len > 0 && elem.needs_drop,
                len == 0 || elem.handles_only_drop,
                len == 0 || elem.at_zero == AtZero::Free,
            );
            t.send_sync = SendSync::Structural;
            t.ptrmask = if t.noscan {
                PtrMask::EMPTY
            } else {
                repeat_mask(elem, len)
            };
            t
        };
        intern(
            Key::Array {
                elem: addr(elem),
                len,
            },
            make,
        )
    }

    /// A func type (signature). A variadic signature's last parameter must be a slice
    /// type (it is shown as `...T`). Interned.
    ///
    /// # Panics
    /// If `variadic` is set and the last parameter is not of slice kind.
    pub fn func(
        params: &[&'static Type],
        results: &[&'static Type],
        variadic: bool,
    ) -> &'static Type {
        if variadic {
            assert!(
                params.last().is_some_and(|p| p.kind() == Kind::Slice),
                "fing::TypeBuilder::func: a variadic signature ends with a slice parameter"
            );
        }
        let make = || {
            let mut t = fresh(Kind::Func, WORD, WORD);
            t.params = leak(params.iter().map(|p| TypeRef::Static(p)).collect());
            t.results = leak(results.iter().map(|r| TypeRef::Static(r)).collect());
            t.variadic = variadic;
            t.send_sync = SendSync::Known {
                send: true,
                sync: true,
            };
            t
        };
        let ids = |ts: &[&'static Type]| ts.iter().map(|&t| addr(t)).collect();
        intern(
            Key::Func {
                params: ids(params),
                results: ids(results),
                variadic,
            },
            make,
        )
    }

    /// An interface type with the given method names (the empty set is `Value`'s, but a
    /// built interface is a distinct, named type).
    pub fn interface(name: &str, methods: &[&str]) -> &'static Type {
        let mut t = fresh(Kind::Interface, 3 * WORD, WORD);
        t.name = Some(leak_str(name));
        t.methods = leak(
            methods
                .iter()
                .map(|m| Method { name: leak_str(m) })
                .collect(),
        );
        t.send_sync = SendSync::Known {
            send: true,
            sync: true,
        };
        Box::leak(Box::new(t))
    }
}

/// The mask of `len` elements of `elem`, when it fits in one word of bits (64 words of
/// value); else unknown, and the array is traced element by element.
fn repeat_mask(elem: &Type, len: usize) -> PtrMask {
    let ew = elem.size / WORD;
    if !elem.size.is_multiple_of(WORD) || !elem.ptrmask.is_known() || ew * len > 64 {
        return PtrMask::Unknown;
    }
    let mut bits = 0u64;
    for i in 0..len {
        for w in 0..ew {
            if elem.ptrmask.word(w) == Some(true) {
                bits |= 1 << (i * ew + w);
            }
        }
    }
    PtrMask::Small(bits)
}

/// Builds a struct type field by field. See [`TypeBuilder::structure`].
#[derive(Debug)]
pub struct StructBuilder {
    name: Option<String>,
    fields: Vec<(String, &'static Type)>,
    implements: Vec<Itab>,
}

impl StructBuilder {
    /// Adds a field.
    pub fn field(mut self, name: &str, ty: &'static Type) -> StructBuilder {
        self.fields.push((name.to_owned(), ty));
        self
    }

    /// Declares that the type implements an interface (an interface the interpreter
    /// built: it has no Rust trait object, so `cast` is the interpreter's own).
    ///
    /// # Safety
    /// `itab` must be valid for values of this struct type, as [`Itab::new`] says: itabs
    /// are `Copy`, and one made for another type (a derived type's, read from its
    /// descriptor) would write an interface handle of that type over this one's values.
    pub unsafe fn implements(mut self, itab: Itab) -> StructBuilder {
        self.implements.push(itab);
        self
    }

    /// Lays the struct out and makes the descriptor. An unnamed struct that declares no
    /// interface is interned (see the module docs).
    pub fn build(self) -> &'static Type {
        if self.name.is_some() || !self.implements.is_empty() {
            return Box::leak(Box::new(self.make()));
        }
        let key = Key::Struct {
            fields: self
                .fields
                .iter()
                .map(|(n, t)| (n.as_str().into(), addr(t)))
                .collect(),
        };
        intern(key, || self.make())
    }

    fn make(self) -> Type {
        let mut off = 0usize;
        let mut align = 1usize;
        let mut fields = Vec::with_capacity(self.fields.len());
        for (name, ty) in &self.fields {
            off = off.next_multiple_of(ty.align);
            fields.push(Field {
                name: leak_str(name),
                offset: off,
                ty: TypeRef::Static(ty),
                untraced: false,
            });
            off = off
                .checked_add(ty.size)
                .expect("fing::StructBuilder::build: size overflows");
            align = align.max(ty.align);
        }
        let size = off.next_multiple_of(align);
        let mut t = fresh(Kind::Struct, size, align);
        t.name = self.name.as_deref().map(leak_str);
        t.noscan = self.fields.iter().all(|(_, f)| f.noscan);
        t.set_drop_glue(
            self.fields.iter().any(|(_, f)| f.needs_drop),
            self.fields.iter().all(|(_, f)| f.handles_only_drop),
            self.fields.iter().all(|(_, f)| f.at_zero == AtZero::Free),
        );
        t.ptrmask = if t.noscan {
            PtrMask::EMPTY
        } else {
            struct_mask(&fields, size)
        };
        t.fields = leak(fields);
        t.implements = leak(self.implements);
        t
    }
}

fn struct_mask(fields: &[Field], size: usize) -> PtrMask {
    let mut bits = vec![0u64; (size / WORD).div_ceil(64).max(1)];
    for f in fields {
        let ty = f.ty.get();
        if ty.noscan {
            continue;
        }
        if !f.offset.is_multiple_of(WORD) || !ty.ptrmask.is_known() {
            return PtrMask::Unknown;
        }
        for w in 0..ty.size / WORD {
            if ty.ptrmask.word(w) == Some(true) {
                let at = f.offset / WORD + w;
                bits[at / 64] |= 1 << (at % 64);
            }
        }
    }
    PtrMask::Words(leak(bits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Trace, Tracer};
    use crate::Typed;

    /// A stand-in for gc-core's handle: one handle word.
    #[repr(transparent)]
    struct Ptr(*const u8);
    // SAFETY: kind pointer to (), the compiler's layout.
    unsafe impl Typed for Ptr {
        // SAFETY: the impl's own argument: this descriptor describes the type exactly.
        const TYPE: &'static Type = &unsafe { Type::rust::<Ptr>(Kind::Pointer) }
            .with_elem(TypeRef::of::<()>())
            .with_send_sync(SendSync::Pointer);
    }
    // SAFETY: reports its word's object, as the mask says; drops nothing.
    unsafe impl Trace for Ptr {
        const NO_SCAN: bool = false;
        const PTRMASK: PtrMask = PtrMask::Small(1);
        const HANDLES_ONLY_DROP: bool = true;
        fn trace(&self, t: &mut Tracer) {
            // SAFETY: test handle words are made as `crate::word` defines them.
            if let Some(o) = unsafe { crate::word::object_of(self.0) } {
                // SAFETY: test objects are plain addresses; the tracer only records them.
                unsafe { t.edge(o) };
            }
        }
    }

    #[test]
    fn structs_get_c_layout() {
        let t = TypeBuilder::structure(Some("interp.Node"))
            .field("tag", u8::TYPE)
            .field("value", i64::TYPE)
            .field("flag", u16::TYPE)
            .build();
        let offs: Vec<usize> = t.fields().iter().map(|f| f.offset).collect();
        assert_eq!(offs, vec![0, 8, 16]);
        assert_eq!((t.size(), t.align()), (24, 8));
        assert_eq!(t.to_string(), "interp.Node");
        assert!(t.is_noscan());
        assert!(t.is_send_sync());
        assert!(t.is_built());
    }

    #[test]
    fn built_structs_are_traced_by_mask() {
        let p = TypeBuilder::pointer(Ptr::TYPE, None, i64::TYPE);
        let t = TypeBuilder::structure(None)
            .field("n", i64::TYPE)
            .field("next", p)
            .field("other", p)
            .build();
        assert!(!t.is_noscan());
        assert_eq!(t.ptrmask().word(0), Some(false));
        assert_eq!(t.ptrmask().word(1), Some(true));
        assert_eq!(t.ptrmask().word(2), Some(true));
        let mut obj = [0usize; 3];
        obj[0] = 0x2000; // `n`: not a handle
                         // A near handle word: address 0x1010, 16 bytes past its object's header.
        obj[1] = 0x1010 | 16 << crate::word::TAG_SHIFT;
        obj[2] = 0; // null: not an edge
        let mut tracer = Tracer::new();
        // SAFETY: `obj` has the built type's size and layout (three words).
        unsafe { t.trace_value(obj.as_ptr().cast(), &mut tracer) };
        assert_eq!(
            tracer
                .edges()
                .iter()
                .map(|e| e.as_ptr() as usize)
                .collect::<Vec<_>>(),
            vec![0x1000]
        );
    }

    /// A nil pointer (a zero word) in a built aggregate is stepped over by part-by-part
    /// tracing (past a 64-word mask) and dropping; the zero value exists for built
    /// aggregates of numbers and pointers only.
    #[test]
    fn nil_pointers_in_built_aggregates_are_stepped_over() {
        let p = TypeBuilder::pointer(Ptr::TYPE, None, i64::TYPE);
        let arr = TypeBuilder::array(p, 100);
        assert!(!arr.ptrmask().is_known(), "traced element by element");
        let t = TypeBuilder::structure(None)
            .field("n", i64::TYPE)
            .field("ptrs", arr)
            .build();
        assert!(t.has_zero_value() && arr.has_zero_value());
        assert!(!p.has_zero_value(), "a pointer alone has none");
        assert!(
            !<[Ptr; 2]>::TYPE.has_zero_value(),
            "nor a Rust array of them"
        );
        assert!(!Vec::<u8>::TYPE.has_zero_value());
        let mut obj = [0usize; 101];
        // Element 7 holds a near handle word; every other is nil.
        obj[1 + 7] = 0x1010 | 16 << crate::word::TAG_SHIFT;
        let mut tracer = Tracer::new();
        // SAFETY: `obj` has the built type's size and layout (101 words).
        unsafe { t.trace_value(obj.as_ptr().cast(), &mut tracer) };
        let edges: Vec<usize> = tracer.edges().iter().map(|e| e.as_ptr() as usize).collect();
        assert_eq!(edges, vec![0x1000]);
        // SAFETY: as above; `Ptr` drops nothing, and the nil words are stepped over.
        unsafe { t.drop_value(obj.as_mut_ptr().cast()) };
        // A built array is identical to no Rust array.
        assert!(!crate::rules::identical(
            TypeBuilder::array(i64::TYPE, 2),
            <[i64; 2]>::TYPE
        ));
    }

    #[test]
    fn built_structs_drop_their_fields() {
        let t = TypeBuilder::structure(None)
            .field("v", Vec::<u8>::TYPE)
            .build();
        assert!(t.is_noscan());
        assert!(t.needs_drop());
        let mut v = core::mem::ManuallyDrop::new(vec![1u8, 2, 3]);
        // SAFETY: the struct is exactly one Vec<u8> at offset 0; ownership passes to the
        // drop (the ManuallyDrop is not used again).
        unsafe { t.drop_value((&mut *v as *mut Vec<u8>).cast()) };
    }

    #[test]
    fn arrays_and_signatures() {
        let p = TypeBuilder::pointer(Ptr::TYPE, None, i64::TYPE);
        let a = TypeBuilder::array(p, 3);
        assert_eq!(a.size(), 24);
        assert_eq!(a.to_string(), "[Gc<i64>; 3]");
        assert_eq!(
            (0..4)
                .map(|i| a.ptrmask().word(i).unwrap())
                .collect::<Vec<_>>(),
            vec![true, true, true, false]
        );
        assert!(a.fields().is_empty(), "element and length only");
        let big = TypeBuilder::array(p, 1000);
        assert!(!big.ptrmask().is_known(), "traced by stride");
        let f = TypeBuilder::func(&[Vec::<crate::Value>::TYPE], &[i32::TYPE, bool::TYPE], true);
        assert_eq!(f.to_string(), "fn(...Value) -> (i32, bool)");
    }

    #[test]
    #[should_panic(expected = "fing::TypeBuilder::pointer: i64 is not a plain Rust handle type")]
    fn pointer_needs_a_handle_representation() {
        TypeBuilder::pointer(i64::TYPE, None, i64::TYPE);
    }
}
