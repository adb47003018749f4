//! `#[derive(Trace)]`: checks, then emits `unsafe impl Trace`, `unsafe impl Typed`, the
//! `Drop` ban and the untraced-field assertions.
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

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Data, DeriveInput, Fields, Ident, Member, Path, Type};

use crate::attr::{self, Errors};

struct FieldInfo {
    member: Member,
    /// The binding used in enum match arms.
    binding: Ident,
    name: String,
    ty: Type,
    untraced: Option<Span>,
}

struct Variant {
    ident: Ident,
    style: Style,
    fields: Vec<FieldInfo>,
}

#[derive(Clone, Copy)]
enum Style {
    Named,
    Tuple,
    Unit,
}

fn fields_of(fields: &Fields, errs: &mut Errors) -> (Style, Vec<FieldInfo>) {
    let style = match fields {
        Fields::Named(_) => Style::Named,
        Fields::Unnamed(_) => Style::Tuple,
        Fields::Unit => Style::Unit,
    };
    let infos = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let opts = attr::field(&f.attrs, errs);
            let (member, name) = match &f.ident {
                Some(id) => (Member::Named(id.clone()), id.to_string()),
                None => (Member::Unnamed(i.into()), i.to_string()),
            };
            FieldInfo {
                member,
                binding: format_ident!("__f{}", i),
                name,
                ty: f.ty.clone(),
                untraced: opts.untraced,
            }
        })
        .collect();
    (style, infos)
}

/// Finds what makes a type unfit for `#[gc(untraced)]`: a handle type or a generic
/// parameter (which could be instantiated with one), or `Self`.
struct Mentions<'a> {
    generics: &'a [Ident],
    found: Option<(Span, String)>,
}

impl<'ast> Visit<'ast> for Mentions<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if self.found.is_none() {
            if let Some(first) = p.segments.first() {
                if p.segments.len() == 1 && self.generics.contains(&first.ident) {
                    self.found = Some((
                        first.ident.span(),
                        format!("generic parameter `{}` (it could be a handle)", first.ident),
                    ));
                } else if first.ident == "Self" {
                    self.found = Some((first.ident.span(), "`Self`".into()));
                }
            }
            for seg in &p.segments {
                let s = seg.ident.to_string();
                if matches!(s.as_str(), "Gc" | "GcCell" | "Value" | "Func") {
                    self.found = Some((seg.ident.span(), format!("the handle type `{s}`")));
                    break;
                }
            }
        }
        syn::visit::visit_path(self, p);
    }
}

/// Does `ty` mention the type being derived (by its name or as `Self`) other than behind
/// a handle? Such a field is recursive (`children: Vec<Tree>`, `next: Option<Box<Tree>>`):
/// asking its `Trace` constants would ask the derived type's own, a cycle the compiler
/// refuses (E0391). Behind a handle (`Option<Gc<Node>>`, `GcCell<Vec<Gc<Node>>>`) it is
/// not: a handle's constants do not depend on what it points to.
struct MentionsItself<'a> {
    name: &'a Ident,
    found: bool,
}

impl<'ast> Visit<'ast> for MentionsItself<'_> {
    fn visit_path_segment(&mut self, seg: &'ast syn::PathSegment) {
        if seg.ident == *self.name || seg.ident == "Self" {
            self.found = true;
        }
        if matches!(seg.ident.to_string().as_str(), "Gc" | "Weak") {
            return;
        }
        syn::visit::visit_path_segment(self, seg);
    }
}

fn mentions_itself(ty: &Type, name: &Ident) -> bool {
    let mut m = MentionsItself { name, found: false };
    m.visit_type(ty);
    m.found
}

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let mut errs = Errors::default();
    let opts = attr::container(&input.attrs, &mut errs);
    let krate: Path = opts.krate.clone().unwrap_or_else(attr::default_crate);
    let name = &input.ident;

    if let Some(lt) = input.generics.lifetimes().next() {
        errs.error(
            lt,
            "#[derive(Trace)] types must be 'static: a heap object outlives every borrow, so \
             it cannot have lifetime parameters",
        );
    }
    for a in &input.attrs {
        if a.path().is_ident("repr") {
            let packed = a
                .parse_nested_meta(|m| {
                    if m.path.is_ident("packed") {
                        return Err(m.error("packed"));
                    }
                    if m.input.peek(syn::token::Paren) {
                        // `align(N)`: the argument is the compiler's to check.
                        let c;
                        syn::parenthesized!(c in m.input);
                        c.parse::<proc_macro2::TokenStream>()?;
                    }
                    Ok(())
                })
                .is_err();
            if packed {
                errs.error(a, "#[derive(Trace)] does not support #[repr(packed)]: tracing takes references to fields");
            }
        }
    }
    let transparent = input.attrs.iter().any(|a| {
        a.path().is_ident("repr") && a.parse_args::<Ident>().is_ok_and(|i| i == "transparent")
    });

    let (is_enum, variants): (bool, Vec<Variant>) = match &input.data {
        Data::Struct(s) => {
            let (style, fields) = fields_of(&s.fields, &mut errs);
            (
                false,
                vec![Variant {
                    ident: name.clone(),
                    style,
                    fields,
                }],
            )
        }
        Data::Enum(e) => (
            true,
            e.variants
                .iter()
                .map(|v| {
                    let (style, fields) = fields_of(&v.fields, &mut errs);
                    Variant {
                        ident: v.ident.clone(),
                        style,
                        fields,
                    }
                })
                .collect(),
        ),
        Data::Union(u) => {
            errs.error(
                u.union_token,
                "#[derive(Trace)] cannot be used on a union: the collector could not tell which \
                 field holds a handle",
            );
            (false, Vec::new())
        }
    };

    let type_params: Vec<Ident> = input
        .generics
        .type_params()
        .map(|t| t.ident.clone())
        .collect();
    for f in variants.iter().flat_map(|v| &v.fields) {
        if let Some(span) = f.untraced {
            let mut m = Mentions {
                generics: &type_params,
                found: None,
            };
            m.visit_type(&f.ty);
            if let Some((at, what)) = m.found {
                let mut e = syn::Error::new(
                    span,
                    format!("#[gc(untraced)] field `{}` mentions {what}: an untraced field must hold no handles", f.name),
                );
                e.combine(syn::Error::new(at, "mentioned here"));
                errs.push(e);
            }
        }
    }

    if let Some(span) = opts.pointer {
        let fields = variants.first().map(|v| v.fields.len());
        if is_enum || fields != Some(1) {
            errs.error(
                span,
                "#[gc(pointer)] needs a struct with exactly one field, a `Gc<T>`",
            );
        } else if !transparent {
            errs.error(span, "#[gc(pointer)] needs #[repr(transparent)]: the newtype must have the representation of its handle");
        } else if variants[0].fields[0].untraced.is_some() {
            errs.error(span, "#[gc(pointer)] field cannot be untraced");
        }
        if !opts.implements.is_empty() {
            errs.error(span, "#[gc(pointer)] types cannot implement interfaces (as Go's named pointer types have no methods)");
        }
    }
    errs.finish()?;

    let generic = !type_params.is_empty();
    let mut generics = input.generics.clone();
    {
        let wc = generics.make_where_clause();
        for t in &type_params {
            wc.predicates
                .push(syn::parse_quote!(#t: #krate::__private::Trace));
        }
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let (_, _, plain_where) = input.generics.split_for_impl();

    let all: Vec<&FieldInfo> = variants.iter().flat_map(|v| &v.fields).collect();
    let traced: Vec<&FieldInfo> = all
        .iter()
        .copied()
        .filter(|f| f.untraced.is_none())
        .collect();
    let traced_tys: Vec<&Type> = traced.iter().map(|f| &f.ty).collect();
    // A recursive field answers conservatively without asking its type: it may hold
    // handles, its mask is unknown, its drop may run user code (see `MentionsItself`).
    // Mutual recursion through two derived types is not seen: the compiler reports it.
    let recursive = |f: &FieldInfo| mentions_itself(&f.ty, name);
    let no_scan_terms: Vec<TokenStream> = traced
        .iter()
        .map(|f| {
            let ty = &f.ty;
            if recursive(f) {
                quote!(false)
            } else {
                quote!(<#ty as __fing::Trace>::NO_SCAN)
            }
        })
        .collect();
    let handles_only_terms: Vec<TokenStream> = traced
        .iter()
        .map(|f| {
            let ty = &f.ty;
            if recursive(f) {
                quote!(false)
            } else {
                quote!(<#ty as __fing::Trace>::HANDLES_ONLY_DROP)
            }
        })
        .collect();

    // trace()
    let trace_body = if is_enum {
        let arms = variants.iter().map(|v| {
            let vi = &v.ident;
            let binds = v.fields.iter().map(|f| {
                let b = &f.binding;
                match (&f.member, f.untraced) {
                    (Member::Named(n), None) => quote!(#n: #b),
                    (Member::Named(n), Some(_)) => quote!(#n: _),
                    (Member::Unnamed(_), None) => quote!(#b),
                    (Member::Unnamed(_), Some(_)) => quote!(_),
                }
            });
            let calls = v.fields.iter().filter(|f| f.untraced.is_none()).map(|f| {
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
    } else {
        let calls = traced.iter().map(|f| {
            let m = &f.member;
            let ty = &f.ty;
            quote_spanned!(ty.span()=> __fing::Trace::trace(&self.#m, tracer);)
        });
        quote!(#(#calls)*)
    };

    let ptrmask = if is_enum {
        quote!(if <Self as __fing::Trace>::NO_SCAN {
            __fing::PtrMask::EMPTY
        } else {
            __fing::PtrMask::Unknown
        })
    } else {
        let entries = traced.iter().map(|f| {
            let m = &f.member;
            let ty = &f.ty;
            if recursive(f) {
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
    };

    // Field descriptors.
    let untraced_ty = |f: &FieldInfo| {
        let ty = &f.ty;
        let text = ty.to_token_stream().to_string().replace(' ', "");
        quote! {
            __fing::TypeRef::Lazy({
                fn __ty() -> &'static __fing::Type {
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
    let field_descs = variants.iter().flat_map(|v| {
        v.fields.iter().map(move |f| {
            let fname = if is_enum {
                format!("{}.{}", v.ident, f.name)
            } else {
                f.name.clone()
            };
            let ty = &f.ty;
            let m = &f.member;
            let offset = if is_enum {
                quote!(usize::MAX)
            } else {
                quote!(__fing::offset_of!(Self, #m))
            };
            let tyref = if f.untraced.is_some() {
                untraced_ty(f)
            } else {
                quote!(__fing::TypeRef::of::<#ty>())
            };
            let untraced = f.untraced.is_some();
            quote!(__fing::Field { name: #fname, offset: #offset, ty: #tyref, untraced: #untraced })
        })
    });

    let kind = if opts.pointer.is_some() {
        quote!(Pointer)
    } else if is_enum {
        quote!(Enum)
    } else {
        quote!(Struct)
    };
    let send_sync = if opts.pointer.is_some() {
        quote!(__fing::SendSync::Pointer)
    } else if generic {
        quote!(__fing::SendSync::Structural)
    } else {
        quote!(__fing::SendSync::Known {
            send: <__fing::Probe<Self>>::SEND,
            sync: <__fing::Probe<Self>>::SYNC,
        })
    };
    let elem = if opts.pointer.is_some() {
        let ty = &traced_tys[0];
        quote!(.with_elem(<#ty as __fing::GcPointer>::ELEM))
    } else {
        quote!()
    };
    let variant_names: Vec<String> = if is_enum {
        variants.iter().map(|v| v.ident.to_string()).collect()
    } else {
        Vec::new()
    };
    let itabs = opts.implements.iter().enumerate().map(|(i, tr)| {
        let cast = format_ident!("__fing_cast_{}", i);
        let write = format_ident!("__fing_write_{}", i);
        quote_spanned! {tr.span()=>
            unsafe {
                __fing::Itab::new(
                    __fing::TypeRef::of::<__fing::Gc<dyn #tr>>(),
                    &(Self::#cast as fn(*const u8) -> *const dyn #tr),
                    Self::#write,
                )
            }
        }
    });
    let casts = opts.implements.iter().enumerate().map(|(i, tr)| {
        let cast = format_ident!("__fing_cast_{}", i);
        quote_spanned! {tr.span()=>
            #[doc(hidden)]
            #[allow(non_snake_case)]
            fn #cast(p: *const u8) -> *const dyn #tr {
                p.cast::<Self>() as *const dyn #tr
            }
        }
    });
    let writes = opts.implements.iter().enumerate().map(|(i, tr)| {
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
    let cast_impl = if opts.implements.is_empty() {
        quote!()
    } else {
        quote! {
            #[automatically_derived]
            impl #impl_g #name #ty_g #where_c { #(#casts)* #(#writes)* }
        }
    };
    let args = type_params
        .iter()
        .map(|t| quote!(__fing::TypeRef::of::<#t>()));

    // Dropping the value does nothing but drop handles if every field's drop is that (or
    // nothing), and the type has no `Drop` of its own.
    let untraced_tys = all.iter().filter(|f| f.untraced.is_some()).map(|f| &f.ty);
    let handles_only_drop = if opts.allow_drop {
        quote!(false)
    } else {
        quote!(true
            #(&& #handles_only_terms)*
            #(&& !::core::mem::needs_drop::<#untraced_tys>())*)
    };
    let drop_guard = if opts.allow_drop {
        // The opt-out takes the `unsafe` keyword: an `unsafe impl AllowDrop` promising
        // that the `Drop` never dereferences the value's traced handles.
        quote! {
            #[allow(dead_code)]
            fn __fing_allow_drop #impl_g () #where_c {
                fn needs_allow_drop<T: ?Sized + __fing::AllowDrop>() {}
                needs_allow_drop::<#name #ty_g>();
            }
        }
    } else {
        quote! {
            trait FingTracedTypesMustNotImplementDrop {}
            #[allow(drop_bounds)]
            impl<T: ::core::ops::Drop> FingTracedTypesMustNotImplementDrop for T {}
            impl #impl_g FingTracedTypesMustNotImplementDrop for #name #ty_g #plain_where {}
        }
    };
    let untraced_asserts = all.iter().filter(|f| f.untraced.is_some()).map(|f| {
        let ty = &f.ty;
        let msg = format!(
            "#[gc(untraced)] field `{}` of `{}` has a type that can hold handles; trace it instead",
            f.name, name
        );
        quote_spanned! {ty.span()=>
            const _: () = ::core::assert!(!<__fing::Probe<#ty>>::HOLDS_HANDLES, #msg);
        }
    });

    // A type fing could never allocate is refused where it is declared (for a generic
    // one, where it is allocated: `Heap::alloc`'s own check).
    let align_check = if generic {
        quote!()
    } else {
        let msg = format!(
            "`{name}` is aligned to more than fing::MAX_ALIGN (16 MiB): fing cannot allocate it"
        );
        quote! {
            const _: () = ::core::assert!(
                ::core::mem::align_of::<#name>() <= __fing::MAX_ALIGN,
                #msg
            );
        }
    };

    Ok(quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            use #krate::__private as __fing;
            #[allow(unused_imports)]
            use __fing::{ProbeHandles as _, ProbeSend as _, ProbeSync as _};

            // SAFETY: `trace` reports every field that is not `#[gc(untraced)]` once, through
            // the field type's own `Trace`; untraced fields are asserted below to hold no
            // handles. `NO_SCAN` is the conjunction over the traced fields, and the mask is
            // combined from the fields' masks at their `offset_of!` offsets.
            #[automatically_derived]
            unsafe impl #impl_g __fing::Trace for #name #ty_g #where_c {
                const NO_SCAN: bool = true #(&& #no_scan_terms)*;
                const PTRMASK: __fing::PtrMask = #ptrmask;
                const HANDLES_ONLY_DROP: bool = #handles_only_drop;
                #[inline]
                fn trace(&self, tracer: &mut __fing::Tracer) {
                    let _ = &tracer;
                    #trace_body
                }
            }

            // SAFETY: size, alignment, identity and drop glue come from the compiler through
            // `Type::rust::<Self>`, offsets from `offset_of!`, Send/Sync from the compiler
            // (or structurally from the parts, for a generic type); each itab's conversion
            // is a plain unsizing cast that compiles only if `Self` implements the trait.
            #[automatically_derived]
            unsafe impl #impl_g __fing::Typed for #name #ty_g #where_c {
                const TYPE: &'static __fing::Type = &unsafe { __fing::Type::rust::<Self>(__fing::Kind::#kind) }
                    .named(::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)))
                    .with_args(&[#(#args),*])
                    .with_fields(&[#(#field_descs),*])
                    .with_variants(&[#(#variant_names),*])
                    .with_send_sync(#send_sync)
                    .with_implements(&[#(#itabs),*])
                    #elem;
            }

            #cast_impl
            #drop_guard
            #align_check
            #(#untraced_asserts)*
        };
    })
}
