//! Run-time types are interned: `TypeBuilder` gives the same `&'static Type` for an
//! unnamed pointer, array, func or struct type built twice from the same parts (Go's
//! `reflect.PointerTo`/`ArrayOf`/`FuncOf`/`StructOf` caches), from any thread; named
//! types, structs that declare interfaces and interfaces keep a fresh identity.

#![allow(missing_docs)]

use fing::rules::identical;
use fing::{Gc, Type, TypeBuilder, Typed};

fn repr() -> &'static Type {
    <Gc<()> as Typed>::TYPE
}

fn i64t() -> &'static Type {
    <i64 as Typed>::TYPE
}

fn point() -> &'static Type {
    TypeBuilder::structure(None)
        .field("x", i64t())
        .field("y", i64t())
        .build()
}

#[test]
fn unnamed_types_built_twice_are_one() {
    assert!(core::ptr::eq(point(), point()), "struct");
    let p = TypeBuilder::pointer(repr(), None, point());
    assert!(
        core::ptr::eq(p, TypeBuilder::pointer(repr(), None, point())),
        "pointer"
    );
    let a = TypeBuilder::array(p, 4);
    assert!(core::ptr::eq(a, TypeBuilder::array(p, 4)), "array");
    let f = TypeBuilder::func(&[p, i64t()], &[a], false);
    assert!(
        core::ptr::eq(f, TypeBuilder::func(&[p, i64t()], &[a], false)),
        "func"
    );
    // Nested: the parts are interned, so the whole is too.
    let nested = || {
        TypeBuilder::array(
            TypeBuilder::pointer(
                repr(),
                None,
                TypeBuilder::structure(None).field("p", point()).build(),
            ),
            2,
        )
    };
    assert!(core::ptr::eq(nested(), nested()));
}

#[test]
fn different_parts_are_different_types() {
    let other = TypeBuilder::structure(None)
        .field("x", i64t())
        .field("z", i64t())
        .build();
    assert!(!core::ptr::eq(point(), other), "another field name");
    assert!(!identical(point(), other));
    let i32t = <i32 as Typed>::TYPE;
    let narrow = TypeBuilder::structure(None)
        .field("x", i64t())
        .field("y", i32t)
        .build();
    assert!(!core::ptr::eq(point(), narrow), "another field type");
    let p = TypeBuilder::pointer(repr(), None, point());
    assert!(!core::ptr::eq(
        TypeBuilder::array(p, 4),
        TypeBuilder::array(p, 5)
    ));
    assert!(!core::ptr::eq(
        TypeBuilder::func(&[p], &[], false),
        TypeBuilder::func(&[p], &[i64t()], false)
    ));
    let slice = <Vec<i64> as Typed>::TYPE;
    if slice.kind() == fing::Kind::Slice {
        assert!(!core::ptr::eq(
            TypeBuilder::func(&[slice], &[], false),
            TypeBuilder::func(&[slice], &[], true)
        ));
    }
}

#[test]
fn named_types_keep_their_identity() {
    let a = TypeBuilder::structure(Some("Point"))
        .field("x", i64t())
        .build();
    let b = TypeBuilder::structure(Some("Point"))
        .field("x", i64t())
        .build();
    assert!(!core::ptr::eq(a, b));
    assert!(!identical(a, b), "two named types are distinct, as in Go");
    let p = TypeBuilder::pointer(repr(), Some("PointPtr"), a);
    let q = TypeBuilder::pointer(repr(), Some("PointPtr"), a);
    assert!(!core::ptr::eq(p, q));
    assert!(!core::ptr::eq(
        TypeBuilder::interface("Closer", &["close"]),
        TypeBuilder::interface("Closer", &["close"])
    ));
}

#[test]
fn building_per_call_returns_the_one_type() {
    let first = TypeBuilder::func(&[point()], &[i64t()], false);
    for _ in 0..100_000 {
        assert!(core::ptr::eq(
            first,
            TypeBuilder::func(&[point()], &[i64t()], false)
        ));
    }
}

#[test]
fn threads_building_at_once_get_the_same_type() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..2000)
                    .map(|i| {
                        let s = TypeBuilder::structure(None)
                            .field("thread_shared", i64t())
                            .field(&format!("f{}", i % 50), i64t())
                            .build();
                        (i % 50, s as *const Type as usize, t)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = std::collections::HashMap::new();
    for h in handles {
        for (k, addr, _) in h.join().unwrap() {
            assert_eq!(*seen.entry(k).or_insert(addr), addr, "field f{k}");
        }
    }
    assert_eq!(seen.len(), 50);
}
