//! `Kind`: what the collector, the `set_finalizer` checks and the frame invoker switch on.
//!
//! Go's `reflect.Kind`, reduced to what a Rust value can be. Invariant: the kind of a
//! descriptor never changes, and the per-kind parts of a [`Type`](crate::Type) (element,
//! length, fields, signature, method set) are present exactly for the kinds that have them.

use core::fmt;

/// The kind of a runtime type (Go's `reflect.Kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// The type of the nil value (Go's `Invalid`).
    Invalid,
    /// `bool`.
    Bool,
    /// `char`.
    Char,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `i128`.
    I128,
    /// `isize`.
    Isize,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `u128`.
    U128,
    /// `usize`.
    Usize,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `String` (and `Box<str>`).
    String,
    /// A GC pointer: `Gc<T>` (unnamed) or a `#[gc(pointer)]` newtype (named). Has an element.
    Pointer,
    /// A struct with fields at known offsets.
    Struct,
    /// A Rust enum: traced by its trace function, no field offsets.
    Enum,
    /// A fixed-length array `[T; N]`. Has an element and a length.
    Array,
    /// A growable sequence (`Vec<T>`, `Box<[T]>`). Has an element.
    Slice,
    /// A tuple; as a function result type it is a result list.
    Tuple,
    /// An interface: `Value` (the empty interface) or `Gc<dyn Trait>` for a
    /// `#[fing::interface]` trait. Has a method set.
    Interface,
    /// A function signature: parameters, results, variadic flag.
    Func,
    /// A Rust value the reflection model does not look inside (`Option`, `Box`, maps, …).
    Opaque,
}

impl Kind {
    /// Go's name for the kind, lowercase (`ptr` is spelled `pointer`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Invalid => "invalid",
            Kind::Bool => "bool",
            Kind::Char => "char",
            Kind::I8 => "i8",
            Kind::I16 => "i16",
            Kind::I32 => "i32",
            Kind::I64 => "i64",
            Kind::I128 => "i128",
            Kind::Isize => "isize",
            Kind::U8 => "u8",
            Kind::U16 => "u16",
            Kind::U32 => "u32",
            Kind::U64 => "u64",
            Kind::U128 => "u128",
            Kind::Usize => "usize",
            Kind::F32 => "f32",
            Kind::F64 => "f64",
            Kind::String => "string",
            Kind::Pointer => "pointer",
            Kind::Struct => "struct",
            Kind::Enum => "enum",
            Kind::Array => "array",
            Kind::Slice => "slice",
            Kind::Tuple => "tuple",
            Kind::Interface => "interface",
            Kind::Func => "func",
            Kind::Opaque => "opaque",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
