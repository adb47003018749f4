//! fing: a garbage-collected heap for Rust with Go-style, reflection-checked finalizers.
//!
//! Users depend on this crate alone. It re-exports the reflection model (gc-types), the
//! macros (gc-derive) and the heap (gc-core). See the README for what works today and
//! DESIGN §7 for the API contract.
//!
//! ```
//! use fing::{Gc, Kind, Trace, Type, Value};
//!
//! #[derive(Trace)]
//! struct File { fd: i32, next: Option<Gc<File>> }
//!
//! let ty = Type::of::<Gc<File>>();
//! assert_eq!(ty.kind(), Kind::Pointer);
//! assert_eq!(ty.to_string(), "Gc<rust_out::File>");
//! assert_eq!(ty.elem().unwrap().size(), std::mem::size_of::<File>());
//!
//! static ROOT: File = File { fd: 0, next: None };
//! let v = Value::from(Gc::from_static(&ROOT));
//! assert_eq!(v.type_of().to_string(), "Gc<rust_out::File>");
//! ```
//!
//! Finalizers, typed and dynamic (the README's example):
//!
//! ```
//! use fing::{Func, Gc, Outcome, Trace, Value};
//!
//! #[fing::interface]
//! pub trait Closer: Send + Sync { fn close(&self); }
//!
//! #[derive(Trace)]
//! #[gc(implements(Closer))]
//! struct File { fd: i32, next: Option<Gc<File>> }
//!
//! impl Closer for File { fn close(&self) {} }
//!
//! # fn main() -> Result<(), fing::FinalizerError> {
//! let f = Gc::new(File { fd: 3, next: None });
//! f.set_finalizer(|f: Gc<File>| f.close())?;
//! let g = Gc::new(File { fd: 4, next: None });
//! let out = fing::set_finalizer(Value::from(g.clone()), Func::new(|c: Gc<dyn Closer>| c.close()))?;
//! assert_eq!(out, Outcome::Set);
//! drop((f, g));
//! fing::collect();
//! fing::wait_finalizers();
//! assert!(fing::stats().finalizers_run >= 2);
//! # Ok(())
//! # }
//! ```

pub use gc_core::*;
pub use gc_derive::{interface, Trace};
