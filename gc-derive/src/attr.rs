//! Parsing of `#[gc(...)]` attributes into typed options. Unknown keys and repeated keys
//! are errors spanned at the key.

use syn::spanned::Spanned;
use syn::{Attribute, Path};

/// Errors gathered while parsing and checking; reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub(crate) fn error(&mut self, span: impl Spanned, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span.span(), msg));
    }
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Options on the container.
#[derive(Default)]
pub(crate) struct Container {
    pub(crate) krate: Option<Path>,
    pub(crate) implements: Vec<Path>,
    pub(crate) pointer: Option<proc_macro2::Span>,
    pub(crate) allow_drop: bool,
}

/// Options on a field.
#[derive(Default)]
pub(crate) struct FieldOpts {
    pub(crate) untraced: Option<proc_macro2::Span>,
}

fn is_gc(a: &Attribute) -> bool {
    a.path().is_ident("gc")
}

pub(crate) fn container(attrs: &[Attribute], errs: &mut Errors) -> Container {
    let mut c = Container::default();
    for a in attrs.iter().filter(|a| is_gc(a)) {
        let r = a.parse_nested_meta(|m| {
            if m.path.is_ident("crate") {
                let s: syn::LitStr = m.value()?.parse()?;
                if c.krate.is_some() {
                    return Err(m.error("duplicate `crate`"));
                }
                c.krate = Some(s.parse()?);
            } else if m.path.is_ident("implements") {
                m.parse_nested_meta(|t| {
                    c.implements.push(t.path.clone());
                    Ok(())
                })?;
            } else if m.path.is_ident("pointer") {
                if c.pointer.is_some() {
                    return Err(m.error("duplicate `pointer`"));
                }
                c.pointer = Some(m.path.span());
            } else if m.path.is_ident("unsafe_allow_drop") {
                if c.allow_drop {
                    return Err(m.error("duplicate `unsafe_allow_drop`"));
                }
                c.allow_drop = true;
            } else if m.path.is_ident("untraced") {
                return Err(m.error("`untraced` goes on a field, not on the type"));
            } else {
                return Err(m.error(
                    "unknown gc attribute; expected `crate = \"...\"`, `implements(...)`, \
                     `pointer` or `unsafe_allow_drop`",
                ));
            }
            Ok(())
        });
        if let Err(e) = r {
            errs.push(e);
        }
    }
    c
}

pub(crate) fn field(attrs: &[Attribute], errs: &mut Errors) -> FieldOpts {
    let mut f = FieldOpts::default();
    for a in attrs.iter().filter(|a| is_gc(a)) {
        let r = a.parse_nested_meta(|m| {
            if m.path.is_ident("untraced") {
                if f.untraced.is_some() {
                    return Err(m.error("duplicate `untraced`"));
                }
                f.untraced = Some(m.path.span());
                Ok(())
            } else {
                Err(m.error("unknown gc field attribute; expected `untraced`"))
            }
        });
        if let Err(e) = r {
            errs.push(e);
        }
    }
    f
}

/// `crate = "..."`, from `#[fing::interface(crate = "...")]` arguments.
pub(crate) fn interface_args(args: proc_macro2::TokenStream) -> syn::Result<Option<Path>> {
    let mut krate = None;
    let parser = syn::meta::parser(|m| {
        if m.path.is_ident("crate") {
            let s: syn::LitStr = m.value()?.parse()?;
            krate = Some(s.parse()?);
            Ok(())
        } else {
            Err(m.error("unknown interface argument; expected `crate = \"...\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    Ok(krate)
}

pub(crate) fn default_crate() -> Path {
    syn::parse_quote!(::fing)
}
