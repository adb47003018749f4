use fing::{Gc, Trace};

#[derive(Trace)]
struct Inner {
    link: Option<Gc<Inner>>,
}

// `Inner` holds handles (through a named type the syntax cannot see into): refused.
#[derive(Trace)]
struct Outer {
    #[gc(untraced)]
    inner: Inner,
}

fn main() {}
