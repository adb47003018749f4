use fing::{Gc, Trace};

#[derive(Trace)]
#[gc(pointer)]
#[repr(transparent)]
struct Twice(Gc<i64>, Gc<i64>);

fn main() {}
