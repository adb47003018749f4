#[fing::interface]
trait Closer {
    fn close(&self);
}

fn main() {}
