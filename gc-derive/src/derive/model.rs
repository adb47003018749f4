//! The checked input of `#[derive(Trace)]`: what `check` hands to `emit`.
//!
//! Owns the data types only; `check` is the one place that builds them. A value of
//! [`Input`] is a type the derive accepts, so `emit` can rely on, without checking again:
//! - the type is a struct or an enum (never a union), has no lifetime parameters and is
//!   not `#[repr(packed)]`;
//! - if `pointer` is set: a struct (not an enum) with exactly one field, which is not
//!   `#[gc(untraced)]`, the struct is `#[repr(transparent)]`, and `implements` is empty;
//! - an untraced field's type names no handle type, no generic parameter and not `Self`
//!   (whether it can hold handles through some other type is left to the compiler: `emit`
//!   asserts it);
//! - `recursive` on a field says whether its type names the derived type other than
//!   behind a handle; it is worked out once here so that every constant `emit` writes
//!   agrees on it.
//!
//! Syntax (types, paths, generics) is kept as written, with its spans: the spans of field
//! types and of `implements` paths are where the compiler's errors about them point.

use proc_macro2::Span;
use syn::{Generics, Ident, Member, Path, Type};

/// A type `#[derive(Trace)]` accepts.
pub(super) struct Input {
    /// The type's name.
    pub(super) name: Ident,
    /// The generics as written (type and const parameters, where clause; no lifetimes).
    pub(super) generics: Generics,
    /// The type parameters' names, in order: each is bounded by `Trace` in the impls and
    /// is a type argument of the descriptor.
    pub(super) type_params: Vec<Ident>,
    pub(super) opts: Options,
    pub(super) data: Data,
}

/// Container options, with the defaults filled in.
pub(super) struct Options {
    /// The path of the `fing` crate (`::fing` unless `#[gc(crate = "...")]`).
    pub(super) krate: Path,
    /// `#[gc(implements(...))]`: the interface traits, in the order written.
    pub(super) implements: Vec<Path>,
    /// `#[gc(pointer)]`: a named pointer type.
    pub(super) pointer: bool,
    /// `#[gc(unsafe_allow_drop)]`: the type may implement `Drop`.
    pub(super) allow_drop: bool,
}

pub(super) enum Data {
    Struct(Vec<Field>),
    Enum(Vec<Variant>),
}

impl Input {
    /// Has the type type or const parameters? (Then the compiler cannot answer questions
    /// about `Self` once for all its instances: Send/Sync is answered from the parts, and
    /// the alignment is checked where it is allocated.)
    pub(super) fn is_generic(&self) -> bool {
        !self.type_params.is_empty() || self.generics.const_params().next().is_some()
    }
}

impl Data {
    /// Every field of the type in declaration order (an enum's variant by variant).
    pub(super) fn fields(&self) -> Vec<&Field> {
        match self {
            Data::Struct(fields) => fields.iter().collect(),
            Data::Enum(variants) => variants.iter().flat_map(|v| &v.fields).collect(),
        }
    }
}

pub(super) struct Variant {
    pub(super) ident: Ident,
    pub(super) style: Style,
    pub(super) fields: Vec<Field>,
}

#[derive(Clone, Copy)]
pub(super) enum Style {
    Named,
    Tuple,
    Unit,
}

pub(super) struct Field {
    /// `self.<member>`.
    pub(super) member: Member,
    /// The binding used in enum match arms (`__f<index>`).
    pub(super) binding: Ident,
    /// The name given in the descriptor and in messages: the field's name or index.
    pub(super) name: String,
    pub(super) ty: Type,
    /// Where `#[gc(untraced)]` was written, if it was.
    pub(super) untraced: Option<Span>,
    /// The type names the derived type other than behind a handle (`Vec<Tree>`,
    /// `Option<Box<Self>>`): its `Trace` constants are not asked, they would be the
    /// derived type's own.
    pub(super) recursive: bool,
}

impl Field {
    pub(super) fn traced(&self) -> bool {
        self.untraced.is_none()
    }
}
