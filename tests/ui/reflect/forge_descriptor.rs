// Safe code cannot make a descriptor: `Type::rust` (and `Type::untraced`, `Itab::new`) are
// `unsafe`. This one would pass a `usize` where a handle is expected.
use fing::{Kind, Type, TypeRef};

static FORGED: Type = Type::rust::<usize>(Kind::Pointer).with_elem(TypeRef::of::<u64>());

fn main() {
    let _ = &FORGED;
}
