use fing::Trace;

#[derive(Trace)]
struct Boxed<T> {
    #[gc(untraced)]
    value: Vec<T>,
}

fn main() {}
