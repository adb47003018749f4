use fing::Trace;

#[derive(Trace)]
#[gc(no_scan)]
struct Plain {
    #[gc(skip)]
    x: u32,
}

fn main() {}
