use fing::{Gc, Trace};

#[derive(Trace)]
struct Node {
    next: Option<Gc<Node>>,
}

// A Drop impl could read `next` after the object it points to was freed in the same cycle.
impl Drop for Node {
    fn drop(&mut self) {}
}

fn main() {}
