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

pub use gc_core::*;
pub use gc_derive::{interface, Trace};
