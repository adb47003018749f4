//! A model-checked collector: random programs (allocate with links, relink through a
//! `GcCell`, clone, drop, set a finalizer that may resurrect its object into a global,
//! collect) run against fing and against a plain model of reachability and Go's finalizer
//! rules. After every collection the test checks, exactly:
//! - the finalizers that ran are the model's queued set: armed objects not reached from
//!   the roots, nor from the contents of an unmarked finalizable object (so A before B,
//!   and never one in a cycle through a finalizable object), each once;
//! - the destructors that ran are the model's freed set, each once (so no live object is
//!   freed, and garbage is freed exactly when the model says);
//! - every object still reachable has its contents and links intact.
//!
//! `FING_MODEL_CASES` sets the number of programs (default 48; `.ci/deep` runs many more).

#![allow(missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use fing::{Gc, GcCell, Heap, HeapConfig, Trace};
use proptest::prelude::*;

struct Token {
    id: u64,
    dropped: Arc<Mutex<Vec<u64>>>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.dropped.lock().unwrap().push(self.id);
    }
}

#[derive(Trace)]
struct Obj {
    id: u64,
    links: [GcCell<Option<Gc<Obj>>>; 2],
    #[gc(untraced)]
    token: Token,
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        links: [Option<usize>; 2],
    },
    Link {
        from: usize,
        slot: usize,
        to: Option<usize>,
    },
    Clone(usize),
    Drop(usize),
    SetFinalizer {
        at: usize,
        resurrect: bool,
    },
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    let idx = || proptest::option::of(0usize..8);
    prop_oneof![
        4 => (idx(), idx()).prop_map(|(a, b)| Op::Alloc { links: [a, b] }),
        3 => (0usize..8, 0usize..2, idx()).prop_map(|(from, slot, to)| Op::Link { from, slot, to }),
        1 => (0usize..8).prop_map(Op::Clone),
        3 => (0usize..8).prop_map(Op::Drop),
        2 => (0usize..8, any::<bool>()).prop_map(|(at, resurrect)| Op::SetFinalizer { at, resurrect }),
        2 => Just(Op::Collect),
    ]
}

#[derive(Default, Clone)]
struct ModelObj {
    links: [Option<u64>; 2],
    armed: Option<bool>, // Some(resurrect) while a finalizer is set
}

struct World {
    heap: Heap,
    roots: Vec<Gc<Obj>>,
    globals: Arc<Mutex<Vec<Gc<Obj>>>>,
    ran: Arc<Mutex<Vec<u64>>>,
    dropped: Arc<Mutex<Vec<u64>>>,
    next_id: u64,
    model: HashMap<u64, ModelObj>,
    model_globals: Vec<u64>,
}

impl World {
    fn new() -> World {
        let mut c = HeapConfig::default();
        c.gogc = None;
        World {
            heap: Heap::new(c),
            roots: Vec::new(),
            globals: Arc::new(Mutex::new(Vec::new())),
            ran: Arc::new(Mutex::new(Vec::new())),
            dropped: Arc::new(Mutex::new(Vec::new())),
            next_id: 1,
            model: HashMap::new(),
            model_globals: Vec::new(),
        }
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.roots.is_empty()).then(|| i % self.roots.len())
    }

    fn closure(&self, start: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<u64> = start.into_iter().collect();
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                todo.extend(self.model[&id].links.iter().flatten().copied());
            }
        }
        seen
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Alloc { links } => {
                let id = self.next_id;
                self.next_id += 1;
                let targets: Vec<Option<Gc<Obj>>> = links
                    .iter()
                    .map(|l| l.and_then(|i| self.pick(i)).map(|i| self.roots[i].clone()))
                    .collect();
                let model_links = [
                    targets[0].as_ref().map(|g| g.id),
                    targets[1].as_ref().map(|g| g.id),
                ];
                let mut t = targets.into_iter();
                let obj = self.heap.alloc(Obj {
                    id,
                    links: [
                        GcCell::new(t.next().flatten()),
                        GcCell::new(t.next().flatten()),
                    ],
                    token: Token {
                        id,
                        dropped: self.dropped.clone(),
                    },
                });
                self.model.insert(
                    id,
                    ModelObj {
                        links: model_links,
                        armed: None,
                    },
                );
                self.roots.push(obj);
            }
            Op::Link { from, slot, to } => {
                let (Some(f), to) = (self.pick(from), to.and_then(|t| self.pick(t))) else {
                    return;
                };
                let target = to.map(|t| self.roots[t].clone());
                let tid = target.as_ref().map(|g| g.id);
                self.roots[f].links[slot].set(target);
                let fid = self.roots[f].id;
                self.model.get_mut(&fid).unwrap().links[slot] = tid;
            }
            Op::Clone(i) => {
                if let Some(i) = self.pick(i) {
                    self.roots.push(self.roots[i].clone());
                }
            }
            Op::Drop(i) => {
                if let Some(i) = self.pick(i) {
                    self.roots.swap_remove(i);
                }
            }
            Op::SetFinalizer { at, resurrect } => {
                let Some(i) = self.pick(at) else { return };
                let id = self.roots[i].id;
                if self.model[&id].armed.is_some() {
                    assert!(
                        self.roots[i].set_finalizer(|_| ()).is_err(),
                        "finalizer already set"
                    );
                    return;
                }
                let ran = self.ran.clone();
                let globals = self.globals.clone();
                self.roots[i]
                    .set_finalizer(move |o: Gc<Obj>| {
                        ran.lock().unwrap().push(o.id);
                        if resurrect {
                            globals.lock().unwrap().push(o);
                        }
                    })
                    .unwrap();
                self.model.get_mut(&id).unwrap().armed = Some(resurrect);
            }
            Op::Collect => self.collect_and_check(),
        }
    }

    fn collect_and_check(&mut self) {
        // The model's cycle (Go's markfin and two-pass sweep).
        let root_ids: Vec<u64> = self
            .roots
            .iter()
            .map(|g| g.id)
            .chain(self.model_globals.iter().copied())
            .collect();
        let base = self.closure(root_ids);
        let fin_unmarked: Vec<u64> = self
            .model
            .iter()
            .filter(|(id, o)| o.armed.is_some() && !base.contains(id))
            .map(|(id, _)| *id)
            .collect();
        let children = fin_unmarked
            .iter()
            .flat_map(|id| self.model[id].links.iter().flatten().copied());
        let marked = self.closure(base.iter().copied().chain(children));
        let queued: BTreeSet<u64> = self
            .model
            .iter()
            .filter(|(id, o)| o.armed.is_some() && !marked.contains(id))
            .map(|(id, _)| *id)
            .collect();
        let freed: BTreeSet<u64> = self
            .model
            .keys()
            .filter(|id| !marked.contains(id) && !queued.contains(id))
            .copied()
            .collect();

        self.ran.lock().unwrap().clear();
        self.dropped.lock().unwrap().clear();
        self.heap.collect();
        fing::wait_finalizers();

        let ran: Vec<u64> = self.ran.lock().unwrap().clone();
        let ran_set: BTreeSet<u64> = ran.iter().copied().collect();
        assert_eq!(ran.len(), ran_set.len(), "a finalizer ran twice");
        assert_eq!(
            ran_set, queued,
            "finalizers that ran vs the model's queued set"
        );
        let dropped: Vec<u64> = self.dropped.lock().unwrap().clone();
        let dropped_set: BTreeSet<u64> = dropped.iter().copied().collect();
        assert_eq!(dropped.len(), dropped_set.len(), "a destructor ran twice");
        assert_eq!(dropped_set, freed, "objects freed vs the model's garbage");

        for id in &freed {
            self.model.remove(id);
        }
        for id in &queued {
            let o = self.model.get_mut(id).unwrap();
            if o.armed.take() == Some(true) {
                self.model_globals.push(*id);
            }
        }
        // Everything reachable is intact: ids and links as the model says.
        let globals = self.globals.lock().unwrap().clone();
        for g in self.roots.iter().chain(globals.iter()) {
            self.check_intact(g, &mut BTreeSet::new());
        }
    }

    fn check_intact(&self, g: &Gc<Obj>, seen: &mut BTreeSet<u64>) {
        let m = self
            .model
            .get(&g.id)
            .unwrap_or_else(|| panic!("reachable object {} was freed", g.id));
        assert_eq!(g.token.id, g.id, "object {} corrupted", g.id);
        if !seen.insert(g.id) {
            return;
        }
        for (slot, l) in g.links.iter().enumerate() {
            let real = l.borrow().clone();
            assert_eq!(
                real.as_ref().map(|x| x.id),
                m.links[slot],
                "links of {}",
                g.id
            );
            if let Some(x) = real {
                self.check_intact(&x, seen);
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("FING_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn fing_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
        }
        // Drop everything: every collection keeps agreeing with the model.
        w.roots.clear();
        w.globals.lock().unwrap().clear();
        w.model_globals.clear();
        for _ in 0..4 {
            w.collect_and_check();
        }
    }
}
