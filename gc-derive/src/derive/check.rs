//! Check: turns the `DeriveInput` and its `#[gc(...)]` and `#[repr(...)]` attributes into
//! the checked [`Input`], or into every error found.
//!
//! Owns all of the derive's diagnostics. Errors are gathered in `attr::Errors` and
//! reported together, each spanned at its cause, in a fixed order (container attributes,
//! lifetime parameters, `repr(packed)`, field attributes, a union, untraced fields that
//! mention handles, `#[gc(pointer)]` misuse); the trybuild cases under `tests/ui` hold
//! the messages, their spans and that order. Nothing is emitted unless the whole input
//! passed: an `Input` is only built when no error was recorded, which is what gives it
//! the invariants listed in `model`.

use proc_macro2::Span;
use quote::format_ident;
use syn::visit::Visit;
use syn::{Attribute, Data as SynData, DeriveInput, Fields, Ident, Member, Type};

use super::model::{Data, Field, Input, Options, Style, Variant};
use crate::attr::{self, Errors};

pub(super) fn check(input: DeriveInput) -> syn::Result<Input> {
    let mut errs = Errors::default();
    let opts = attr::container(&input.attrs, &mut errs);
    let name = input.ident;

    if let Some(lt) = input.generics.lifetimes().next() {
        errs.error(
            lt,
            "#[derive(Trace)] types must be 'static: a heap object outlives every borrow, so \
             it cannot have lifetime parameters",
        );
    }
    reject_packed(&input.attrs, &mut errs);
    let transparent = is_transparent(&input.attrs);

    let data = match &input.data {
        SynData::Struct(s) => Data::Struct(fields(&s.fields, &name, &mut errs).1),
        SynData::Enum(e) => Data::Enum(
            e.variants
                .iter()
                .map(|v| {
                    let (style, fields) = fields(&v.fields, &name, &mut errs);
                    Variant {
                        ident: v.ident.clone(),
                        style,
                        fields,
                    }
                })
                .collect(),
        ),
        SynData::Union(u) => {
            errs.error(
                u.union_token,
                "#[derive(Trace)] cannot be used on a union: the collector could not tell which \
                 field holds a handle",
            );
            // Never emitted (the error above stops it); checked on as a struct without
            // fields, so that the checks below still report what they find.
            Data::Struct(Vec::new())
        }
    };

    let type_params: Vec<Ident> = input
        .generics
        .type_params()
        .map(|t| t.ident.clone())
        .collect();
    for f in data.fields() {
        check_untraced(f, &type_params, &mut errs);
    }
    if let Some(span) = opts.pointer {
        check_pointer(span, &data, transparent, &opts, &mut errs);
    }
    errs.finish()?;

    Ok(Input {
        name,
        generics: input.generics,
        type_params,
        opts: Options {
            krate: opts.krate.unwrap_or_else(attr::default_crate),
            implements: opts.implements,
            pointer: opts.pointer.is_some(),
            allow_drop: opts.allow_drop,
        },
        data,
    })
}

/// Reports each `#[repr(...)]` that includes `packed`: tracing takes references to fields.
fn reject_packed(attrs: &[Attribute], errs: &mut Errors) {
    for a in attrs {
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
}

/// Is there a `#[repr(transparent)]` (on its own: the compiler refuses it with anything
/// else)?
fn is_transparent(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("repr") && a.parse_args::<Ident>().is_ok_and(|i| i == "transparent")
    })
}

/// The fields of a struct or of one variant, with their `#[gc(...)]` options; `name` is
/// the derived type's, to tell recursive fields.
fn fields(fields: &Fields, name: &Ident, errs: &mut Errors) -> (Style, Vec<Field>) {
    let style = match fields {
        Fields::Named(_) => Style::Named,
        Fields::Unnamed(_) => Style::Tuple,
        Fields::Unit => Style::Unit,
    };
    let fields = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let opts = attr::field(&f.attrs, errs);
            let (member, field_name) = match &f.ident {
                Some(id) => (Member::Named(id.clone()), id.to_string()),
                None => (Member::Unnamed(i.into()), i.to_string()),
            };
            Field {
                member,
                binding: format_ident!("__f{}", i),
                name: field_name,
                recursive: mentions_itself(&f.ty, name),
                ty: f.ty.clone(),
                untraced: opts.untraced,
            }
        })
        .collect();
    (style, fields)
}

/// An untraced field must not name a handle type, a generic parameter or `Self`.
fn check_untraced(f: &Field, type_params: &[Ident], errs: &mut Errors) {
    let Some(span) = f.untraced else {
        return;
    };
    let mut m = Mentions {
        generics: type_params,
        found: None,
    };
    m.visit_type(&f.ty);
    if let Some((at, what)) = m.found {
        let mut e = syn::Error::new(
            span,
            format!(
                "#[gc(untraced)] field `{}` mentions {what}: an untraced field must hold no handles",
                f.name
            ),
        );
        e.combine(syn::Error::new(at, "mentioned here"));
        errs.push(e);
    }
}

/// `#[gc(pointer)]` (written at `span`): a `#[repr(transparent)]` struct with exactly one,
/// traced, field, and no interfaces.
fn check_pointer(
    span: Span,
    data: &Data,
    transparent: bool,
    opts: &attr::Container,
    errs: &mut Errors,
) {
    match data {
        Data::Struct(fields) if fields.len() == 1 => {
            if !transparent {
                errs.error(span, "#[gc(pointer)] needs #[repr(transparent)]: the newtype must have the representation of its handle");
            } else if fields[0].untraced.is_some() {
                errs.error(span, "#[gc(pointer)] field cannot be untraced");
            }
        }
        _ => errs.error(
            span,
            "#[gc(pointer)] needs a struct with exactly one field, a `Gc<T>`",
        ),
    }
    if !opts.implements.is_empty() {
        errs.error(span, "#[gc(pointer)] types cannot implement interfaces (as Go's named pointer types have no methods)");
    }
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
/// not: a handle's constants do not depend on what it points to. Mutual recursion through
/// two derived types is not seen: the compiler reports it.
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
