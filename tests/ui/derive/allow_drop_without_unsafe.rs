// `#[gc(unsafe_allow_drop)]` alone does not lift the ban on `Drop`: it takes an
// `unsafe impl fing::AllowDrop`.
use fing::{Gc, Trace};

#[derive(Trace)]
#[gc(unsafe_allow_drop)]
struct Node {
    next: Option<Gc<Node>>,
}

impl Drop for Node {
    fn drop(&mut self) {}
}

fn main() {}
