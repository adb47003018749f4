// A shared borrow of a `GcCell` stays on its thread (as `RefCell`'s `Ref` does): the
// same-thread checks keep a per-thread list of the cells a thread reads.
use fing::{GcCell, GcRef};

fn assert_send<T: Send>() {}

fn main() {
    assert_send::<GcRef<'static, u8>>();
    let _ = GcCell::new(0u8);
}
