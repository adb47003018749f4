use fing::Trace;

#[fing::interface]
trait Closer: Send + Sync {
    fn close(&self);
}

#[derive(Trace)]
#[gc(implements(Closer))]
struct File {
    fd: i32,
}

fn main() {}
