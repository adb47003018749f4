use fing::{Gc, Trace};

#[derive(Trace)]
#[gc(pointer)]
struct Tintptr(Gc<i64>);

fn main() {}
