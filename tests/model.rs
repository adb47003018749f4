//! A model-checked collector: random programs over the vocabulary of
//! `support/model_engine.rs` (allocate objects, tiny objects and 16 KiB-aligned ones,
//! relink through a `GcCell` (also through a slice object of run-time length, and through objects of a type built
//! at run time), clone, drop, register handles globally, leave one in a
//! thread's `thread_local!` at its exit, set a plain, resurrecting or re-arming
//! finalizer, clear one, make, upgrade and drop weak handles, add
//! cleanups (with a handle as argument) and stop them, insert, look up, remove
//! and prune entries of a weak-keyed map (ephemerons), collect, do one step of a
//! cycle (the other operations then run inside the cycle, between its steps), wait for
//! finalizers (on the finalizer thread, or at safe points on a quarter of the programs'
//! heaps); every object's destructor takes a
//! lock mutators hold while allocating, may allocate, and may drop a registry entry) run
//! against fing and against a plain model of reachability and Go's finalizer rules; the
//! engine's docs list what each step checks.
//! Failing programs shrink to a minimal one, kept in `model.proptest-regressions`.
//!
//! `FING_MODEL_CASES` sets the number of programs (default 48; `.ci/deep` runs many more).

#![allow(missing_docs)]

#[path = "support/model_engine.rs"]
mod engine;

use engine::{Mode, Op, World};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    let idx = || proptest::option::of(0usize..8);
    let mode = prop_oneof![Just(Mode::Plain), Just(Mode::Resurrect), Just(Mode::Rearm)];
    prop_oneof![
        4 => (idx(), idx(), idx(), idx()).prop_map(|(a, b, leaf, unregister)| Op::Alloc {
            links: [a, b],
            leaf,
            unregister
        }),
        2 => Just(Op::AllocTiny),
        1 => idx().prop_map(|link| Op::AllocBig { link }),
        3 => (0usize..8, 0usize..2, idx()).prop_map(|(from, slot, to)| Op::Link { from, slot, to }),
        1 => (0usize..8, idx()).prop_map(|(from, to)| Op::Leaf { from, to }),
        1 => (0usize..8).prop_map(Op::Clone),
        1 => (0usize..8).prop_map(Op::Register),
        1 => (0usize..8).prop_map(Op::ThreadLocal),
        1 => (0usize..8).prop_map(Op::Map),
        1 => (0usize..8).prop_map(Op::DropMapped),
        3 => (0usize..8, any::<bool>()).prop_map(|(at, tiny)| Op::Drop { at, tiny }),
        1 => (0usize..8).prop_map(Op::DropBig),
        2 => (0usize..8, any::<bool>(), mode).prop_map(|(at, tiny, mode)| Op::SetFinalizer { at, tiny, mode }),
        1 => (0usize..8, any::<bool>()).prop_map(|(at, tiny)| Op::ClearFinalizer { at, tiny }),
        2 => Just(Op::Collect),
        1 => Just(Op::Wait),
        2 => (0usize..8, any::<bool>()).prop_map(|(at, tiny)| Op::Downgrade { at, tiny }),
        2 => (0usize..8, any::<bool>()).prop_map(|(at, tiny)| Op::Upgrade { at, tiny }),
        1 => (0usize..8, any::<bool>()).prop_map(|(at, tiny)| Op::DropWeak { at, tiny }),
        2 => (0usize..8, any::<bool>(), idx()).prop_map(|(at, tiny, arg)| Op::AddCleanup { at, tiny, arg }),
        1 => (0usize..8).prop_map(Op::StopCleanup),
        4 => prop_oneof![Just(0u32), Just(10), Just(100)].prop_map(Op::Step),
        2 => (0usize..8, idx(), idx(), idx(), any::<bool>()).prop_map(|(from, a, b, c, bare)| Op::LinkMany { from, to: [a, b, c], bare }),
        1 => Just(Op::AllocBuilt),
        1 => (1usize..4).prop_map(Op::Spare),
        2 => (0usize..8, 0usize..8).prop_map(|(from, to)| Op::TieSpare { from, to }),
        1 => (0usize..8).prop_map(Op::DropSpare),
        2 => (0usize..8, 0usize..2, idx()).prop_map(|(at, slot, to)| Op::SetBuilt { at, slot, to }),
        1 => (0usize..8).prop_map(Op::DropBuilt),
        2 => (0usize..8, 0usize..8).prop_map(|(key, value)| Op::MapInsert { key, value }),
        2 => (0usize..8).prop_map(Op::MapGet),
        1 => (0usize..8).prop_map(Op::MapRemove),
        1 => Just(Op::MapPrune),
    ]
}

fn cases() -> u32 {
    std::env::var("FING_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// One cycle runs at a time in the process, whichever heap it collects: a `collect()` on
/// one test's heap finishes the other's cycle in steps, which the model of that heap cannot
/// see. The tests of this file take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn fing_agrees_with_the_model(
        ops in proptest::collection::vec(op(), 1..60),
        safe_points in proptest::bool::weighted(0.25),
    ) {
        let _turn = turn();
        // A quarter of the programs run their finalizers at safe points.
        let mut w = if safe_points { World::with_safe_points() } else { World::new() };
        for op in &ops {
            w.apply(op);
        }
        // Drop everything: every collection keeps agreeing with the model until the
        // heap is empty.
        w.finish();
    }
}

/// Cases the model found in cycles run in steps, kept as plain tests.
#[test]
fn cycles_in_steps_regressions() {
    let alloc = || Op::Alloc {
        links: [None, None],
        leaf: None,
        unregister: None,
    };
    // A cell counted in one cycle and skipped in the next (its object marked before the
    // count reached it), stamped with the third's epoch: its self-loop outlived a
    // `collect()` (mgcmark's "Cell stamps").
    let stale_stamp = vec![
        Op::AllocBuilt,
        alloc(),
        Op::Link {
            from: 0,
            slot: 0,
            to: Some(0),
        },
        Op::Step(100),
        Op::Step(0),
    ];
    // A tiny object with a cleanup, reachable at the first step, its last handle dropped
    // between steps: the cycle keeps it (it was in the snapshot), whichever step counted
    // it (mfree shades what it leaves to the collector).
    let dropped_inside = vec![
        alloc(),
        Op::LinkMany {
            from: 0,
            to: [None; 3],
            bare: false,
        },
        Op::AllocTiny,
        Op::AddCleanup {
            at: 0,
            tiny: true,
            arg: None,
        },
        Op::Step(0),
        Op::Drop { at: 0, tiny: true },
        Op::Step(10),
    ];
    // A destructor run at count zero takes a registry entry; a cycle in steps starts and
    // `collect()` abandons it: the model took the entry at each of the two snapshots, one
    // more than the destructor did, and called an object still registered garbage.
    let snapshot_twice = vec![
        alloc(),
        alloc(),
        Op::Register(5),
        Op::Alloc {
            links: [None, None],
            leaf: None,
            unregister: Some(0),
        },
        Op::Register(4),
        Op::Drop { at: 4, tiny: false },
        Op::Drop { at: 1, tiny: false },
        Op::Step(0),
        Op::Collect,
    ];
    let _turn = turn();
    for ops in [stale_stamp, dropped_inside, snapshot_twice] {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
        }
        w.finish();
    }
}
