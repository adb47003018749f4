//! gc-derive: `#[derive(Trace)]` and `#[fing::interface]`.
//!
//! Pipeline, per macro, in the shape of serde_derive: check, then emit.
//! - Check (`derive::check`, `interface::check`) parses the `#[gc(...)]` attributes
//!   (module `attr`) and validates the input into a small model (`derive::model`; for an
//!   interface, the crate path and the trait). It owns every diagnostic: errors are
//!   gathered and reported together, each spanned at its cause; the macro never panics.
//! - Emit (`derive::emit`, `interface::emit`) turns the model into tokens and reports
//!   nothing. Everything emitted sits inside `const _: () = { ... }`, is
//!   `#[automatically_derived]`, names items only through `<crate>::__private` (the crate
//!   path is `::fing` unless `#[gc(crate = "...")]` says otherwise), and has a SAFETY
//!   comment above each `unsafe impl` (in this crate's source) saying why it is sound.
//!
//! The expansions of a set of inputs are snapshot-tested (module `snapshots`, files under
//! `tests/snapshots`; re-bless with `FING_UPDATE_SNAPSHOTS=1 cargo test -p gc-derive`).

use proc_macro::TokenStream;

mod attr;
mod derive;
mod interface;
#[cfg(test)]
mod snapshots;

/// Derives `Trace` and `Typed` (the runtime type descriptor) for a struct or enum.
///
/// Container attributes: `#[gc(implements(Trait, ...))]` (each a `#[fing::interface]`
/// trait the type implements; the compiler checks it), `#[gc(pointer)]` (a
/// `#[repr(transparent)]` newtype over one `Gc<T>` becomes a named pointer type),
/// `#[gc(crate = "path")]`, and `#[gc(unsafe_allow_drop)]` (opt out of the ban on `Drop`
/// impls; it takes an `unsafe impl fing::AllowDrop for T {}` too, the promise that `drop`
/// dereferences none of the value's traced handles).
///
/// Field attribute: `#[gc(untraced)]` for a field that holds no handles and whose type
/// need not be `Trace`. It is rejected on a field whose type mentions a handle type or a
/// generic parameter, or is a `Trace` type that can hold handles. The derive cannot see
/// into such a field's drop: if its type has drop glue, the object's destructor is user
/// code (run after the world resumes, by `collect()`'s caller or the drop thread), unless
/// the type promises that its drop only frees memory (`unsafe impl fing::DropOnlyFrees`,
/// which `Arc`, `Box`, `Vec`, `String`, `Option`, std's maps and tuples of such types
/// keep).
///
/// Recursive types (`children: Vec<Tree>`, `next: Option<Box<List>>`, an enum holding
/// `Box<Self>`) are accepted: a field that names the type itself answers conservatively
/// (it may hold handles, its mask is unknown, its drop may run user code) instead of
/// asking its type, which would ask the type being derived. Types recursive only through
/// each other (`A` holds `Vec<B>`, `B` holds `Vec<A>`) are not seen as such, and the
/// compiler reports the cycle (E0391); give one of them a field type that names itself,
/// or write its `Trace` by hand. Any `#[repr(align(N))]` is accepted up to
/// `fing::MAX_ALIGN`; `#[repr(packed)]` is refused.
#[proc_macro_derive(Trace, attributes(gc))]
pub fn derive_trace(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    derive::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes `dyn Trait` an interface type: `Gc<dyn Trait>` gets a `Typed` descriptor of kind
/// interface with the trait's method set, and finalizers may take it as their parameter.
/// The trait must have `Send + Sync` among its supertraits (finalizers run on the
/// finalizer thread). `#[fing::interface(crate = "path")]` sets the crate path.
#[proc_macro_attribute]
pub fn interface(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(input as syn::ItemTrait);
    interface::expand(args.into(), item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
