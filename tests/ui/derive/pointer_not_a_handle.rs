use fing::Trace;

#[derive(Trace)]
#[gc(pointer)]
#[repr(transparent)]
struct NotAPointer(i64);

fn main() {}
