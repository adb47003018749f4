use fing::Trace;

#[derive(Trace)]
union Bits {
    int: u64,
    float: f64,
}

fn main() {}
