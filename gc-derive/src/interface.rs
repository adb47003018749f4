//! `#[fing::interface]`: makes `Gc<dyn Trait>` an interface type (kind interface, named
//! after the trait, with its method set), and gives the conversion from an itab and a data
//! pointer to the trait object.
//!
//! The same two steps as the derive, in one file (the checked input is just the crate
//! path and the trait): `check` parses the arguments and refuses a generic trait or one
//! without `Send + Sync` among its supertraits (owning every message; the arguments'
//! errors come alone, the trait's are gathered), and `emit` writes the trait back
//! unchanged followed by the `unsafe impl GcTarget for dyn Trait`, whose soundness rests
//! on what `check` established.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{ItemTrait, Path, TraitItem, TypeParamBound};

use crate::attr::{self, Errors};

pub(crate) fn expand(args: TokenStream, item: ItemTrait) -> syn::Result<TokenStream> {
    let krate = check(args, &item)?;
    Ok(emit(&krate, &item))
}

/// The crate path, once the arguments parse and the trait can be an interface type.
fn check(args: TokenStream, item: &ItemTrait) -> syn::Result<Path> {
    let krate = attr::interface_args(args)?.unwrap_or_else(attr::default_crate);
    let mut errs = Errors::default();
    if !item.generics.params.is_empty() {
        errs.error(
            &item.generics,
            "#[fing::interface] traits cannot be generic: an interface type is one type",
        );
    }
    let has = |name: &str| {
        item.supertraits.iter().any(|b| match b {
            TypeParamBound::Trait(t) => t.path.segments.last().is_some_and(|s| s.ident == name),
            _ => false,
        })
    };
    if !has("Send") || !has("Sync") {
        let span = if item.supertraits.is_empty() {
            item.ident.span()
        } else {
            item.supertraits.span()
        };
        errs.error(
            span,
            format!(
                "#[fing::interface] trait `{}` must have `Send + Sync` among its supertraits: \
                 finalizers taking `Gc<dyn {}>` run on the finalizer thread",
                item.ident, item.ident
            ),
        );
    }
    errs.finish()?;
    Ok(krate)
}

/// The trait, then its `GcTarget` impl.
fn emit(krate: &Path, item: &ItemTrait) -> TokenStream {
    let name = &item.ident;
    let methods = item.items.iter().filter_map(|i| match i {
        TraitItem::Fn(f) => {
            let n = f.sig.ident.to_string();
            Some(quote!(__fing::Method { name: #n }))
        }
        _ => None,
    });
    quote! {
        #item

        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            use #krate::__private as __fing;

            // SAFETY: `Type::rust::<Gc<dyn Trait>>` takes size, alignment, identity, drop and
            // trace glue from the compiler and gc-core's `Trace for Gc<T>`; kind interface,
            // named after the trait, with its methods; `dyn Trait` is Send + Sync (checked
            // above: the supertraits include both), so the handle is too.
            #[automatically_derived]
            unsafe impl __fing::GcTarget for dyn #name {
                const GC_TYPE: &'static __fing::Type =
                    &unsafe { __fing::Type::rust::<__fing::Gc<dyn #name>>(__fing::Kind::Interface) }
                        .named(::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)))
                        .with_methods(&[#(#methods),*])
                        .with_send_sync(__fing::SendSync::Known { send: true, sync: true });

                fn cast_from(itab: &__fing::Itab, data: *const u8) -> ::core::option::Option<*const Self> {
                    itab.cast()
                        .downcast_ref::<fn(*const u8) -> *const dyn #name>()
                        .map(|cast| cast(data))
                }
            }
        };
    }
}
