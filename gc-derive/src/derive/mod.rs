//! `#[derive(Trace)]`, in the shape of serde_derive: `check` turns the `DeriveInput` and
//! its attributes into a checked [`model::Input`] (or reports every error it found), and
//! `emit` turns that into `unsafe impl Trace`, `unsafe impl Typed`, the itab glue, the
//! `Drop` ban and the untraced-field assertions. `check` owns every diagnostic, `emit`
//! none; the model is the contract between them (its invariants are listed in `model`).
//! The expansion of a set of inputs is held by the snapshot tests (`crate::snapshots`).
//!
//! Why the generated code is sound:
//! - `trace` visits every field that is not `#[gc(untraced)]`, once, through the field
//!   type's own `Trace`; an untraced field is asserted (at compile time) not to hold
//!   handles, and a forgotten handle could only delay a free anyway;
//! - the descriptor takes size, alignment, identity and drop glue from the compiler
//!   (`Type::rust::<Self>`) and offsets from `offset_of!`, so it cannot disagree with the
//!   layout;
//! - Send/Sync: a type without generic parameters asks the compiler (`Probe`); a generic
//!   one answers structurally from its fields and type arguments, as auto traits do;
//! - a `Drop` impl on the type is a compile error (two conflicting impls of a marker
//!   trait), because `drop` could read a handle to an object freed in the same cycle;
//!   `#[gc(unsafe_allow_drop)]` lifts the ban only with an `unsafe impl AllowDrop`, which
//!   the generated code requires;
//! - the descriptor is made with `Type::rust` and each itab with `Itab::new`, both
//!   `unsafe`: the derive's arguments above are what makes them sound;
//! - a field whose type names the derived type (recursion through `Vec`, `Box`, ...)
//!   contributes conservative constants (may hold handles, unknown mask, a drop that may
//!   run user code) rather than its type's, which would be a cycle of constants.

use proc_macro2::TokenStream;
use syn::DeriveInput;

mod check;
mod emit;
mod model;

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let input = check::check(input)?;
    Ok(emit::emit(&input))
}
