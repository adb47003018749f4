use std::rc::Rc;

use fing::Trace;

// `Rc` is deliberately not `Trace`: tracing through shared ownership could free live data.
#[derive(Trace)]
struct Node {
    shared: Rc<i32>,
}

fn main() {}
