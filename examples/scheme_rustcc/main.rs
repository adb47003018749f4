//! The rust-cc 0.6 twin of `examples/scheme` (a small Scheme on fing), for side-by-side
//! timing: `cargo run --release --example scheme_rustcc -- FILE [SIZE]` runs a script and
//! ends with the same `script=... wall_ms=...` line.
//!
//! The value representation and the evaluator are the fing version's, line for line, with
//! `rust_cc::Cc` for `fing::Gc` and `RefCell` for `GcCell` ([`Val`], 16 bytes: immediates
//! inline; strings, pairs, procedures and weak tables behind a one-word `Cc`; an
//! environment frame is a `Cc` object holding a `RefCell` over its slots and its parent,
//! so a closure stored in its own frame is a cycle that only the cycle collector frees).
//! The reader and compiler are the same file (`examples/scheme_common/reader.rs`). So a
//! difference in time is the collectors' (and their handles' and cells' costs).
//!
//! What differs, because rust-cc differs:
//! - rust-cc is single-threaded (`Cc` is neither `Send` nor `Sync`): no `--threads`, and
//!   the shared parts of the interpreter are `Rc`s where fing's are `Arc`s.
//! - Finalizers: rust-cc's `Finalize` is one method per type, given `&self`, run just
//!   before the object is freed (or resurrected). Script finalizers are kept in a
//!   thread-local table from an object's address to its procedure and a `Weak` to the
//!   object; the heap types' `Finalize` looks its address up, upgrades the weak handle (so
//!   resurrecting the object) and queues (procedure, object). The queue runs at the
//!   interpreter's safe points, after `(collect)`, one batch per safe point: when A points
//!   to B, B's finalizer is queued when A's object goes, after A's ran, and so runs at the
//!   next safe point, the order Go's rules give. rust-cc checks nothing: the errors
//!   (a second finalizer, a non-heap object, a non-procedure) are the twin's own text.
//! - Weak tables: rust-cc's `weak-ptrs` feature gives `Weak`, but no ephemerons. A table
//!   holds (weak key, value) entries and drops the ones whose key is gone when counted; a
//!   value that points back to its key keeps the key (and the entry) alive, so `weak.scm`
//!   ends with one entry here where fing's `WeakMap` ends with none.

#[path = "../scheme_common/reader.rs"]
mod reader;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reader::{Datum, Lambda, Node, Prim, Program, Sym};
use rust_cc::weak::Weak;
use rust_cc::{collect_cycles, Cc, Finalize, Trace};

/// A Scheme value.
#[derive(Clone, Trace, Finalize)]
enum Val {
    /// A global not yet defined (never seen by scripts).
    Undefined,
    /// What `set!`, `define`, `display`, ... return.
    Unspec,
    /// The empty list.
    Nil,
    /// `#t`, `#f`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A symbol.
    Sym(Sym),
    /// A primitive procedure.
    Prim(#[rust_cc(ignore)] Prim),
    /// A string.
    Str(Cc<Str>),
    /// A pair.
    Pair(Cc<Pair>),
    /// A procedure made by `lambda`.
    Closure(Cc<Closure>),
    /// A weak table.
    Table(Cc<Table>),
}

/// A string object.
#[derive(Trace)]
struct Str {
    text: String,
}

/// A pair: two mutable slots.
#[derive(Trace)]
struct Pair {
    car: RefCell<Val>,
    cdr: RefCell<Val>,
}

/// A procedure: code and the frame it closes over.
#[derive(Trace)]
struct Closure {
    #[rust_cc(ignore)]
    code: Arc<Lambda>,
    env: Option<Cc<Env>>,
}

/// An environment frame: a call's (or a `let`'s) variables, and the enclosing frame.
#[derive(Trace, Finalize)]
struct Env {
    slots: RefCell<Vec<Val>>,
    parent: Option<Cc<Env>>,
}

/// The global variables, one cell each.
#[derive(Trace, Finalize)]
struct Globals {
    slots: Vec<RefCell<Val>>,
}

/// A weak table: (weak key, value) entries, and where each key's entry is.
#[derive(Default, Trace)]
struct Table {
    entries: RefCell<Vec<(WeakKey, Val)>>,
    #[rust_cc(ignore)]
    index: RefCell<HashMap<usize, usize>>,
}

/// A weak handle to a heap value (a weak table's key, an object with a finalizer).
#[derive(Trace, Finalize)]
enum WeakKey {
    Pair(Weak<Pair>),
    Str(Weak<Str>),
    Closure(Weak<Closure>),
    Table(Weak<Table>),
}

impl WeakKey {
    fn of(v: &Val) -> Option<WeakKey> {
        Some(match v {
            Val::Pair(x) => WeakKey::Pair(x.downgrade()),
            Val::Str(x) => WeakKey::Str(x.downgrade()),
            Val::Closure(x) => WeakKey::Closure(x.downgrade()),
            Val::Table(x) => WeakKey::Table(x.downgrade()),
            _ => return None,
        })
    }

    fn upgrade(&self) -> Option<Val> {
        match self {
            WeakKey::Pair(w) => w.upgrade().map(Val::Pair),
            WeakKey::Str(w) => w.upgrade().map(Val::Str),
            WeakKey::Closure(w) => w.upgrade().map(Val::Closure),
            WeakKey::Table(w) => w.upgrade().map(Val::Table),
        }
    }
}

/// The address of a heap value (the key of the finalizer and weak tables).
fn addr_of(v: &Val) -> Option<usize> {
    Some(match v {
        Val::Pair(x) => &**x as *const Pair as usize,
        Val::Str(x) => &**x as *const Str as usize,
        Val::Closure(x) => &**x as *const Closure as usize,
        Val::Table(x) => &**x as *const Table as usize,
        _ => return None,
    })
}

thread_local! {
    /// Script finalizers not yet run: by object address, the procedure and the object.
    static FINALIZERS: RefCell<HashMap<usize, (Val, WeakKey)>> = RefCell::new(HashMap::new());
    /// How many `FINALIZERS` holds (read by every `finalize`, so kept apart).
    static ARMED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Finalizers whose objects went, to run at the next safe point: (procedure, object).
    static PENDING: RefCell<Vec<(Val, Val)>> = const { RefCell::new(Vec::new()) };
}

/// Called by rust-cc before it frees (or finds resurrected) the object at `addr`: queues
/// its script finalizer, if it has one, with the object (resurrected by the upgrade).
fn finalize_hook(addr: usize) {
    if ARMED.with(|a| a.get()) == 0 {
        return;
    }
    let Some((proc, obj)) = FINALIZERS.with(|f| f.borrow_mut().remove(&addr)) else {
        return;
    };
    ARMED.with(|a| a.set(a.get() - 1));
    if let Some(obj) = obj.upgrade() {
        PENDING.with(|p| p.borrow_mut().push((proc, obj)));
    }
}

macro_rules! finalize_by_hook {
    ($($t:ty),*) => {$(
        impl Finalize for $t {
            fn finalize(&self) {
                finalize_hook(self as *const $t as usize);
            }
        }
    )*};
}
finalize_by_hook!(Str, Pair, Closure, Table);

/// A script error.
#[derive(Debug)]
struct Error(String);

type Result<T> = std::result::Result<T, Error>;

fn err<T>(msg: String) -> Result<T> {
    Err(Error(msg))
}

/// Where `display` writes: stdout, or a buffer (the tests).
#[derive(Debug)]
enum Out {
    /// The process's stdout.
    Stdout,
    /// Captured text.
    Capture(Mutex<String>),
}

impl Out {
    fn write(&self, s: &str) {
        match self {
            Out::Stdout => {
                use std::io::Write;
                let _ = std::io::stdout().lock().write_all(s.as_bytes());
            }
            Out::Capture(m) => m.lock().unwrap_or_else(|e| e.into_inner()).push_str(s),
        }
    }
}

/// What every thread running the program shares: the code and its constants.
struct Code {
    program: Program,
    consts: Vec<Val>,
    size: Option<i64>,
}

/// An interpreter: cheap to clone (one per thread, one per finalizer), all clones sharing
/// the program, the globals and the output.
#[derive(Clone)]
struct Interp {
    code: Rc<Code>,
    globals: Cc<Globals>,
    out: Rc<Out>,
}

/// What evaluating a node in tail position leaves to do.
enum Tail<'a> {
    /// Its value.
    Done(Val),
    /// A call to make in place of the current one.
    Call(Val, Vec<Val>),
    /// A body to go on with, in a new frame (a `let`'s).
    Enter(&'a Node, Cc<Env>),
}

fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Bool(false))
}

/// The frame `depth` links up from `env`.
fn up(env: &Option<Cc<Env>>, depth: usize) -> &Env {
    let mut e: &Env = env.as_ref().expect("a local variable outside every frame");
    for _ in 0..depth {
        e = e
            .parent
            .as_ref()
            .expect("a frame deeper than the compiler saw");
    }
    e
}

fn cons(car: Val, cdr: Val) -> Val {
    Val::Pair(Cc::new(Pair {
        car: RefCell::new(car),
        cdr: RefCell::new(cdr),
    }))
}

fn string(text: String) -> Val {
    Val::Str(Cc::new(Str { text }))
}

fn value_of_datum(d: &Datum) -> Val {
    match d {
        Datum::Int(n) => Val::Int(*n),
        Datum::Bool(b) => Val::Bool(*b),
        Datum::Sym(s) => Val::Sym(*s),
        Datum::Str(s) => string(s.clone()),
        Datum::List(items) => items
            .iter()
            .rev()
            .fold(Val::Nil, |tail, d| cons(value_of_datum(d), tail)),
    }
}

impl Interp {
    /// An interpreter for `program`, whose `(size default)` returns `size` if given.
    fn new(program: Program, size: Option<i64>, out: Out) -> Interp {
        let consts = program.consts.iter().map(value_of_datum).collect();
        let globals = Cc::new(Globals {
            slots: (0..program.globals.len())
                .map(|_| RefCell::new(Val::Undefined))
                .collect(),
        });
        Interp {
            code: Rc::new(Code {
                program,
                consts,
                size,
            }),
            globals,
            out: Rc::new(out),
        }
    }

    /// Runs the program's top-level forms.
    fn run(&self) -> Result<()> {
        for form in &self.code.program.forms {
            self.eval_body(form, None)?;
        }
        Ok(())
    }

    fn global(&self, g: usize) -> Result<Val> {
        let v = self.globals.slots[g].borrow().clone();
        if let Val::Undefined = v {
            let name = self.code.program.globals[g];
            return err(format!(
                "unbound variable `{}`",
                self.code.program.symbols.name(name)
            ));
        }
        Ok(v)
    }

    /// Evaluates `node` in `env`, not in tail position.
    fn eval(&self, node: &Node, env: &Option<Cc<Env>>) -> Result<Val> {
        Ok(match node {
            Node::Int(n) => Val::Int(*n),
            Node::Bool(b) => Val::Bool(*b),
            Node::Nil => Val::Nil,
            Node::Const(i) => self.code.consts[*i].clone(),
            Node::PrimRef(p) => Val::Prim(*p),
            Node::Local(slot) => up(env, 0).slots.borrow()[*slot].clone(),
            Node::Outer(depth, slot) => up(env, *depth).slots.borrow()[*slot].clone(),
            Node::Global(g) => self.global(*g)?,
            Node::SetLocal(depth, slot, value) => {
                let v = self.eval(value, env)?;
                let old = std::mem::replace(&mut up(env, *depth).slots.borrow_mut()[*slot], v);
                drop(old);
                Val::Unspec
            }
            Node::SetGlobal(g, value) => {
                self.global(*g)?;
                let v = self.eval(value, env)?;
                drop(self.globals.slots[*g].replace(v));
                Val::Unspec
            }
            Node::DefineGlobal(g, value) => {
                let v = self.eval(value, env)?;
                drop(self.globals.slots[*g].replace(v));
                Val::Unspec
            }
            Node::If(c, t, e) => {
                if truthy(&self.eval(c, env)?) {
                    self.eval(t, env)?
                } else if let Some(e) = e {
                    self.eval(e, env)?
                } else {
                    Val::Unspec
                }
            }
            Node::Begin(nodes) => {
                let (last, rest) = nodes.split_last().expect("begin is never empty");
                for n in rest {
                    self.eval(n, env)?;
                }
                self.eval(last, env)?
            }
            Node::And(nodes) => {
                let mut v = Val::Bool(true);
                for n in nodes.iter() {
                    v = self.eval(n, env)?;
                    if !truthy(&v) {
                        break;
                    }
                }
                v
            }
            Node::Or(nodes) => {
                let mut v = Val::Bool(false);
                for n in nodes.iter() {
                    v = self.eval(n, env)?;
                    if truthy(&v) {
                        break;
                    }
                }
                v
            }
            Node::Lambda(code) => Val::Closure(Cc::new(Closure {
                code: code.clone(),
                env: env.clone(),
            })),
            Node::Let {
                inits,
                frame_size,
                body,
            } => {
                let frame = self.let_frame(inits, *frame_size, env)?;
                self.eval_body(body, Some(frame))?
            }
            Node::Call(f, args) => {
                let f = self.eval(f, env)?;
                let args = self.args(&f, args, env)?;
                self.apply(f, args)?
            }
            Node::Prim1(p, a) => {
                let a = self.eval(a, env)?;
                self.prim1(*p, a)?
            }
            Node::Prim2(p, a, b) => {
                let a = self.eval(a, env)?;
                let b = self.eval(b, env)?;
                self.prim2(*p, a, b)?
            }
            Node::PrimN(p, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args.iter() {
                    vals.push(self.eval(a, env)?);
                }
                self.prim(*p, vals)?
            }
        })
    }

    /// Evaluates `node` in tail position: a call is returned, not made.
    fn eval_tail<'a>(&self, node: &'a Node, env: &Option<Cc<Env>>) -> Result<Tail<'a>> {
        let mut node = node;
        loop {
            return Ok(match node {
                Node::If(c, t, e) => {
                    if truthy(&self.eval(c, env)?) {
                        node = t;
                        continue;
                    }
                    match e {
                        Some(e) => {
                            node = e;
                            continue;
                        }
                        None => Tail::Done(Val::Unspec),
                    }
                }
                Node::Begin(nodes) => {
                    let (last, rest) = nodes.split_last().expect("begin is never empty");
                    for n in rest {
                        self.eval(n, env)?;
                    }
                    node = last;
                    continue;
                }
                Node::Let {
                    inits,
                    frame_size,
                    body,
                } => Tail::Enter(body, self.let_frame(inits, *frame_size, env)?),
                Node::Call(f, args) => {
                    let f = self.eval(f, env)?;
                    let args = self.args(&f, args, env)?;
                    Tail::Call(f, args)
                }
                _ => Tail::Done(self.eval(node, env)?),
            });
        }
    }

    /// Evaluates a body (a top-level form, a `let`'s body) in `env`.
    fn eval_body(&self, node: &Node, env: Option<Cc<Env>>) -> Result<Val> {
        let mut node = node;
        let mut env = env;
        loop {
            match self.eval_tail(node, &env)? {
                Tail::Done(v) => return Ok(v),
                Tail::Call(f, args) => return self.apply(f, args),
                Tail::Enter(n, e) => {
                    node = n;
                    env = Some(e);
                }
            }
        }
    }

    /// The arguments of a call of `f`, in a vector with room for `f`'s frame.
    fn args(&self, f: &Val, args: &[Node], env: &Option<Cc<Env>>) -> Result<Vec<Val>> {
        let room = match f {
            Val::Closure(c) => c.code.frame_size.max(args.len()),
            _ => args.len(),
        };
        let mut vals = Vec::with_capacity(room);
        for a in args {
            vals.push(self.eval(a, env)?);
        }
        Ok(vals)
    }

    fn let_frame(&self, inits: &[Node], size: usize, env: &Option<Cc<Env>>) -> Result<Cc<Env>> {
        let mut slots = Vec::with_capacity(size);
        for n in inits {
            slots.push(self.eval(n, env)?);
        }
        slots.resize(size, Val::Unspec);
        Ok(Cc::new(Env {
            slots: RefCell::new(slots),
            parent: env.clone(),
        }))
    }

    fn proc_name(&self, c: &Closure) -> String {
        match c.code.name {
            Some(s) => self.code.program.symbols.name(s).to_string(),
            None => "lambda".to_string(),
        }
    }

    /// Calls `f` with `args`; tail calls in its body loop here instead of nesting.
    fn apply(&self, f: Val, args: Vec<Val>) -> Result<Val> {
        let mut f = f;
        let mut args = args;
        loop {
            // (rust-cc's derive gives `Val` a `Drop` impl: no moving out of it, so clones.)
            let c = match &f {
                Val::Closure(c) => c.clone(),
                &Val::Prim(p) => {
                    let (min, max) = p.arity();
                    if args.len() < min || args.len() > max {
                        return err(format!(
                            "{}: called with {} arguments",
                            p.name(),
                            args.len()
                        ));
                    }
                    return self.prim(p, args);
                }
                other => return err(format!("not a procedure: {}", self.repr(other))),
            };
            if args.len() != c.code.params {
                return err(format!(
                    "{}: called with {} arguments, takes {}",
                    self.proc_name(&c),
                    args.len(),
                    c.code.params
                ));
            }
            args.resize(c.code.frame_size, Val::Unspec);
            let mut env = Some(Cc::new(Env {
                slots: RefCell::new(args),
                parent: c.env.clone(),
            }));
            let mut node = &c.code.body;
            loop {
                match self.eval_tail(node, &env)? {
                    Tail::Done(v) => return Ok(v),
                    Tail::Call(g, a) => {
                        f = g;
                        args = a;
                        break;
                    }
                    Tail::Enter(n, e) => {
                        node = n;
                        env = Some(e);
                    }
                }
            }
        }
    }

    fn int(&self, p: Prim, v: &Val) -> Result<i64> {
        match v {
            Val::Int(n) => Ok(*n),
            _ => err(format!("{}: not an integer: {}", p.name(), self.repr(v))),
        }
    }

    fn pair<'v>(&self, p: Prim, v: &'v Val) -> Result<&'v Cc<Pair>> {
        match v {
            Val::Pair(x) => Ok(x),
            _ => err(format!("{}: not a pair: {}", p.name(), self.repr(v))),
        }
    }

    fn arith(&self, p: Prim, a: i64, b: i64) -> Result<Val> {
        let r = match p {
            Prim::Add => a.checked_add(b),
            Prim::Sub => a.checked_sub(b),
            _ => a.checked_mul(b),
        };
        r.map(Val::Int)
            .ok_or_else(|| Error(format!("{}: integer overflow", p.name())))
    }

    /// A primitive of one argument (the common ones without an argument vector).
    fn prim1(&self, p: Prim, a: Val) -> Result<Val> {
        Ok(match p {
            Prim::Car => self.pair(p, &a)?.car.borrow().clone(),
            Prim::Cdr => self.pair(p, &a)?.cdr.borrow().clone(),
            Prim::IsNull => Val::Bool(matches!(a, Val::Nil)),
            Prim::IsPair => Val::Bool(matches!(a, Val::Pair(_))),
            Prim::Not => Val::Bool(!truthy(&a)),
            _ => return self.prim(p, vec![a]),
        })
    }

    /// A primitive of two arguments (the common ones without an argument vector).
    fn prim2(&self, p: Prim, a: Val, b: Val) -> Result<Val> {
        if p == Prim::Cons {
            return Ok(cons(a, b));
        }
        if let (Val::Int(x), Val::Int(y)) = (&a, &b) {
            let (x, y) = (*x, *y);
            match p {
                Prim::Add | Prim::Sub | Prim::Mul => return self.arith(p, x, y),
                Prim::Lt => return Ok(Val::Bool(x < y)),
                Prim::Gt => return Ok(Val::Bool(x > y)),
                Prim::Le => return Ok(Val::Bool(x <= y)),
                Prim::Ge => return Ok(Val::Bool(x >= y)),
                Prim::NumEq => return Ok(Val::Bool(x == y)),
                _ => {}
            }
        }
        self.prim(p, vec![a, b])
    }

    /// Any primitive (arity already checked).
    fn prim(&self, p: Prim, args: Vec<Val>) -> Result<Val> {
        Ok(match p {
            Prim::Add | Prim::Mul => {
                let mut acc = if p == Prim::Add { 0 } else { 1 };
                for a in &args {
                    let n = self.int(p, a)?;
                    acc = self.int(p, &self.arith(p, acc, n)?)?;
                }
                Val::Int(acc)
            }
            Prim::Sub => {
                let first = self.int(p, &args[0])?;
                if args.len() == 1 {
                    return self.arith(p, 0, first);
                }
                let mut acc = first;
                for a in &args[1..] {
                    let n = self.int(p, a)?;
                    acc = self.int(p, &self.arith(p, acc, n)?)?;
                }
                Val::Int(acc)
            }
            Prim::Lt | Prim::Gt | Prim::Le | Prim::Ge | Prim::NumEq => {
                let (x, y) = (self.int(p, &args[0])?, self.int(p, &args[1])?);
                Val::Bool(match p {
                    Prim::Lt => x < y,
                    Prim::Gt => x > y,
                    Prim::Le => x <= y,
                    Prim::Ge => x >= y,
                    _ => x == y,
                })
            }
            Prim::Eq => Val::Bool(eq(&args[0], &args[1])),
            Prim::Not | Prim::Car | Prim::Cdr | Prim::IsNull | Prim::IsPair => {
                let mut args = args;
                return self.prim1(p, args.pop().expect("one argument"));
            }
            Prim::Cons => {
                let mut args = args;
                let cdr = args.pop().expect("two arguments");
                let car = args.pop().expect("two arguments");
                cons(car, cdr)
            }
            Prim::SetCar => {
                drop(self.pair(p, &args[0])?.car.replace(args[1].clone()));
                Val::Unspec
            }
            Prim::SetCdr => {
                drop(self.pair(p, &args[0])?.cdr.replace(args[1].clone()));
                Val::Unspec
            }
            Prim::List => args
                .into_iter()
                .rev()
                .fold(Val::Nil, |tail, v| cons(v, tail)),
            Prim::Display => {
                let mut s = String::new();
                self.show(&args[0], &mut s);
                self.out.write(&s);
                Val::Unspec
            }
            Prim::Print => {
                let mut s = String::new();
                for a in &args {
                    self.show(a, &mut s);
                }
                s.push('\n');
                self.out.write(&s);
                Val::Unspec
            }
            Prim::Newline => {
                self.out.write("\n");
                Val::Unspec
            }
            Prim::Collect => {
                self.collect();
                Val::Unspec
            }
            Prim::SetFinalizer => {
                self.set_finalizer(&args[0], &args[1])?;
                Val::Unspec
            }
            Prim::MakeWeakTable => Val::Table(Cc::new(Table::default())),
            Prim::WeakTableSet => {
                let mut args = args;
                let v = args.pop().expect("three arguments");
                self.table_set(self.table(p, &args[0])?, &args[1], v)?;
                Val::Unspec
            }
            Prim::WeakTableRef => match self.table_ref(self.table(p, &args[0])?, &args[1])? {
                Some(v) => v,
                None => args[2].clone(),
            },
            Prim::WeakTableCount => Val::Int(self.table_count(self.table(p, &args[0])?)),
            Prim::CatchError => {
                let mut args = args;
                let handler = args.pop().expect("two arguments");
                let thunk = args.pop().expect("two arguments");
                match self.apply(thunk, Vec::new()) {
                    Ok(v) => v,
                    Err(Error(msg)) => self.apply(handler, vec![string(msg)])?,
                }
            }
            Prim::Size => match self.code.size {
                Some(n) => Val::Int(n),
                None => Val::Int(self.int(p, &args[0])?),
            },
        })
    }

    fn table<'v>(&self, p: Prim, v: &'v Val) -> Result<&'v Cc<Table>> {
        match v {
            Val::Table(t) => Ok(t),
            _ => err(format!("{}: not a weak table: {}", p.name(), self.repr(v))),
        }
    }

    /// Prints `v` as `display` does.
    fn show(&self, v: &Val, s: &mut String) {
        use std::fmt::Write;
        match v {
            Val::Undefined => s.push_str("#<undefined>"),
            Val::Unspec => s.push_str("#<unspecified>"),
            Val::Nil => s.push_str("()"),
            Val::Bool(b) => s.push_str(if *b { "#t" } else { "#f" }),
            Val::Int(n) => {
                let _ = write!(s, "{n}");
            }
            Val::Sym(sym) => s.push_str(self.code.program.symbols.name(*sym)),
            Val::Prim(p) => {
                let _ = write!(s, "#<primitive {}>", p.name());
            }
            Val::Str(x) => s.push_str(&x.text),
            Val::Closure(c) => {
                let _ = write!(s, "#<procedure {}>", self.proc_name(c));
            }
            Val::Table(_) => s.push_str("#<weak-table>"),
            Val::Pair(p) => {
                s.push('(');
                let mut p = p.clone();
                loop {
                    let car = p.car.borrow().clone();
                    self.show(&car, s);
                    let cdr = p.cdr.borrow().clone();
                    match &cdr {
                        Val::Pair(q) => {
                            s.push(' ');
                            p = q.clone();
                        }
                        Val::Nil => break,
                        other => {
                            s.push_str(" . ");
                            self.show(other, s);
                            break;
                        }
                    }
                }
                s.push(')');
            }
        }
    }

    fn repr(&self, v: &Val) -> String {
        let mut s = String::new();
        self.show(v, &mut s);
        s
    }

    // What follows depends on the collector: collection, finalizers, weak tables.

    /// `(collect)`: collects cycles, then runs the script finalizers queued so far (a
    /// safe point).
    fn collect(&self) {
        collect_cycles();
        let batch = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        for (proc, obj) in batch {
            if let Err(Error(msg)) = self.apply(proc, vec![obj]) {
                self.out.write(&format!("error in finalizer: {msg}\n"));
            }
        }
    }

    /// `(set-finalizer! obj proc)`: records `proc` for `obj` (see the module docs).
    fn set_finalizer(&self, obj: &Val, proc: &Val) -> Result<()> {
        match proc {
            Val::Closure(c) if c.code.params != 1 => {
                return err(format!(
                    "set-finalizer!: the finalizer {} takes {} arguments, not 1",
                    self.repr(proc),
                    c.code.params
                ))
            }
            Val::Closure(_) | Val::Prim(_) => {}
            _ => {
                return err(format!(
                    "set-finalizer!: second argument is not a procedure: {}",
                    self.repr(proc)
                ))
            }
        }
        let (Some(addr), Some(weak)) = (addr_of(obj), WeakKey::of(obj)) else {
            return err(format!(
                "set-finalizer!: first argument is {}, not a heap object",
                self.repr(obj)
            ));
        };
        if FINALIZERS.with(|f| f.borrow().contains_key(&addr)) {
            return err("set-finalizer!: finalizer already set".to_string());
        }
        // An object resurrected by its finalizer was finalized once: rust-cc finalizes it
        // again only if told.
        match obj {
            Val::Pair(x) => x.clone().finalize_again(),
            Val::Str(x) => x.clone().finalize_again(),
            Val::Closure(x) => x.clone().finalize_again(),
            Val::Table(x) => x.clone().finalize_again(),
            _ => {}
        }
        FINALIZERS.with(|f| f.borrow_mut().insert(addr, (proc.clone(), weak)));
        ARMED.with(|a| a.set(a.get() + 1));
        Ok(())
    }

    fn table_set(&self, t: &Table, key: &Val, v: Val) -> Result<()> {
        let (Some(addr), Some(weak)) = (addr_of(key), WeakKey::of(key)) else {
            return err(self.not_a_key(key));
        };
        let at = t.index.borrow().get(&addr).copied();
        let old = match at {
            Some(i) => std::mem::replace(&mut t.entries.borrow_mut()[i], (weak, v)),
            None => {
                let mut entries = t.entries.borrow_mut();
                t.index.borrow_mut().insert(addr, entries.len());
                entries.push((weak, v));
                return Ok(());
            }
        };
        drop(old);
        Ok(())
    }

    fn table_ref(&self, t: &Table, key: &Val) -> Result<Option<Val>> {
        let Some(addr) = addr_of(key) else {
            return err(self.not_a_key(key));
        };
        let Some(i) = t.index.borrow().get(&addr).copied() else {
            return Ok(None);
        };
        let entries = t.entries.borrow();
        let (k, v) = &entries[i];
        // An entry whose key died may sit at an address a new object has now.
        Ok(k.upgrade().filter(|k| eq(k, key)).map(|_| v.clone()))
    }

    fn table_count(&self, t: &Table) -> i64 {
        let all = std::mem::take(&mut *t.entries.borrow_mut());
        let (live, dead): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(k, _)| k.upgrade().is_some());
        let mut index = t.index.borrow_mut();
        index.clear();
        for (i, (k, _)) in live.iter().enumerate() {
            if let Some(addr) = k.upgrade().as_ref().and_then(addr_of) {
                index.insert(addr, i);
            }
        }
        drop(index);
        let n = live.len();
        *t.entries.borrow_mut() = live;
        drop(dead);
        n as i64
    }

    fn not_a_key(&self, key: &Val) -> String {
        format!(
            "weak-table key must be a heap object (pair, string, procedure or table), not {}",
            self.repr(key)
        )
    }
}

fn eq(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Undefined, Val::Undefined) | (Val::Unspec, Val::Unspec) | (Val::Nil, Val::Nil) => {
            true
        }
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Sym(x), Val::Sym(y)) => x == y,
        (Val::Prim(x), Val::Prim(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => Cc::ptr_eq(x, y),
        (Val::Pair(x), Val::Pair(y)) => Cc::ptr_eq(x, y),
        (Val::Closure(x), Val::Closure(y)) => Cc::ptr_eq(x, y),
        (Val::Table(x), Val::Table(y)) => Cc::ptr_eq(x, y),
        _ => false,
    }
}

/// Runs `src` with `(size ...)` returning `size` if given; returns what it displayed when
/// `capture`, else prints it.
fn run_script(src: &str, size: Option<i64>, capture: bool) -> std::result::Result<String, String> {
    let program = reader::compile_program(src)?;
    // Deep recursion (in scripts, and in dropping a long list: rust-cc frees
    // recursively) needs a big stack (the fing version uses the same).
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let out = if capture {
                Out::Capture(Mutex::new(String::new()))
            } else {
                Out::Stdout
            };
            let interp = Interp::new(program, size, out);
            let r = interp.run().map_err(|Error(e)| e);
            // Script finalizers never run are dropped here, before the thread's locals go.
            drop(FINALIZERS.with(|f| std::mem::take(&mut *f.borrow_mut())));
            drop(PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())));
            r?;
            Ok(match &*interp.out {
                Out::Capture(m) => {
                    std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
                }
                Out::Stdout => String::new(),
            })
        })
        .expect("spawn the interpreter thread")
        .join()
        .map_err(|_| "the interpreter thread panicked")?
}

fn main() {
    let args = reader::parse_args(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("scheme_rustcc: {e}");
        std::process::exit(2)
    });
    if args.threads != 1 {
        eprintln!("scheme_rustcc: rust-cc is single-threaded: no --threads");
        std::process::exit(2);
    }
    let src = std::fs::read_to_string(&args.file).unwrap_or_else(|e| {
        eprintln!("scheme_rustcc: {}: {e}", args.file);
        std::process::exit(2)
    });
    let start = Instant::now();
    if let Err(e) = run_script(&src, args.size, false) {
        eprintln!("scheme_rustcc: error: {e}");
        std::process::exit(1);
    }
    println!(
        "script={} wall_ms={:.1} threads=1",
        args.file,
        start.elapsed().as_secs_f64() * 1e3,
    );
}
