use fing::{Gc, Trace};

#[derive(Trace)]
struct File {
    fd: i32,
}

#[derive(Trace)]
struct Socket {
    fd: i32,
}

fn main() {
    let f = Gc::new(File { fd: 3 });
    // Row 9 at compile time: the parameter must be the object's handle type.
    let _ = f.set_finalizer(|s: Gc<Socket>| drop(s));
}
