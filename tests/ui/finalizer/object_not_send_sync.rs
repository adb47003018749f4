use std::cell::Cell;

use fing::{Gc, Trace};

#[derive(Trace)]
struct Counter {
    #[gc(untraced)]
    hits: Cell<u32>,
}

fn main() {
    let c = Gc::new(Counter { hits: Cell::new(0) });
    // Row 11 at compile time: the object is used on the finalizer thread.
    let _ = c.set_finalizer(|c| drop(c));
}
