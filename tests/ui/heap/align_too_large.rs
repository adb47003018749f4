// A type aligned to more than `fing::MAX_ALIGN` (16 MiB) cannot be allocated.
use fing::{Gc, Trace};

#[derive(Trace)]
#[repr(align(33554432))]
struct Huge {
    x: u8,
}

fn main() {
    let _ = Gc::new(Huge { x: 1 });
}
