#[fing::interface]
trait Closer: Send {
    fn close(&self);
}

fn main() {}
