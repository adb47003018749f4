//! Object types for the finalizer tests, shared by `tests/finalizers.rs` and the fuzz
//! target `fuzz/fuzz_targets/set_finalizer.rs`: an interface and a type implementing it,
//! a named pointer newtype, a noscan pair (for interior pointers), and a type that is not
//! `Sync` (row 11).

// Shared by two crates, each of which uses a part.
#![allow(unreachable_pub, dead_code)]

use fing::{Gc, GcCell, Trace};

#[fing::interface]
pub trait Closer: Send + Sync {
    fn close(&self) -> i64;
}

#[derive(Trace)]
#[gc(implements(Closer))]
pub struct File {
    pub fd: i64,
    pub next: GcCell<Option<Gc<File>>>,
}

impl Closer for File {
    fn close(&self) -> i64 {
        self.fd
    }
}

/// Go's `type Tintptr *int64`: a named pointer type.
#[derive(Trace)]
#[gc(pointer)]
#[repr(transparent)]
pub struct Tintptr(pub Gc<i64>);

#[derive(Trace)]
#[repr(C)]
pub struct Pair {
    pub a: [u64; 4],
    pub b: [u64; 4],
}

#[derive(Trace)]
pub struct NotSync {
    #[gc(untraced)]
    pub cell: std::cell::Cell<i32>,
}
