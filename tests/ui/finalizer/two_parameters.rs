use fing::{Gc, Trace};

#[derive(Trace)]
struct File {
    fd: i32,
}

fn main() {
    let f = Gc::new(File { fd: 3 });
    // Row 8 at compile time: exactly one parameter.
    let _ = f.set_finalizer(|a: Gc<File>, b: i32| drop((a, b)));
}
