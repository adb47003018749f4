//! The Computer Language Benchmarks Game's binary-trees on fing's heap: one mutator
//! thread, depth from the command line (default 10), output in the game's exact format.
//!
//! `cargo run --release --example binary_trees -- 18`

use fing::{Gc, Trace};

#[derive(Trace)]
struct Node {
    left: Option<Gc<Node>>,
    right: Option<Gc<Node>>,
}

fn bottom_up(depth: u32) -> Gc<Node> {
    if depth == 0 {
        Gc::new(Node {
            left: None,
            right: None,
        })
    } else {
        Gc::new(Node {
            left: Some(bottom_up(depth - 1)),
            right: Some(bottom_up(depth - 1)),
        })
    }
}

fn check(n: &Node) -> u32 {
    match (&n.left, &n.right) {
        (Some(l), Some(r)) => 1 + check(l) + check(r),
        _ => 1,
    }
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let min_depth = 4;
    let max_depth = n.max(min_depth + 2);
    {
        let stretch = max_depth + 1;
        println!(
            "stretch tree of depth {stretch}\t check: {}",
            check(&bottom_up(stretch))
        );
    }
    let long_lived = bottom_up(max_depth);
    for d in (min_depth..=max_depth).step_by(2) {
        let iterations = 1u32 << (max_depth - d + min_depth);
        let mut chk = 0;
        for _ in 0..iterations {
            chk += check(&bottom_up(d));
        }
        println!("{iterations}\t trees of depth {d}\t check: {chk}");
    }
    println!(
        "long lived tree of depth {max_depth}\t check: {}",
        check(&long_lived)
    );
    if std::env::var_os("FING_STATS").is_some() {
        eprintln!("{:#?}", fing::stats());
    }
}
