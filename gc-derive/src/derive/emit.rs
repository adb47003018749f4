//! Emit: turns a checked [`Input`] into the generated items. Reports no errors: whatever
//! could be wrong with the input was refused by `check`, and what only the compiler can
//! tell (a field type that is not `Trace`, an interface the type does not implement, a
//! `Drop` impl, an untraced field that can hold handles, an alignment over the limit)
//! becomes a compile error in the generated code, spanned at the field type or the
//! interface path where that makes the message clearer.
//!
//! Everything is emitted inside one `const _: () = { ... }`, names the crate's items only
//! through `<crate>::__private` (imported as `__fing`), and is `#[automatically_derived]`.
//! Each `unsafe impl` and `unsafe` block carries, here in the source, a SAFETY comment
//! saying why it is sound (the module doc of `derive` gives the argument as a whole).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Generics, Member};

use super::model::{Data, Field, Input, Style};

/// The whole expansion.
pub(super) fn emit(input: &Input) -> TokenStream {
    let krate = &input.opts.krate;
    let bounded = bounded_generics(input);
    let trace_impl = trace_impl(input, &bounded);
    let typed_impl = typed_impl(input, &bounded);
    let itab_glue = itab_glue(input, &bounded);
    let drop_guard = drop_guard(input, &bounded);
    let align_check = align_check(input);
    let untraced_asserts = untraced_asserts(input);
    quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            use #krate::__private as __fing;
            #[allow(unused_imports)]
            use __fing::{ProbeHandles as _, ProbeOnlyFrees as _, ProbeSend as _, ProbeSync as _};

            #trace_impl
            #typed_impl
            #itab_glue
            #drop_guard
            #align_check
            #untraced_asserts
        };
    }
}

/// The type's generics with `T: Trace` added to the where clause for each type parameter.
fn bounded_generics(input: &Input) -> Generics {
    let krate = &input.opts.krate;
    let mut generics = input.generics.clone();
    let wc = generics.make_where_clause();
    for t in &input.type_params {
        wc.predicates
            .push(syn::parse_quote!(#t: #krate::__private::Trace));
    }
    generics
}

/// `unsafe impl Trace`: `trace` and the constants `NO_SCAN`, `PTRMASK`,
/// `HANDLES_ONLY_DROP`, `DROP_ONLY_FREES`.
fn trace_impl(input: &Input, bounded: &Generics) -> TokenStream {
    let name = &input.name;
    let (impl_g, ty_g, where_c) = bounded.split_for_impl();
    let all = input.data.fields();
    let traced: Vec<&Field> = all.iter().copied().filter(|f| f.traced()).collect();

    // A recursive field answers conservatively without asking its type: it may hold
    // handles, its mask is unknown, its drop may run user code.
    let no_scan_terms = traced.iter().map(|f| {
        let ty = &f.ty;
        if f.recursive {
            quote!(false)
        } else {
            quote!(<#ty as __fing::Trace>::NO_SCAN)
        }
    });
    let ptrmask = match &input.data {
        Data::Enum(_) => quote!(if <Self as __fing::Trace>::NO_SCAN {
            __fing::PtrMask::EMPTY
        } else {
            __fing::PtrMask::Unknown
        }),
        Data::Struct(_) => {
            let entries = traced.iter().map(|f| {
                let m = &f.member;
                let ty = &f.ty;
                if f.recursive {
                    quote!((__fing::offset_of!(Self, #m), __fing::PtrMask::Unknown))
                } else {
                    quote!((__fing::offset_of!(Self, #m), <#ty as __fing::Trace>::PTRMASK))
                }
            });
            quote! {
                if <Self as __fing::Trace>::NO_SCAN {
                    __fing::PtrMask::EMPTY
                } else {
                    __fing::PtrMask::of_fields(__fing::size_of::<Self>(), &[#(#entries),*])
                }
            }
        }
    };

    // A drop-glue constant (`HANDLES_ONLY_DROP`: it drops handles alone;
    // `DROP_ONLY_FREES`: handles and deallocations) holds if it holds of every traced
    // field's type, no untraced field has drop glue, and the type has no `Drop` of its own.
    // A recursive field answers conservatively without asking its type.
    let drop_const = |name: &str| {
        if input.opts.allow_drop {
            return quote!(false);
        }
        let konst = format_ident!("{name}");
        let terms = traced.iter().map(|f| {
            let ty = &f.ty;
            if f.recursive {
                quote!(false)
            } else {
                quote!(<#ty as __fing::Trace>::#konst)
            }
        });
        // An untraced field's drop is opaque to the derive: it counts as freeing only if
        // its type promises so (`DropOnlyFrees`, asked through the probe), and never as
        // dropping handles alone.
        let untraced = all.iter().filter(|f| !f.traced()).map(|f| {
            let ty = &f.ty;
            if name == "DROP_ONLY_FREES" {
                quote!((!::core::mem::needs_drop::<#ty>() || <__fing::Probe<#ty>>::ONLY_FREES))
            } else {
                quote!(!::core::mem::needs_drop::<#ty>())
            }
        });
        quote!(true
            #(&& #terms)*
            #(&& #untraced)*)
    };
    let handles_only_drop = drop_const("HANDLES_ONLY_DROP");
    let only_frees_drop = drop_const("DROP_ONLY_FREES");

    let trace_body = trace_body(input, &traced);

    quote! {
        // SAFETY: `trace` reports every field that is not `#[gc(untraced)]` once, through
        // the field type's own `Trace`; untraced fields are asserted below to hold no
        // handles. `NO_SCAN` is the conjunction over the traced fields, and the mask is
        // combined from the fields' masks at their `offset_of!` offsets.
        #[automatically_derived]
        unsafe impl #impl_g __fing::Trace for #name #ty_g #where_c {
            const NO_SCAN: bool = true #(&& #no_scan_terms)*;
            const PTRMASK: __fing::PtrMask = #ptrmask;
            const HANDLES_ONLY_DROP: bool = #handles_only_drop;
            const DROP_ONLY_FREES: bool = #only_frees_drop;
            #[inline]
            fn trace(&self, tracer: &mut __fing::Tracer) {
                let _ = &tracer;
                #trace_body
            }
        }
    }
}

/// The body of `trace`: each traced field once, through its type's `Trace` (a call
/// spanned at the field type, where "not `Trace`" is reported).
fn trace_body(input: &Input, traced: &[&Field]) -> TokenStream {
    match &input.data {
        Data::Struct(_) => {
            let calls = traced.iter().map(|f| {
                let m = &f.member;
                let ty = &f.ty;
                quote_spanned!(ty.span()=> __fing::Trace::trace(&self.#m, tracer);)
            });
            quote!(#(#calls)*)
        }
        Data::Enum(variants) => {
            let arms = variants.iter().map(|v| {
                let vi = &v.ident;
                let binds = v.fields.iter().map(|f| {
                    let b = &f.binding;
                    match (&f.member, f.traced()) {
                        (Member::Named(n), true) => quote!(#n: #b),
                        (Member::Named(n), false) => quote!(#n: _),
                        (Member::Unnamed(_), true) => quote!(#b),
                        (Member::Unnamed(_), false) => quote!(_),
                    }
                });
                let calls = v.fields.iter().filter(|f| f.traced()).map(|f| {
                    let b = &f.binding;
                    quote!(__fing::Trace::trace(#b, tracer);)
                });
                let pat = match v.style {
                    Style::Named => quote!(Self::#vi { #(#binds),* }),
                    Style::Tuple => quote!(Self::#vi ( #(#binds),* )),
                    Style::Unit => quote!(Self::#vi),
                };
                quote!(#pat => { #(#calls)* })
            });
            quote! {
                #[allow(unreachable_patterns)]
                match self { #(#arms)* }
            }
        }
    }
}

/// `unsafe impl Typed`: the descriptor (kind, name, type arguments, fields, variants,
/// Send/Sync, itabs and, for a named pointer, the element type).
fn typed_impl(input: &Input, bounded: &Generics) -> TokenStream {
    let name = &input.name;
    let (impl_g, ty_g, where_c) = bounded.split_for_impl();
    let opts = &input.opts;
    let generic = input.is_generic();

    let kind = match (&input.data, opts.pointer) {
        (_, true) => quote!(Pointer),
        (Data::Enum(_), false) => quote!(Enum),
        (Data::Struct(_), false) => quote!(Struct),
    };
    let args = input
        .type_params
        .iter()
        .map(|t| quote!(__fing::TypeRef::of::<#t>()));
    let field_descs = field_descs(&input.data);
    let variant_names: Vec<String> = match &input.data {
        Data::Enum(variants) => variants.iter().map(|v| v.ident.to_string()).collect(),
        Data::Struct(_) => Vec::new(),
    };
    let send_sync = if opts.pointer {
        quote!(__fing::SendSync::Pointer)
    } else if generic {
        quote!(__fing::SendSync::Structural)
    } else {
        quote!(__fing::SendSync::Known {
            send: <__fing::Probe<Self>>::SEND,
            sync: <__fing::Probe<Self>>::SYNC,
        })
    };
    let itabs = opts.implements.iter().enumerate().map(|(i, tr)| {
        let cast = format_ident!("__fing_cast_{}", i);
        let write = format_ident!("__fing_write_{}", i);
        // (Comments do not survive into the expansion; this one argues the block emitted.)
        quote_spanned! {tr.span()=>
            // SAFETY: the conversion is a plain unsizing cast, which compiles only if `Self`
            // implements the trait, and the writer is the one made for this trait and `Self`.
            unsafe {
                __fing::Itab::new(
                    __fing::TypeRef::of::<__fing::Gc<dyn #tr>>(),
                    &(Self::#cast as fn(*const u8) -> *const dyn #tr),
                    Self::#write,
                )
            }
        }
    });
    // A named pointer has exactly one field, its handle (checked).
    let elem = match &input.data {
        Data::Struct(fields) if opts.pointer => {
            let ty = &fields[0].ty;
            quote!(.with_elem(<#ty as __fing::GcPointer>::ELEM))
        }
        _ => quote!(),
    };

    quote! {
        // SAFETY: size, alignment, identity and drop glue come from the compiler through
        // `Type::rust::<Self>`, offsets from `offset_of!`, Send/Sync from the compiler
        // (or structurally from the parts, for a generic type); each itab's conversion
        // is a plain unsizing cast that compiles only if `Self` implements the trait.
        #[automatically_derived]
        unsafe impl #impl_g __fing::Typed for #name #ty_g #where_c {
            // SAFETY: as the impl's: this descriptor describes `Self` exactly.
            const TYPE: &'static __fing::Type = &unsafe { __fing::Type::rust::<Self>(__fing::Kind::#kind) }
                .named(::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)))
                .with_args(&[#(#args),*])
                .with_fields(&[#(#field_descs),*])
                .with_variants(&[#(#variant_names),*])
                .with_send_sync(#send_sync)
                .with_implements(&[#(#itabs),*])
                #elem;
        }
    }
}

/// One `Field` descriptor per field. A struct's fields have their `offset_of!`; an enum's
/// are named `Variant.field` and have no offset (`usize::MAX`). An untraced field's type
/// need not be `Typed`: it gets an opaque descriptor, named after the type as written.
fn field_descs(data: &Data) -> Vec<TokenStream> {
    let desc = |f: &Field, fname: String, offset: TokenStream| {
        let ty = &f.ty;
        let tyref = if f.traced() {
            quote!(__fing::TypeRef::of::<#ty>())
        } else {
            let text = ty.to_token_stream().to_string().replace(' ', "");
            quote! {
                __fing::TypeRef::Lazy({
                    fn __ty() -> &'static __fing::Type {
                        // SAFETY: the field is untraced: the derive refused it if its type
                        // is a handle, and its Send/Sync answers are the compiler's.
                        const T: &__fing::Type = &unsafe {
                            __fing::Type::untraced::<#ty>(
                                #text,
                                <__fing::Probe<#ty>>::SEND,
                                <__fing::Probe<#ty>>::SYNC,
                            )
                        };
                        T
                    }
                    __ty
                })
            }
        };
        let untraced = !f.traced();
        quote!(__fing::Field { name: #fname, offset: #offset, ty: #tyref, untraced: #untraced })
    };
    match data {
        Data::Struct(fields) => fields
            .iter()
            .map(|f| {
                let m = &f.member;
                desc(f, f.name.clone(), quote!(__fing::offset_of!(Self, #m)))
            })
            .collect(),
        Data::Enum(variants) => variants
            .iter()
            .flat_map(|v| {
                v.fields
                    .iter()
                    .map(move |f| desc(f, format!("{}.{}", v.ident, f.name), quote!(usize::MAX)))
            })
            .collect(),
    }
}

/// For `#[gc(implements(...))]`, the functions each itab points to: the unsizing cast
/// from a data pointer to `*const dyn Trait`, and the writer of a `Gc<dyn Trait>`.
fn itab_glue(input: &Input, bounded: &Generics) -> TokenStream {
    let implements = &input.opts.implements;
    if implements.is_empty() {
        return quote!();
    }
    let name = &input.name;
    let (impl_g, ty_g, where_c) = bounded.split_for_impl();
    let casts = implements.iter().enumerate().map(|(i, tr)| {
        let cast = format_ident!("__fing_cast_{}", i);
        quote_spanned! {tr.span()=>
            #[doc(hidden)]
            #[allow(non_snake_case)]
            fn #cast(p: *const u8) -> *const dyn #tr {
                p.cast::<Self>() as *const dyn #tr
            }
        }
    });
    let writes = implements.iter().enumerate().map(|(i, tr)| {
        let write = format_ident!("__fing_write_{}", i);
        quote_spanned! {tr.span()=>
            /// Writes a `Gc<dyn Trait>` for the value at `data` in the object at `obj`.
            ///
            /// # Safety
            /// `data` points to a live `Self` inside the object at `obj` whose count the caller
            /// hands over; `dst` is valid for writing a `Gc<dyn Trait>`.
            #[doc(hidden)]
            #[allow(non_snake_case)]
            unsafe fn #write(data: *const u8, obj: ::core::ptr::NonNull<u8>, dst: *mut u8) {
                let p = data.cast::<Self>() as *const dyn #tr;
                // SAFETY: the caller's contract: the count is handed over and `dst` is valid.
                unsafe { dst.cast::<__fing::Gc<dyn #tr>>().write(__fing::gc_from_raw_parts(p, obj)) }
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_g #name #ty_g #where_c { #(#casts)* #(#writes)* }
    }
}

/// The ban on `Drop` (a marker trait implemented both for every `Drop` type and for this
/// one, which conflict if it is `Drop`), or, with `#[gc(unsafe_allow_drop)]`, the
/// requirement of an `unsafe impl AllowDrop`.
fn drop_guard(input: &Input, bounded: &Generics) -> TokenStream {
    let name = &input.name;
    if input.opts.allow_drop {
        // The opt-out takes the `unsafe` keyword: an `unsafe impl AllowDrop` promising
        // that the `Drop` never dereferences the value's traced handles.
        let (impl_g, ty_g, where_c) = bounded.split_for_impl();
        quote! {
            #[allow(dead_code)]
            fn __fing_allow_drop #impl_g () #where_c {
                fn needs_allow_drop<T: ?Sized + __fing::AllowDrop>() {}
                needs_allow_drop::<#name #ty_g>();
            }
        }
    } else {
        let (impl_g, ty_g, plain_where) = input.generics.split_for_impl();
        quote! {
            trait FingTracedTypesMustNotImplementDrop {}
            #[allow(drop_bounds)]
            impl<T: ::core::ops::Drop> FingTracedTypesMustNotImplementDrop for T {}
            impl #impl_g FingTracedTypesMustNotImplementDrop for #name #ty_g #plain_where {}
        }
    }
}

/// A type fing could never allocate is refused where it is declared (for a generic one,
/// where it is allocated: `Heap::alloc`'s own check).
fn align_check(input: &Input) -> TokenStream {
    if input.is_generic() {
        return quote!();
    }
    let name = &input.name;
    let msg = format!(
        "`{name}` is aligned to more than fing::MAX_ALIGN (16 MiB): fing cannot allocate it"
    );
    quote! {
        const _: () = ::core::assert!(
            ::core::mem::align_of::<#name>() <= __fing::MAX_ALIGN,
            #msg
        );
    }
}

/// For each untraced field, a compile-time assertion (spanned at its type) that the type
/// cannot hold handles.
fn untraced_asserts(input: &Input) -> TokenStream {
    let asserts = input
        .data
        .fields()
        .into_iter()
        .filter(|f| !f.traced())
        .map(|f| {
            let ty = &f.ty;
            let msg = format!(
            "#[gc(untraced)] field `{}` of `{}` has a type that can hold handles; trace it instead",
            f.name, input.name
        );
            quote_spanned! {ty.span()=>
                const _: () = ::core::assert!(!<__fing::Probe<#ty>>::HOLDS_HANDLES, #msg);
            }
        });
    quote!(#(#asserts)*)
}
