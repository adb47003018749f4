//! Random signatures, frames and calls through the public, safe API: every outcome is a
//! value or a typed error (`CallError`, `FrameError`), never a panic, an unwritten or
//! misplaced result, or (under Miri, which `.ci/deep` runs over these) undefined
//! behaviour, a zero-size allocation or a leak.

use proptest::prelude::*;

use crate::{CallError, Frame, FrameFn, FrameLayout, Func, Type, TypeBuilder, Typed, Value};

/// The types signatures are made of: Rust types of every storage class of `Value`
/// (inline, boxed, zero-sized, over-aligned), a func type (no `Value` form), and built
/// types (structs, arrays, a zero-length array).
fn types() -> Vec<&'static Type> {
    let point = TypeBuilder::structure(Some("test.Point"))
        .field("x", i64::TYPE)
        .field("name", String::TYPE)
        .build();
    vec![
        i8::TYPE,
        i64::TYPE,
        u128::TYPE,
        bool::TYPE,
        String::TYPE,
        <Vec<u8>>::TYPE,
        <[u64; 3]>::TYPE,
        <(u8, u64)>::TYPE,
        <[u128; 0]>::TYPE,
        <()>::TYPE,
        Value::TYPE,
        <fn(i64) -> i64>::TYPE,
        point,
        TypeBuilder::array(String::TYPE, 2),
        TypeBuilder::array(u8::TYPE, 0),
    ]
}

/// A value made from a Rust type (built types have no safe constructor of values).
fn value(k: u8) -> Value {
    match k % 10 {
        0 => Value::from(-3i8),
        1 => Value::from(42i64),
        2 => Value::from(7u128),
        3 => Value::from(true),
        4 => Value::from("text"),
        5 => Value::new(vec![1u8, 2, 3]),
        6 => Value::new([9u64; 3]),
        7 => Value::new((1u8, 2u64)),
        8 => Value::new([0u128; 0]),
        _ => Value::nil(),
    }
}

/// What a body does with its frame.
#[derive(Clone, Debug)]
enum Step {
    TakeI64(usize),
    TakeValue(usize),
    SetI64(usize, i64),
    SetValue(usize, u8),
    TakeResult(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let i = 0usize..80;
    prop_oneof![
        i.clone().prop_map(Step::TakeI64),
        i.clone().prop_map(Step::TakeValue),
        (i.clone(), any::<i64>()).prop_map(|(i, v)| Step::SetI64(i, v)),
        (i.clone(), any::<u8>()).prop_map(|(i, k)| Step::SetValue(i, k)),
        i.prop_map(Step::TakeResult),
    ]
}

/// A body running `Step`s; every frame access must answer `Ok` or a `FrameError`.
struct Script(Vec<Step>);

impl FrameFn for Script {
    fn call(self: Box<Self>, frame: &mut Frame<'_>) {
        for s in self.0 {
            match s {
                Step::TakeI64(i) => drop(frame.take_arg::<i64>(i)),
                Step::TakeValue(i) => drop(frame.take_arg_value(i)),
                Step::SetI64(i, v) => drop(frame.set_result(i, v)),
                Step::SetValue(i, k) => drop(frame.set_result_value(i, value(k))),
                Step::TakeResult(i) => drop(frame.take_result_value(i)),
            }
        }
    }
}

fn cases() -> u32 {
    if cfg!(miri) {
        12
    } else {
        256
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_call_ends_in_values_or_a_typed_error(
        params in proptest::collection::vec(0usize..15, 0..6),
        results in proptest::collection::vec(0usize..15, 0..70),
        args in proptest::collection::vec(any::<u8>(), 0..7),
        steps in proptest::collection::vec(step(), 0..40),
        variadic_shape in any::<bool>(),
    ) {
        let pool = types();
        let params: Vec<&'static Type> = params.iter().map(|&i| pool[i]).collect();
        let results: Vec<&'static Type> = results.iter().map(|&i| pool[i]).collect();
        let sig = TypeBuilder::func(&params, &results, false);
        let layout = FrameLayout::of(sig).expect("a small frame");
        prop_assert_eq!(layout.params.len(), params.len());
        // Arguments: sometimes made to match the parameters (where a Rust value of the
        // parameter's type exists), else random.
        let args: Vec<Value> = if variadic_shape {
            params.iter().enumerate().map(|(i, p)| {
                (0..10).map(value).find(|v| crate::rules::identical(v.type_of(), p))
                    .unwrap_or_else(|| value(args.get(i).copied().unwrap_or(0)))
            }).collect()
        } else {
            args.into_iter().map(value).collect()
        };
        let f = Func::from_frame_fn(sig, Script(steps));
        match f.call(args) {
            Ok(values) => {
                prop_assert_eq!(values.len(), results.len());
                for (v, r) in values.iter().zip(&results) {
                    prop_assert!(crate::rules::identical(v.type_of(), r));
                }
            }
            Err(
                CallError::ArgCount { .. }
                | CallError::ArgType { .. }
                | CallError::FuncResult { .. }
                | CallError::Unwritten { .. },
            ) => {}
            Err(e) => prop_assert!(false, "unexpected error: {}", e),
        }
    }
}
