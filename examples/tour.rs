//! The tour: what fing can tell about your types today, read top to bottom.
//!
//! fing's finalizers check, at run time, that a finalizer's parameter can take the
//! object: Go's `runtime.SetFinalizer` rules. Those checks stand on the reflection model
//! this tour walks through: derived type descriptors, interfaces, named pointer types,
//! Go's parameter rules, function values called through frames, and types an interpreter
//! builds at run time; then the heap those types live in: allocation, a collection, and
//! its statistics; then finalizers: typed, dynamic, through an interface, in A-before-B
//! order, on tiny objects, what each bad call returns; weak handles and cleanups; and
//! the counters at the end.

use fing::reflect;
use fing::rules::{finalizer_param, ParamMatch};
use std::sync::{Arc, Mutex};

use fing::{
    Frame, FrameFn, FrameLayout, Func, Gc, GcCell, Heap, HeapConfig, Trace, Type, TypeBuilder,
    Typed, Value,
};

/// Something that can be closed: finalizers may take `Gc<dyn Closer>`.
#[fing::interface]
pub trait Closer: Send + Sync {
    /// Closes it; returns the descriptor it closed.
    fn close(&self) -> i32;
}

/// A file: a descriptor and a link to the next open file (C layout, so that `next` sits
/// inside the object, not at its start).
#[derive(Debug, Trace)]
#[gc(implements(Closer))]
#[repr(C)]
pub struct File {
    fd: i32,
    next: Option<Gc<File>>,
}

impl Closer for File {
    fn close(&self) -> i32 {
        self.fd
    }
}

/// Plain data: no handles, so the collector never scans it (noscan).
#[derive(Debug, Trace)]
pub struct Stat {
    size: u64,
    name: String,
}

/// Go's `type Tintptr *int`: a named pointer type.
#[derive(Debug, Trace)]
#[gc(pointer)]
#[repr(transparent)]
pub struct Tintptr(Gc<i64>);

fn describe(t: &'static Type) {
    println!(
        "  {:<34} kind {:<9} size {:>3} align {:>2} {:<7} {}",
        t.to_string(),
        t.kind().to_string(),
        t.size(),
        t.align(),
        if t.is_noscan() { "noscan" } else { "scan" },
        if t.is_send_sync() {
            "Send+Sync"
        } else {
            "not Send+Sync"
        },
    );
}

fn rule(obj: &'static Type, param: &'static Type) {
    let verdict = match finalizer_param(obj, param) {
        Some(ParamMatch::Identical) => "ok: identical".to_string(),
        Some(ParamMatch::AssignablePointer) => "ok: assignable pointer".to_string(),
        Some(ParamMatch::EmptyInterface) => "ok: empty interface".to_string(),
        Some(ParamMatch::Interface(_)) => "ok: implements the interface".to_string(),
        None => format!("cannot pass {obj} to finalizer fn({param})"),
    };
    println!("  object {obj:<18} finalizer fn({param}): {verdict}");
}

static STDIN: File = File { fd: 0, next: None };

fn main() {
    println!("1. Descriptors, derived at compile time:");
    for t in [
        File::TYPE,
        Gc::<File>::TYPE,
        Stat::TYPE,
        Tintptr::TYPE,
        Gc::<dyn Closer>::TYPE,
        Value::TYPE,
        <fn(Gc<File>) -> [u8; 32]>::TYPE,
    ] {
        describe(t);
    }

    println!("\n2. Go's finalizer parameter rules (row 9 of set_finalizer):");
    let file = Gc::<File>::TYPE;
    rule(file, file);
    rule(Gc::<i64>::TYPE, Tintptr::TYPE);
    rule(file, Value::TYPE);
    rule(file, Gc::<dyn Closer>::TYPE);
    rule(file, Gc::<Stat>::TYPE);

    println!("\n3. Frames, sized Go's way (argument words + aligned results):");
    for sig in [
        <fn(Gc<File>)>::TYPE,
        <fn(Gc<File>) -> [u8; 32]>::TYPE,
        <fn(Value) -> (u8, u64)>::TYPE,
    ] {
        let l = FrameLayout::of(sig).expect("a func type");
        println!(
            "  {sig:<34} args {:>2} + results {:>2} = frame {:>2}",
            l.args_size, l.results_size, l.size
        );
    }

    println!("\n4. Function values, called through a frame:");
    let close = Func::new(|c: Gc<dyn Closer>| c.close());
    println!("  {close:?}");
    let read_fd = Func::new(|f: Gc<File>| f.fd + 100);
    let out = read_fd
        .call(vec![Value::from(Gc::from_static(&STDIN))])
        .expect("argument types match");
    println!("  fn(Gc<File>) on stdin returned {:?}", out[0]);

    println!("\n5. An interpreter's own types and functions, built at run time:");
    let node = TypeBuilder::structure(Some("script.Node"))
        .field("value", i64::TYPE)
        .field("file", Gc::<File>::TYPE)
        .build();
    describe(node);
    let sig = TypeBuilder::func(&[Gc::<File>::TYPE], &[i64::TYPE], false);
    struct ScriptFd;
    impl FrameFn for ScriptFd {
        fn call(self: Box<Self>, frame: &mut Frame<'_>) {
            let f = frame
                .take_arg::<Gc<File>>(0)
                .expect("parameter 0 is a Gc<File>");
            frame
                .set_result(0, i64::from(f.fd) - 1)
                .expect("result 0 is an i64");
        }
    }
    let script = Func::from_frame_fn(sig, ScriptFd);
    let out = script
        .call(vec![Value::from(Gc::from_static(&STDIN))])
        .expect("argument types match");
    println!("  script {sig} returned {:?}", out[0]);
    script_objects();

    println!("\n6. The heap: a ring of files, dropped and collected:");
    let mut config = HeapConfig::default();
    config.gogc = None; // collect only when asked, so the numbers below are exact
    let heap = Heap::new(config);
    let first = heap.alloc(Ring {
        fd: 3,
        next: GcCell::new(None),
    });
    let mut last = first.clone();
    for fd in 4..1003 {
        let f = heap.alloc(Ring {
            fd,
            next: GcCell::new(None),
        });
        last.next.set(Some(f.clone()));
        last = f;
    }
    last.next.set(Some(first.clone())); // close the ring: a cycle
    println!(
        "  allocated: 1000 files, {} KiB of spans in use",
        heap.stats().heap_in_use / 1024
    );
    heap.collect();
    println!(
        "  collected while held: {} objects live",
        heap.stats().heap_objects
    );
    drop((first, last));
    heap.collect();
    let s = heap.stats();
    println!(
        "  collected after the last handle went: {} objects live, {} freed, {} collections, {:?} paused",
        s.heap_objects, s.frees, s.num_gc, s.pause_total
    );
    println!(
        "  (FING_TRACE=gc prints a line per collection; FING_GOGC sets the pacing, or `off`.)"
    );

    finalizers(&heap);
}

/// Collects until `done` or 10 rounds, waiting for the finalizer thread each time.
fn settle(heap: &Heap, done: impl Fn() -> bool) {
    for _ in 0..10 {
        heap.collect();
        fing::wait_finalizers();
        if done() {
            return;
        }
    }
}

fn finalizers(heap: &Heap) {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let say = |log: &Arc<Mutex<Vec<String>>>| {
        let log = log.clone();
        move |s: String| log.lock().unwrap().push(s)
    };

    println!("\n7. Finalizers: set on one object at run time, run on the finalizer thread:");
    let typed = heap.alloc(File { fd: 10, next: None });
    let w = say(&log);
    typed
        .set_finalizer(move |f: Gc<File>| w(format!("typed finalizer: closing fd {}", f.fd)))
        .unwrap();
    let dynamic = heap.alloc(File { fd: 11, next: None });
    let w = say(&log);
    let out = fing::set_finalizer(
        Value::from(dynamic.clone()),
        Func::new(move |c: Gc<dyn Closer>| {
            w(format!("interface finalizer: closed fd {}", c.close()))
        }),
    );
    println!("  set_finalizer(Gc<File>, fn(dyn Closer)) -> {out:?}");
    drop((typed, dynamic));
    settle(heap, || log.lock().unwrap().len() >= 2);
    for line in log.lock().unwrap().drain(..) {
        println!("  {line}");
    }

    println!(
        "\n8. A points to B, both with finalizers: A's runs first, B's in the cycle that frees A:"
    );
    let b = heap.alloc(File { fd: 21, next: None });
    let a = heap.alloc(File {
        fd: 20,
        next: Some(b.clone()),
    });
    for x in [&a, &b] {
        let w = say(&log);
        x.set_finalizer(move |f: Gc<File>| w(format!("finalized fd {}", f.fd)))
            .unwrap();
    }
    drop((a, b));
    heap.collect();
    fing::wait_finalizers();
    println!("  after one collection: {:?}", log.lock().unwrap());
    settle(heap, || log.lock().unwrap().len() >= 2);
    println!(
        "  after the next:       {:?}",
        log.lock().unwrap().drain(..).collect::<Vec<_>>()
    );

    println!("\n9. Tiny objects share a 16-byte block; all its finalizers run in the same cycle:");
    let xs: Vec<Gc<u32>> = (1..=3).map(|i| heap.alloc(i * 100)).collect();
    println!(
        "  one block: {}",
        xs.windows(2).all(|w| Gc::same_object(&w[0], &w[1]))
    );
    for x in &xs {
        let w = say(&log);
        x.set_finalizer(move |x: Gc<u32>| w(format!("tiny {}", *x)))
            .unwrap();
    }
    drop(xs);
    settle(heap, || log.lock().unwrap().len() >= 3);
    let mut tiny = log.lock().unwrap().drain(..).collect::<Vec<_>>();
    tiny.sort();
    println!("  {tiny:?}");

    println!("\n10. What bad calls return (Go's checks, Go's messages, as typed errors):");
    let f = heap.alloc(File { fd: 30, next: None });
    let fin = || Func::new(|_: Gc<File>| ());
    let cases: Vec<(&str, Result<fing::Outcome, fing::FinalizerError>)> = vec![
        ("nil object", fing::set_finalizer(Value::nil(), fin())),
        (
            "not a pointer",
            fing::set_finalizer(Value::from(1i32), fin()),
        ),
        (
            "interior pointer",
            fing::set_finalizer(Value::from(f.map(|x| &x.next)), Func::new(|_: Value| ())),
        ),
        (
            "not a function",
            fing::set_finalizer(Value::from(f.clone()), Value::from("close")),
        ),
        (
            "two parameters",
            fing::set_finalizer(
                Value::from(f.clone()),
                Func::binary(|_: Gc<File>, _: i32| ()),
            ),
        ),
        (
            "wrong parameter",
            fing::set_finalizer(Value::from(f.clone()), Func::new(|_: Gc<Stat>| ())),
        ),
        (
            "first set",
            fing::set_finalizer(Value::from(f.clone()), fin()),
        ),
        (
            "second set",
            fing::set_finalizer(Value::from(f.clone()), fin()),
        ),
        (
            "remove",
            fing::set_finalizer(Value::from(f.clone()), Value::nil()),
        ),
        (
            "outside the heap",
            fing::set_finalizer(Value::from(Gc::from_static(&STDIN)), fin()),
        ),
    ];
    for (what, r) in cases {
        match r {
            Ok(o) => println!("  {what:<17} Ok({o:?})"),
            Err(e) => println!("  {what:<17} Err: {e}"),
        }
    }

    weak_and_cleanups(heap, &log);
    safe_points();

    let s = heap.stats();
    println!(
        "\n14. MemStats: {} collections, {:?} paused; finalizers queued {}, run {}, panicked {}; cleanups queued {}, run {}",
        s.num_gc,
        s.pause_total,
        s.finalizers_queued,
        s.finalizers_run,
        s.finalizers_panicked,
        s.cleanups_queued,
        s.cleanups_run
    );
}

fn weak_and_cleanups(heap: &Heap, log: &Arc<Mutex<Vec<String>>>) {
    println!(
        "\n11. Weak handles: nil once a collection finds the object unreachable, before its finalizer:"
    );
    let f = heap.alloc(File { fd: 40, next: None });
    let w = f.downgrade();
    println!(
        "  while held: upgrade -> fd {:?}; equal to another downgrade: {}",
        w.upgrade().map(|f| f.fd),
        w == f.downgrade()
    );
    let l = log.clone();
    let w2 = w.clone();
    f.set_finalizer(move |f: Gc<File>| {
        l.lock().unwrap().push(format!(
            "finalizer of fd {} sees its weak handle: {:?}",
            f.fd,
            w2.upgrade().map(|f| f.fd)
        ))
    })
    .unwrap();
    drop(f);
    settle(heap, || !log.lock().unwrap().is_empty());
    println!(
        "  {}",
        log.lock().unwrap().drain(..).collect::<Vec<_>>().join("")
    );
    println!("  after: upgrade -> {:?}", w.upgrade().map(|f| f.fd));

    println!(
        "\n12. Cleanups: no object passed, so no resurrection; a cycle gets its cleanups in one collection:"
    );
    let a = heap.alloc(Ring {
        fd: 50,
        next: GcCell::new(None),
    });
    let b = heap.alloc(Ring {
        fd: 51,
        next: GcCell::new(Some(a.clone())),
    });
    a.next.set(Some(b.clone()));
    for (x, fd) in [(&a, 50), (&b, 51)] {
        let l = log.clone();
        x.add_cleanup(fd, move |fd: i32| {
            l.lock().unwrap().push(format!("closed fd {fd}"))
        })
        .unwrap();
    }
    let stopped = a
        .add_cleanup((), |()| println!("  never printed: stopped"))
        .unwrap();
    stopped.stop();
    println!(
        "  an argument that is the object: {}",
        a.add_cleanup(a.clone(), |_| ()).unwrap_err()
    );
    drop((a, b));
    heap.collect();
    fing::wait_finalizers();
    let mut closed = log.lock().unwrap().drain(..).collect::<Vec<_>>();
    closed.sort();
    println!("  after one collection: {closed:?}");
}

/// An interpreter's own records in the heap: a built struct allocated zeroed (Go's
/// `reflect.New`), its fields set and read through `Value`, and a finalizer whose
/// parameter is the built pointer type.
fn script_objects() {
    let mut config = HeapConfig::default();
    config.gogc = None;
    let heap = Heap::new(config);
    let leaf = TypeBuilder::structure(Some("script.Leaf"))
        .field("n", i64::TYPE)
        .field("file", Gc::<File>::TYPE)
        .build();
    let leaf_ptr = TypeBuilder::pointer(<Gc<()>>::TYPE, None, leaf);
    let obj = heap
        .alloc_zeroed(leaf)
        .expect("numbers and pointers have zero values");
    println!(
        "  alloc_zeroed({leaf}) -> a {}; file is nil: {}",
        obj.type_of(),
        reflect::field(&obj, 1).expect("field 1").is_nil()
    );
    reflect::set_field(&obj, 0, Value::from(7i64)).expect("an i64 field");
    let file = heap.alloc(File { fd: 9, next: None });
    reflect::set_field(&obj, 1, Value::from(file)).expect("a Gc<File> field");
    println!(
        "  set_field(n, 7u8): {}",
        reflect::set_field(&obj, 0, Value::from(7u8)).unwrap_err()
    );
    struct Close;
    impl FrameFn for Close {
        fn call(self: Box<Self>, frame: &mut Frame<'_>) {
            let obj = frame.take_arg_value(0).expect("the object");
            let n = reflect::field(&obj, 0).expect("field 0");
            let file = reflect::field(&obj, 1).expect("field 1");
            let fd = file.downcast_ref::<Gc<File>>().map(|f| f.fd);
            println!("  finalizer of a {}: n = {n:?}, fd = {fd:?}", obj.type_of());
        }
    }
    let sig = TypeBuilder::func(&[leaf_ptr], &[], false);
    fing::set_finalizer(obj, Func::from_frame_fn(sig, Close)).expect("the built pointer type");
    heap.collect();
    fing::wait_finalizers();
}

/// Finalizers on the program's own thread, and the hook that names a failing one.
fn safe_points() {
    println!(
        "\n13. Finalizers at safe points (an interpreter's thread runs them between statements):"
    );
    let mut config = HeapConfig::default();
    config.gogc = None;
    config.finalizers_at_safe_points = true;
    let heap = Heap::new(config);
    fing::set_finalizer_panic_hook(|p| {
        let ty = p
            .object_type()
            .map_or("a cleanup".into(), |t| t.to_string());
        let fd = p
            .object()
            .and_then(|v| v.downcast_ref::<Gc<Ring>>().map(|r| r.fd));
        println!(
            "  hook: the finalizer of {ty} (fd {fd:?}) failed: {}",
            p.message().unwrap_or("?")
        );
    });
    let me = std::thread::current().id();
    for fd in [60, 61, 62] {
        let r = heap.alloc(Ring {
            fd,
            next: GcCell::new(None),
        });
        r.set_finalizer(move |r: Gc<Ring>| {
            assert!(r.fd != 61, "script error: fd {} already closed", r.fd);
            let here = if std::thread::current().id() == me {
                "this thread"
            } else {
                "another"
            };
            println!("  finalizer: closing fd {} on {here}", r.fd);
        })
        .unwrap();
    }
    heap.collect();
    println!("  after collect: {} pending", heap.pending_finalizers());
    // std's panic hook prints every panic, contained or not; quiet it for the demo.
    let std_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ran = heap.run_finalizers();
    std::panic::set_hook(std_hook);
    println!("  run_finalizers() ran {ran}");
    drop(fing::take_finalizer_panic_hook());
}

/// A file in a ring: the cycle the collector must find.
#[derive(Debug, Trace)]
struct Ring {
    fd: i32,
    next: GcCell<Option<Gc<Ring>>>,
}
