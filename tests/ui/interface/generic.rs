#[fing::interface]
trait Sink<T>: Send + Sync {
    fn put(&self, x: T);
}

fn main() {}
