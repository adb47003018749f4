use fing::{Gc, Trace};

#[derive(Trace)]
struct Holder {
    #[gc(untraced)]
    hidden: Option<Gc<i32>>,
}

fn main() {}
