//! binary-trees written the idiomatic way for each collector a Rust user would pick
//! instead of fing (and with `Box`), for `.ci/bench-binary-trees`, which runs each in its
//! own process to measure wall time and peak RSS.
//!
//! `cargo run --release --example binary_trees_peers -- <box|gc|dumpster|rust-cc|gc-arena> 18`

// The `gc` crate's derive emits its impls inside a constant.
#![allow(non_local_definitions)]

use std::cell::RefCell;

/// The program, shared by every implementation: `tree(d)` builds a tree of depth `d` and
/// returns its check; `keep(d)` builds the long-lived tree; `long()` checks it.
fn drive(
    n: u32,
    tree: &mut dyn FnMut(u32) -> u32,
    keep: &mut dyn FnMut(u32),
    long: &mut dyn FnMut() -> u32,
) {
    let min_depth = 4;
    let max_depth = n.max(min_depth + 2);
    let stretch = max_depth + 1;
    println!("stretch tree of depth {stretch}\t check: {}", tree(stretch));
    keep(max_depth);
    for d in (min_depth..=max_depth).step_by(2) {
        let iterations = 1u32 << (max_depth - d + min_depth);
        let mut chk = 0;
        for _ in 0..iterations {
            chk += tree(d);
        }
        println!("{iterations}\t trees of depth {d}\t check: {chk}");
    }
    println!("long lived tree of depth {max_depth}\t check: {}", long());
}

/// `drive` for an implementation with a `make` and a `check`.
macro_rules! drive_with {
    ($n:expr, $m:ident) => {{
        let kept = RefCell::new(None);
        drive(
            $n,
            &mut |d| $m::check(&$m::make(d)),
            &mut |d| *kept.borrow_mut() = Some($m::make(d)),
            &mut || $m::check(kept.borrow().as_ref().expect("kept")),
        )
    }};
}

mod boxed {
    pub(crate) struct Node(Option<(Box<Node>, Box<Node>)>);
    pub(crate) fn make(d: u32) -> Box<Node> {
        Box::new(Node((d > 0).then(|| (make(d - 1), make(d - 1)))))
    }
    pub(crate) fn check(n: &Node) -> u32 {
        n.0.as_ref().map_or(1, |(l, r)| 1 + check(l) + check(r))
    }
}

mod rustgc {
    use gc::{Finalize, Gc, Trace};
    #[derive(Trace, Finalize)]
    pub(crate) struct Node {
        left: Option<Gc<Node>>,
        right: Option<Gc<Node>>,
    }
    pub(crate) fn make(d: u32) -> Gc<Node> {
        if d == 0 {
            Gc::new(Node {
                left: None,
                right: None,
            })
        } else {
            Gc::new(Node {
                left: Some(make(d - 1)),
                right: Some(make(d - 1)),
            })
        }
    }
    pub(crate) fn check(n: &Node) -> u32 {
        match (&n.left, &n.right) {
            (Some(l), Some(r)) => 1 + check(l) + check(r),
            _ => 1,
        }
    }
}

mod dump {
    use dumpster::unsync::Gc;
    use dumpster::Trace;
    #[derive(Trace)]
    pub(crate) struct Node {
        left: Option<Gc<Node>>,
        right: Option<Gc<Node>>,
    }
    pub(crate) fn make(d: u32) -> Gc<Node> {
        if d == 0 {
            Gc::new(Node {
                left: None,
                right: None,
            })
        } else {
            Gc::new(Node {
                left: Some(make(d - 1)),
                right: Some(make(d - 1)),
            })
        }
    }
    pub(crate) fn check(n: &Node) -> u32 {
        match (&n.left, &n.right) {
            (Some(l), Some(r)) => 1 + check(l) + check(r),
            _ => 1,
        }
    }
}

mod cc {
    use rust_cc::{Cc, Finalize, Trace};
    #[derive(Trace, Finalize)]
    pub(crate) struct Node {
        left: Option<Cc<Node>>,
        right: Option<Cc<Node>>,
    }
    pub(crate) fn make(d: u32) -> Cc<Node> {
        if d == 0 {
            Cc::new(Node {
                left: None,
                right: None,
            })
        } else {
            Cc::new(Node {
                left: Some(make(d - 1)),
                right: Some(make(d - 1)),
            })
        }
    }
    pub(crate) fn check(n: &Node) -> u32 {
        match (&n.left, &n.right) {
            (Some(l), Some(r)) => 1 + check(l) + check(r),
            _ => 1,
        }
    }
}

mod arena {
    use gc_arena::{Arena, Collect, Gc, Mutation, Rootable};
    #[derive(Collect)]
    #[collect(no_drop)]
    pub(crate) struct Node<'gc> {
        left: Option<Gc<'gc, Node<'gc>>>,
        right: Option<Gc<'gc, Node<'gc>>>,
    }
    fn make<'gc>(mc: &Mutation<'gc>, d: u32) -> Gc<'gc, Node<'gc>> {
        if d == 0 {
            Gc::new(
                mc,
                Node {
                    left: None,
                    right: None,
                },
            )
        } else {
            Gc::new(
                mc,
                Node {
                    left: Some(make(mc, d - 1)),
                    right: Some(make(mc, d - 1)),
                },
            )
        }
    }
    fn check(n: &Node<'_>) -> u32 {
        match (&n.left, &n.right) {
            (Some(l), Some(r)) => 1 + check(l) + check(r),
            _ => 1,
        }
    }
    #[derive(Collect)]
    #[collect(no_drop)]
    pub(crate) struct Root<'gc> {
        long: Option<Gc<'gc, Node<'gc>>>,
    }
    pub(crate) type Heap = Arena<Rootable![Root<'_>]>;
    pub(crate) fn new() -> Heap {
        Arena::new(|_| Root { long: None })
    }
    /// One tree per `mutate` call; the arena collects its debt between calls.
    pub(crate) fn make_and_check(a: &mut Heap, d: u32) -> u32 {
        let c = a.mutate(|mc, _| check(&make(mc, d)));
        a.collect_debt();
        c
    }
    pub(crate) fn set_long(a: &mut Heap, d: u32) {
        a.mutate_root(|mc, root| root.long = Some(make(mc, d)));
        a.collect_debt();
    }
    pub(crate) fn check_long(a: &mut Heap) -> u32 {
        a.mutate(|_, root| check(root.long.as_ref().expect("set")))
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "box".into());
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    match which.as_str() {
        "box" => drive_with!(n, boxed),
        "gc" => drive_with!(n, rustgc),
        "dumpster" => drive_with!(n, dump),
        "rust-cc" => drive_with!(n, cc),
        "gc-arena" => {
            let a = RefCell::new(arena::new());
            drive(
                n,
                &mut |d| arena::make_and_check(&mut a.borrow_mut(), d),
                &mut |d| arena::set_long(&mut a.borrow_mut(), d),
                &mut || arena::check_long(&mut a.borrow_mut()),
            )
        }
        other => {
            eprintln!("unknown implementation {other}: box, gc, dumpster, rust-cc, gc-arena");
            std::process::exit(2);
        }
    }
}
