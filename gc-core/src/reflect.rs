//! Objects of types built at run time (Go's `reflect.New`, `Value.Field`, `Value.Set`):
//! [`Heap::alloc_zeroed`] allocates a zeroed object of a struct or array type made with
//! `TypeBuilder` and returns it as a [`Value`] of the built pointer type; [`field`] reads
//! a field (or an element) out as a `Value`, [`set_field`] writes one with Go's
//! assignability. This is how an interpreter keeps its own records in the heap: traced by
//! the type's pointer mask (or field by field), freed at count zero, usable as the object
//! of `set_finalizer` with a finalizer whose parameter is the built pointer type.
//!
//! Invariants:
//! - only built structs and arrays whose zero value is valid are allocated
//!   (`Type::has_zero_value`): numbers, `bool`, `char`, pointers (nil) and built
//!   aggregates of them. A nil pointer is a zero word, which every reader of built types
//!   steps over (the mask, `trace_value`, `drop_value`, `field`).
//! - a built object has no Rust type, so no `&T` into it exists: its fields change only
//!   here. A write holds the object's stripe lock (one of 64 mutexes by address) and a
//!   mutator section (the collector reads objects with the world stopped, never during a
//!   write), as a `GcCell` write does; a read holds the stripe lock, so it never sees half
//!   a write, and needs no section (it only raises counts of objects the object reaches,
//!   which the caller's handle keeps alive).
//! - a field is read by copying its bytes and counting each handle in them once more
//!   (its mask says where they are), so only fields whose drop glue drops handles alone
//!   and whose mask is known can be read; that is every field a zeroable type has, but
//!   for built aggregates of more than 64 words.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use std::sync::Mutex;

use gc_types::rules::{assignable_pointer, identical};
use gc_types::{Kind, PtrMask, Type, TypeBuilder, Typed, Value};

use crate::handle::Gc;
use crate::heap::Heap;

/// Why a reflective allocation or field access was refused. Every message names the
/// types involved and starts with the API's name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReflectError {
    /// `alloc_zeroed` of a type that is not a built struct or array with a valid zero
    /// value (it names the type and the part without one).
    NoZeroValue {
        /// The type asked for.
        ty: String,
        /// Its first part without a zero value (the type itself if it is not built).
        part: String,
    },
    /// The heap refused the memory (its limit, or the OS).
    Alloc(String),
    /// The object is not a pointer to a built struct or array.
    NotBuiltObject {
        /// The API called.
        api: &'static str,
        /// The object's type.
        ty: String,
    },
    /// No field (or element) with this index.
    NoField {
        /// The API called.
        api: &'static str,
        /// The struct or array type.
        ty: String,
        /// The index asked for.
        index: usize,
        /// How many fields (or elements) there are.
        len: usize,
    },
    /// The value cannot be assigned to the field (Go's assignability: identical types, or
    /// pointer types with identical elements, one of them unnamed; nil to a pointer).
    NotAssignable {
        /// The value's type.
        value: String,
        /// The field's name (or element index).
        field: String,
        /// The field's type.
        field_ty: String,
        /// The struct or array type.
        ty: String,
    },
    /// The field's type cannot be read out by value (a built aggregate of more than 64
    /// words, whose handles the mask cannot list).
    NotReadable {
        /// The field's name (or element index).
        field: String,
        /// The field's type.
        field_ty: String,
    },
}

impl fmt::Display for ReflectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReflectError::NoZeroValue { ty, part } if ty == part => write!(
                f,
                "fing::Heap::alloc_zeroed: {ty} has no zero value (only structs and arrays built with TypeBuilder, of numbers, bool, char and pointers, do)"
            ),
            ReflectError::NoZeroValue { ty, part } => write!(
                f,
                "fing::Heap::alloc_zeroed: {ty} has no zero value: its part {part} has none (numbers, bool, char, pointers and built structs and arrays of them do)"
            ),
            ReflectError::Alloc(why) => write!(f, "fing::Heap::alloc_zeroed: {why}"),
            ReflectError::NotBuiltObject { api, ty } => write!(
                f,
                "{api}: {ty} is not a pointer to a struct or array built with TypeBuilder"
            ),
            ReflectError::NoField {
                api,
                ty,
                index,
                len,
            } => write!(f, "{api}: {ty} has no field {index} (it has {len})"),
            ReflectError::NotAssignable {
                value,
                field,
                field_ty,
                ty,
            } => write!(
                f,
                "fing::reflect::set_field: cannot assign {value} to field {field} ({field_ty}) of {ty}"
            ),
            ReflectError::NotReadable { field, field_ty } => write!(
                f,
                "fing::reflect::field: field {field} ({field_ty}) is too large to read by value"
            ),
        }
    }
}

impl std::error::Error for ReflectError {}

impl Heap {
    /// Allocates a zeroed object of `ty`, a struct or array type built with
    /// [`TypeBuilder`] (Go's `reflect.New`), and returns a [`Value`] of the unnamed built
    /// pointer type to it (`TypeBuilder::pointer(Gc::<()>::TYPE, None, ty)`, interned: the
    /// same descriptor a finalizer's signature names). Its fields start at Go's zero value
    /// (0, false, nil); read and write them with [`field`] and [`set_field`].
    ///
    /// The object is traced by `ty`'s pointer mask (field by field past 64 words), freed at
    /// count zero or by a collection like any other, and counted in `MemStats` and against
    /// `HeapConfig::max_heap`.
    ///
    /// ```
    /// # use gc_core as fing;
    /// use fing::{field, set_field, Gc, Heap, HeapConfig, TypeBuilder, Typed, Value};
    /// let node = TypeBuilder::structure(Some("script.Node")).field("value", i64::TYPE).build();
    /// let next = TypeBuilder::pointer(<Gc<()>>::TYPE, None, node);
    /// // A struct that points to its own kind: build it again with the pointer field.
    /// let list = TypeBuilder::structure(Some("script.List"))
    ///     .field("value", i64::TYPE)
    ///     .field("next", next)
    ///     .build();
    /// let h = Heap::new(HeapConfig::default());
    /// let obj = h.alloc_zeroed(list).unwrap();
    /// assert_eq!(field(&obj, 0).unwrap().downcast::<i64>().ok(), Some(0));
    /// assert!(field(&obj, 1).unwrap().is_nil());
    /// set_field(&obj, 0, Value::from(42i64)).unwrap();
    /// assert_eq!(field(&obj, 0).unwrap().downcast::<i64>().ok(), Some(42));
    /// ```
    pub fn alloc_zeroed(&self, ty: &'static Type) -> Result<Value, ReflectError> {
        if !ty.is_built() || !matches!(ty.kind(), Kind::Struct | Kind::Array) {
            return Err(ReflectError::NoZeroValue {
                ty: ty.to_string(),
                part: ty.to_string(),
            });
        }
        if let Some(part) = ty.zeroless_part() {
            return Err(ReflectError::NoZeroValue {
                ty: ty.to_string(),
                part: part.to_string(),
            });
        }
        let handle = self.inner.alloc_zeroed(ty).map_err(ReflectError::Alloc)?;
        let ptr = pointer_to(ty);
        let handle = core::mem::ManuallyDrop::new(handle);
        // SAFETY: `ptr` is a pointer type with `Gc`'s representation (built from `Gc<()>`'s)
        // whose element is the object's type; the value takes over the handle's count.
        Ok(unsafe { Value::from_raw(ptr, (&*handle as *const Gc<u8>).cast()) })
    }
}

/// The unnamed built pointer type to `ty` (interned).
fn pointer_to(ty: &'static Type) -> &'static Type {
    TypeBuilder::pointer(<Gc<()>>::TYPE, None, ty)
}

/// The stripe lock of the object at `addr` (see the module docs).
fn stripe(addr: usize) -> std::sync::MutexGuard<'static, ()> {
    const N: usize = 64;
    static STRIPES: [Mutex<()>; N] = [const { Mutex::new(()) }; N];
    STRIPES[(addr >> 4) % N]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The built struct or array `obj` points to and the value's address, or why not.
fn target(obj: &Value, api: &'static str) -> Result<(&'static Type, *mut u8), ReflectError> {
    let t = obj.type_of();
    let elem = match t.elem() {
        Some(e)
            if t.kind() == Kind::Pointer
                && e.is_built()
                && matches!(e.kind(), Kind::Struct | Kind::Array) =>
        {
            e
        }
        _ => {
            return Err(ReflectError::NotBuiltObject {
                api,
                ty: t.to_string(),
            })
        }
    };
    // SAFETY: a pointer-kind value holds one handle word (`Typed`'s contract), read as a
    // `Gc<u8>` by reference only (its address; nothing is dropped).
    let h = unsafe { &*obj.as_ptr().cast::<Gc<u8>>() };
    let data = Gc::as_ptr(h).cast_mut();
    // The object itself must be one `alloc_zeroed` made of this type, and the handle at
    // its start: its header names `elem` (or it is in a tiny block, whose header names
    // none). No safe path leads a built pointer type to anything else (built aggregates
    // are identical to no Rust type), so this guards against descriptors misused in
    // unsafe code, and against interior handles, whose stripe would not be the object's.
    if let Some(o) = Gc::object_addr(h) {
        // SAFETY: the handle keeps its object allocated; its header is initialised.
        let ty = unsafe { crate::slot::header(o.as_ptr()) }
            .ty
            .load(Ordering::Relaxed);
        let start = o
            .as_ptr()
            .wrapping_add(crate::slot::data_offset(elem.align()));
        let made_here = core::ptr::eq(ty, elem) && data == start;
        if !(made_here || ty.is_null()) {
            return Err(ReflectError::NotBuiltObject {
                api,
                ty: t.to_string(),
            });
        }
    }
    Ok((elem, data))
}

/// Field (or element) `i` of `st`: its type, offset and name, or why not.
fn part(
    st: &'static Type,
    i: usize,
    api: &'static str,
) -> Result<(&'static Type, usize, String), ReflectError> {
    let no_field = |len| ReflectError::NoField {
        api,
        ty: st.to_string(),
        index: i,
        len,
    };
    if st.kind() == Kind::Array {
        let (elem, len) = (
            st.elem().expect("an array has an element"),
            st.array_len().unwrap_or(0),
        );
        return if i < len {
            Ok((elem, i * elem.size(), i.to_string()))
        } else {
            Err(no_field(len))
        };
    }
    let f = st
        .fields()
        .get(i)
        .ok_or_else(|| no_field(st.fields().len()))?;
    Ok((f.ty.get(), f.offset, f.name.to_string()))
}

/// Reads field (or element) `i` of the built object `obj` points to (Go's
/// `v.Elem().Field(i)`), as a `Value` of the field's type; a nil pointer field reads as
/// [`Value::nil`]. A handle read out counts on its object like any other.
pub fn field(obj: &Value, i: usize) -> Result<Value, ReflectError> {
    const API: &str = "fing::reflect::field";
    let (st, base) = target(obj, API)?;
    let (ty, off, name) = part(st, i, API)?;
    if !ty.handles_only_drop() || !(ty.is_noscan() || ty.ptrmask().is_known()) {
        return Err(ReflectError::NotReadable {
            field: name,
            field_ty: ty.to_string(),
        });
    }
    let p = base.wrapping_add(off);
    let _stripe = stripe(base as usize);
    // SAFETY: `p` is field `i` of a live built object (`obj` keeps it), a valid value of
    // `ty`; no write is under way (the stripe lock).
    if ty.kind() == Kind::Pointer && unsafe { p.cast::<usize>().read() } == 0 {
        return Ok(Value::nil());
    }
    if let PtrMask::Small(bits) = ty.ptrmask() {
        for w in (0..64).filter(|w| bits >> w & 1 == 1) {
            let at = p.cast::<*const u8>().wrapping_add(w);
            // SAFETY: a masked word of a valid value holds null or a handle word.
            let word = unsafe { at.read() };
            // SAFETY: as above: a handle word's object is a live heap object, reachable
            // from `obj`'s, which the caller's handle keeps.
            if let Some(o) = unsafe { gc_types::word::object_of(word) } {
                // SAFETY: as above.
                crate::slot::count_one_more(unsafe { crate::slot::header(o.as_ptr()) });
            }
        }
    }
    // SAFETY: the bytes are a valid `ty` whose every handle was just counted once more:
    // the value owns what it copies.
    Ok(unsafe { Value::from_raw(ty, p) })
}

/// Writes `v` into field (or element) `i` of the built object `obj` points to (Go's
/// `v.Elem().Field(i).Set(x)`): `v`'s type must be the field's (identical), or, for a
/// pointer field, a pointer type with an identical element where one of the two is
/// unnamed; [`Value::nil`] sets a pointer field to nil. The old value is dropped.
pub fn set_field(obj: &Value, i: usize, v: Value) -> Result<(), ReflectError> {
    const API: &str = "fing::reflect::set_field";
    let (st, base) = target(obj, API)?;
    let (ty, off, name) = part(st, i, API)?;
    let vt = v.type_of();
    let nil = v.is_nil() && ty.kind() == Kind::Pointer;
    let fits = nil
        || (vt.kind() != Kind::Func
            && vt.kind() != Kind::Invalid
            && (identical(vt, ty) || assignable_pointer(ty, vt)));
    if !fits {
        return Err(ReflectError::NotAssignable {
            value: vt.to_string(),
            field: name,
            field_ty: ty.to_string(),
            ty: st.to_string(),
        });
    }
    let p = base.wrapping_add(off);
    let stripe = stripe(base as usize);
    let section = crate::world::enter(API);
    // SAFETY: `p` is field `i` of a live built object (`obj` keeps it); no one else writes
    // it (the stripe lock) and the collector does not read it (the section).
    let old = if ty.kind() == Kind::Pointer && unsafe { p.cast::<usize>().read() } == 0 {
        None
    } else {
        // SAFETY: as above: the old value's bytes, whose ownership moves into the value
        // (it is overwritten below without being dropped).
        Some(unsafe { Value::from_raw(ty, p) })
    };
    if nil {
        drop(v);
        // SAFETY: as above; a zero word is a nil pointer in a built object.
        unsafe { p.cast::<usize>().write(0) };
    } else {
        // SAFETY: `p` is valid for writes of `ty.size()` bytes aligned for `ty`, and `v`'s
        // type has `ty`'s representation (identical, or pointers alike); not a func.
        unsafe { v.move_to(p) };
    }
    // A built object has no cell to stamp: a cycle marking now scans it again, with what
    // it holds now (`mgcwork`; the old value's handles shade as they drop).
    if let Some(o) = NonNull::new(base) {
        crate::mgcwork::shade_if_marking(o);
    }
    drop(section);
    drop(stripe);
    drop(old);
    Ok(())
}
