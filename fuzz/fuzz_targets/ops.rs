//! Random programs from bytes over the model test's vocabulary (`Op::decode`), checked
//! step by step against the reference model of `tests/support/model_engine.rs`: a
//! wrongly freed object, a lost or doubled finalizer or destructor, or an ordering
//! violation panics, which libFuzzer reports as a crash with the input that caused it.
#![no_main]

#[path = "../../tests/support/model_engine.rs"]
mod engine;

use std::sync::OnceLock;

use fing::{Heap, HeapConfig};
use libfuzzer_sys::fuzz_target;

/// One heap for the whole run (heaps live for the process); `World::on` keeps what
/// earlier inputs left (objects under finalizer cycles) out of each new model.
fn heap() -> Heap {
    static HEAP: OnceLock<Heap> = OnceLock::new();
    HEAP.get_or_init(|| {
        let mut c = HeapConfig::default();
        c.gogc = None;
        Heap::new(c)
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let mut w = engine::World::on(heap());
    let mut bytes = data;
    let mut n = 0;
    while let Some(op) = engine::Op::decode(&mut bytes) {
        w.apply(&op);
        n += 1;
        if n == 200 {
            break;
        }
    }
    w.finish();
});
