//! Compile-fail cases: misuse of the derive, the attributes and `#[fing::interface]` is
//! a compile error with a message that says why. Re-bless with `TRYBUILD=overwrite`.

#[test]
#[cfg_attr(miri, ignore)]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/**/*.rs");
}
