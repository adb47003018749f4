use std::rc::Rc;

use fing::{Gc, Trace};

#[derive(Trace)]
struct File {
    fd: i32,
}

fn main() {
    let f = Gc::new(File { fd: 3 });
    let local = Rc::new(0);
    // The finalizer runs on the finalizer thread: it must be Send.
    let _ = f.set_finalizer(move |_| drop(local));
}
