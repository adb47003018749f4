//! The tour: what fing can tell about your types today, read top to bottom.
//!
//! fing's finalizers check, at run time, that a finalizer's parameter can take the
//! object: Go's `runtime.SetFinalizer` rules. Those checks stand on the reflection model
//! this tour walks through: derived type descriptors, interfaces, named pointer types,
//! Go's parameter rules, function values called through frames, and types an interpreter
//! builds at run time; then the heap those types live in: allocation, a collection, and
//! its statistics. (The finalizer thread comes next; the tour grows with it.)

use fing::rules::{finalizer_param, ParamMatch};
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

/// A file: a descriptor and a link to the next open file.
#[derive(Trace)]
#[gc(implements(Closer))]
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
#[derive(Trace)]
pub struct Stat {
    size: u64,
    name: String,
}

/// Go's `type Tintptr *int`: a named pointer type.
#[derive(Trace)]
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
        let l = FrameLayout::of(sig);
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
}

/// A file in a ring: the cycle the collector must find.
#[derive(Trace)]
struct Ring {
    fd: i32,
    next: GcCell<Option<Gc<Ring>>>,
}
