//! The dynamic `fing::set_finalizer(Value, Value)` with arbitrary shapes: objects of every
//! kind the check table names (nil, non-pointers, zero-sized, static, interior, tiny,
//! not Sync), and finalizers that are nil, not functions, Rust closures of several
//! arities, or interpreter functions (`FrameFn`) with run-time built signatures over
//! run-time built pointer, struct, array and interface types.
//!
//! Properties: it never crashes or hangs; every rejection is a `FinalizerError` whose
//! message is the API's (`fing::set_finalizer: ...`); a finalizer that was set runs
//! exactly once, through the frame invoker, once its object is unreachable, and can take
//! its argument from the frame.
#![no_main]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fing::{Frame, FrameFn, Func, Gc, GcCell, Outcome, Type, TypeBuilder, Typed, Value};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/finalizer_types.rs"]
mod types;
use types::{Closer, File, NotSync, Pair, Tintptr};

/// Parameter types: Rust types and run-time built ones (built once: built types live
/// forever).
fn params() -> &'static [&'static Type] {
    static P: OnceLock<Vec<&'static Type>> = OnceLock::new();
    P.get_or_init(|| {
        let repr = Gc::<()>::TYPE;
        vec![
            Gc::<File>::TYPE,
            Gc::<Pair>::TYPE,
            Value::TYPE,
            Gc::<dyn Closer>::TYPE,
            Gc::<i64>::TYPE,
            Tintptr::TYPE,
            i32::TYPE,
            Gc::<NotSync>::TYPE,
            TypeBuilder::pointer(repr, Some("FilePtr"), File::TYPE),
            TypeBuilder::pointer(repr, None, Pair::TYPE),
            TypeBuilder::pointer(repr, None, i64::TYPE),
            TypeBuilder::interface("Closer2", &["close"]),
            TypeBuilder::interface("Any", &[]),
            Vec::<Value>::TYPE,
        ]
    })
}

/// Result types, small to large.
fn results() -> &'static [&'static Type] {
    static R: OnceLock<Vec<&'static Type>> = OnceLock::new();
    R.get_or_init(|| {
        let rec = TypeBuilder::structure(Some("Rec"))
            .field("a", u64::TYPE)
            .field("p", Gc::<File>::TYPE)
            .build();
        vec![
            u8::TYPE,
            <[u8; 32]>::TYPE,
            <[u8; 2000]>::TYPE,
            String::TYPE,
            Gc::<File>::TYPE,
            TypeBuilder::array(u64::TYPE, 100),
            rec,
        ]
    })
}

/// A signature from a few bytes, built once per shape.
fn signature(params: &[usize], results: &[usize], variadic: bool) -> &'static Type {
    static SIGS: OnceLock<Mutex<HashMap<(Vec<usize>, Vec<usize>, bool), &'static Type>>> =
        OnceLock::new();
    let mut m = SIGS.get_or_init(Default::default).lock().unwrap();
    let key = (params.to_vec(), results.to_vec(), variadic);
    m.entry(key).or_insert_with(|| {
        let p: Vec<_> = params.iter().map(|&i| crate::params()[i]).collect();
        let r: Vec<_> = results.iter().map(|&i| crate::results()[i]).collect();
        TypeBuilder::func(&p, &r, variadic)
    })
}

/// An interpreter's function: takes every argument from the frame, tries to set every
/// result to a `u8` (which the frame refuses for the other result types).
struct Script(Arc<AtomicUsize>);

impl FrameFn for Script {
    fn call(self: Box<Self>, frame: &mut Frame<'_>) {
        for i in 0..frame.param_count() {
            frame
                .take_arg_value(i)
                .expect("fing::reflectcall: the argument a finalizer was set with is in the frame");
        }
        for i in 0..frame.result_count() {
            let _ = frame.set_result_value(i, Value::from(7u8));
        }
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> usize {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b as usize
            }
            None => 0,
        }
    }
}

/// The object, and the handle that keeps it alive until the end of the input.
fn object(b: &mut Bytes) -> (Value, Option<Box<dyn Send>>) {
    static STATIC: File = File {
        fd: 0,
        next: GcCell::new(None),
    };
    let file = || {
        Gc::new(File {
            fd: 5,
            next: GcCell::new(None),
        })
    };
    let pair = || {
        Gc::new(Pair {
            a: [1; 4],
            b: [2; 4],
        })
    };
    match b.next() % 12 {
        0 => (Value::nil(), None),
        1 => (Value::from(7i32), None),
        2 => (Value::new(Gc::new(())), None),
        3 => (Value::from(Gc::from_static(&STATIC)), None),
        4 => {
            let p = pair();
            (Value::from(p.map(|p| &p.b)), Some(Box::new(p)))
        }
        5 => {
            let f = file();
            (Value::from(f.map(|f| &f.fd)), Some(Box::new(f)))
        }
        6 => {
            let f = file();
            (Value::from(f.clone()), Some(Box::new(f)))
        }
        7 => {
            let p = pair();
            (Value::from(p.clone()), Some(Box::new(p)))
        }
        8 => {
            let n = Gc::new(NotSync {
                cell: std::cell::Cell::new(1),
            });
            (Value::new(n), None)
        }
        9 => {
            let i = Gc::new(9i64);
            (Value::from(i.clone()), Some(Box::new(i)))
        }
        10 => (Value::new(Tintptr(Gc::new(3i64))), None),
        _ => (Value::from(Func::nullary(|| ())), None),
    }
}

fn finalizer(b: &mut Bytes, ran: &Arc<AtomicUsize>) -> Value {
    let r = ran.clone();
    let count = move || {
        r.fetch_add(1, Ordering::Relaxed);
    };
    match b.next() % 10 {
        0 => Value::nil(),
        1 => Value::from(3i32),
        2 => Func::new(move |_: Gc<File>| count()).into(),
        3 => Func::new(move |_: Value| count()).into(),
        4 => Func::new(move |c: Gc<dyn Closer>| {
            c.close();
            count()
        })
        .into(),
        5 => Func::nullary(count).into(),
        6 => Func::binary(move |_: Gc<File>, _: i32| count()).into(),
        7 => Func::variadic(move |_: &[Value]| count()).into(),
        _ => {
            let np = b.next() % 3;
            let mut ps: Vec<usize> = (0..np).map(|_| b.next() % params().len()).collect();
            let nr = b.next() % 4;
            let rs: Vec<usize> = (0..nr).map(|_| b.next() % results().len()).collect();
            let slice = params().len() - 1;
            let variadic = b.next() % 4 == 0;
            if variadic {
                ps.push(slice);
            }
            Func::from_frame_fn(signature(&ps, &rs, variadic), Script(ran.clone())).into()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let ran = Arc::new(AtomicUsize::new(0));
    let (obj, keep) = object(&mut b);
    let fin = finalizer(&mut b, &ran);
    let outcome = fing::set_finalizer(obj, fin);
    if let Err(e) = &outcome {
        let msg = e.to_string();
        assert!(msg.starts_with("fing::set_finalizer: "), "{msg}");
    }
    drop(keep);
    for _ in 0..2 {
        fing::collect();
        fing::wait_finalizers_timeout(Duration::from_secs(30)).expect("a finalizer hung");
    }
    let expected = usize::from(outcome == Ok(Outcome::Set));
    assert_eq!(ran.load(Ordering::Relaxed), expected, "{outcome:?}");
});
