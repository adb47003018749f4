//! A small Scheme on fing: how a language runtime embeds the heap.
//!
//! `cargo run --release --example scheme -- examples/scheme/scripts/fib.scm [SIZE]
//! [--threads N]` runs a script (`SIZE` replaces the default of the script's `(size ...)`;
//! `--threads N` runs it on N interpreter threads at once, sharing the one heap and the
//! one global environment) and ends with a line `script=... wall_ms=...`. Its twin on
//! rust-cc 0.6, `examples/scheme_rustcc/main.rs`, has the same value representation and
//! the same evaluator, line for line, so that the two time the collectors, not two
//! interpreters. What does not depend on the collector (the reader, symbol interning, the
//! compiler to an AST with resolved variable slots) is `examples/scheme_common/reader.rs`,
//! included by both.
//!
//! Value representation ([`Val`], 16 bytes): immediates (integers, booleans, symbols as
//! interned numbers, the empty list, primitives) are held inline; strings, pairs,
//! procedures and weak tables are heap objects behind a one-word [`Gc`] handle. A pair
//! is two [`GcCell`]s (`set-car!`, `set-cdr!`). An environment frame ([`Env`]) is a heap
//! object too: one `GcCell` over a vector of slots, and a handle to the parent frame; a
//! closure holds its code (shared, outside the heap) and a handle to the frame it was
//! made in. So a closure stored in its own frame (an internal `define`) is a cycle, which
//! counting alone never frees and a collection does. Globals are one heap object with a
//! cell per global, reached from every interpreter thread and from the finalizer thread.
//! Why: this is the shape of most dynamic-language runtimes (an enum of immediates and
//! handles), it puts every mutable location in a `GcCell` (the one place the collector
//! lets a handle be overwritten), and it keeps `Val` `Send + Sync` (fing's `Gc` is, when
//! its target is), so the interpreter's state can be shared with other threads.
//!
//! Finalizers are fing's (Go's): `(set-finalizer! obj proc)` calls
//! [`fing::set_finalizer`] with the object as a [`Value`] and the script procedure as a
//! [`Func`] built on a [`FrameFn`], whose signature takes as many `interface{}` parameters
//! as the procedure does. So Go's checks give the script its errors, with fing's
//! messages: a second finalizer, a non-heap object (`42`, `'()`), a procedure of two
//! parameters, a non-procedure. The procedure runs on fing's finalizer thread after a
//! collection finds the object unreachable, with the resurrected object as its argument,
//! in dependency order (A's before B's when A points to B). It reaches the interpreter's
//! global state through the `Interp` it carries (a `Gc` and `Arc`s: `Send + Sync`).
//!
//! Weak tables are [`WeakMap`]s (ephemerons): an entry lives exactly while its key does,
//! even when its value points back to the key.

#[path = "../scheme_common/reader.rs"]
mod reader;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use fing::frame::{Frame, FrameFn};
use fing::reflect::TypeBuilder;
use fing::{DropOnlyFrees, Func, Gc, GcCell, Trace, Typed, Value, WeakMap};
use reader::{Datum, Lambda, Node, Prim, Program, Sym};

/// A Scheme value.
#[derive(Clone, Trace)]
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
    Prim(#[gc(untraced)] Prim),
    /// A string.
    Str(Gc<Str>),
    /// A pair.
    Pair(Gc<Pair>),
    /// A procedure made by `lambda`.
    Closure(Gc<Closure>),
    /// A weak table.
    Table(Gc<Table>),
}

/// A string object.
#[derive(Trace)]
struct Str {
    text: String,
}

/// A pair: two mutable slots.
#[derive(Trace)]
struct Pair {
    car: GcCell<Val>,
    cdr: GcCell<Val>,
}

/// A procedure: code and the frame it closes over.
#[derive(Trace)]
struct Closure {
    #[gc(untraced)]
    code: Arc<Lambda>,
    env: Option<Gc<Env>>,
}

// SAFETY: a `Lambda` is compiled code (the reader's `Node` tree: integers, symbols,
// `Box`es, `Vec`s and `Arc`s of more nodes), with no `Drop` of its own anywhere: dropping
// it only frees memory. So a closure's destructor (its `Arc<Lambda>`'s) is not user code,
// and a collection frees garbage closures in its stop, with their frames, instead of
// handing them to the drop thread.
unsafe impl DropOnlyFrees for Lambda {}

/// An environment frame: a call's (or a `let`'s) variables, and the enclosing frame.
#[derive(Trace)]
struct Env {
    slots: GcCell<Vec<Val>>,
    parent: Option<Gc<Env>>,
}

/// The global variables, one cell each.
#[derive(Trace)]
struct Globals {
    slots: Vec<GcCell<Val>>,
}

/// A weak table: one `WeakMap` per kind of key (a `WeakMap`'s keys are one Rust type).
#[derive(Default, Trace)]
struct Table {
    pairs: GcCell<WeakMap<Pair, Val>>,
    strs: GcCell<WeakMap<Str, Val>>,
    closures: GcCell<WeakMap<Closure, Val>>,
    tables: GcCell<WeakMap<Table, Val>>,
}

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
    code: Arc<Code>,
    globals: Gc<Globals>,
    out: Arc<Out>,
}

/// What evaluating a node in tail position leaves to do.
enum Tail<'a> {
    /// Its value.
    Done(Val),
    /// A call to make in place of the current one.
    Call(Val, Vec<Val>),
    /// A body to go on with, in a new frame (a `let`'s).
    Enter(&'a Node, Gc<Env>),
}

thread_local! {
    /// Set on fing's finalizer thread (script finalizers run there): `collect` does not
    /// wait for finalizers there, which would wait for itself.
    static ON_FINALIZER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Bool(false))
}

/// The frame `depth` links up from `env`.
fn up(env: &Option<Gc<Env>>, depth: usize) -> &Env {
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
    Val::Pair(Gc::new(Pair {
        car: GcCell::new(car),
        cdr: GcCell::new(cdr),
    }))
}

fn string(text: String) -> Val {
    Val::Str(Gc::new(Str { text }))
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
        let globals = Gc::new(Globals {
            slots: (0..program.globals.len())
                .map(|_| GcCell::new(Val::Undefined))
                .collect(),
        });
        Interp {
            code: Arc::new(Code {
                program,
                consts,
                size,
            }),
            globals,
            out: Arc::new(out),
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
    fn eval(&self, node: &Node, env: &Option<Gc<Env>>) -> Result<Val> {
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
            Node::Lambda(code) => Val::Closure(Gc::new(Closure {
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
    fn eval_tail<'a>(&self, node: &'a Node, env: &Option<Gc<Env>>) -> Result<Tail<'a>> {
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
    fn eval_body(&self, node: &Node, env: Option<Gc<Env>>) -> Result<Val> {
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
    fn args(&self, f: &Val, args: &[Node], env: &Option<Gc<Env>>) -> Result<Vec<Val>> {
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

    fn let_frame(&self, inits: &[Node], size: usize, env: &Option<Gc<Env>>) -> Result<Gc<Env>> {
        let mut slots = Vec::with_capacity(size);
        for n in inits {
            slots.push(self.eval(n, env)?);
        }
        slots.resize(size, Val::Unspec);
        Ok(Gc::new(Env {
            slots: GcCell::new(slots),
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
            let c = match f {
                Val::Closure(c) => c,
                Val::Prim(p) => {
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
                other => return err(format!("not a procedure: {}", self.repr(&other))),
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
            let mut env = Some(Gc::new(Env {
                slots: GcCell::new(args),
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

    fn pair<'v>(&self, p: Prim, v: &'v Val) -> Result<&'v Gc<Pair>> {
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
            Prim::MakeWeakTable => Val::Table(Gc::new(Table::default())),
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

    fn table<'v>(&self, p: Prim, v: &'v Val) -> Result<&'v Gc<Table>> {
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
                    match cdr {
                        Val::Pair(q) => {
                            s.push(' ');
                            p = q;
                        }
                        Val::Nil => break,
                        other => {
                            s.push_str(" . ");
                            self.show(&other, s);
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

    /// `(collect)`: a full collection, then (except on the finalizer thread) waits for
    /// the finalizers it queued.
    fn collect(&self) {
        fing::collect();
        if !ON_FINALIZER_THREAD.with(|f| f.get()) {
            fing::wait_finalizers();
        }
    }

    /// `(set-finalizer! obj proc)`: fing's `set_finalizer` with the object as a `Value`
    /// and `proc` as a function of as many `interface{}` parameters as it takes, so that
    /// Go's checks (and messages) apply to what the script passed.
    fn set_finalizer(&self, obj: &Val, proc: &Val) -> Result<()> {
        let fin = match proc {
            Val::Closure(c) => {
                let params = vec![Value::TYPE; c.code.params];
                let sig = TypeBuilder::func(&params, &[], false);
                Value::from(Func::from_frame_fn(
                    sig,
                    ScriptFinalizer {
                        interp: self.clone(),
                        proc: proc.clone(),
                    },
                ))
            }
            Val::Prim(_) => Value::from(Func::from_frame_fn(
                <fn(Value)>::TYPE,
                ScriptFinalizer {
                    interp: self.clone(),
                    proc: proc.clone(),
                },
            )),
            other => self.to_value(other),
        };
        match fing::set_finalizer(self.to_value(obj), fin) {
            Ok(_) => Ok(()),
            Err(e) => err(format!("set-finalizer!: {e}")),
        }
    }

    /// `v` as a fing `Value`: heap objects as their handles, immediates as Rust values.
    fn to_value(&self, v: &Val) -> Value {
        match v {
            Val::Undefined | Val::Nil => Value::nil(),
            Val::Unspec => Value::new(()),
            Val::Bool(b) => Value::from(*b),
            Val::Int(n) => Value::from(*n),
            Val::Sym(s) => Value::from(self.code.program.symbols.name(*s)),
            Val::Prim(p) => Value::from(p.name()),
            Val::Str(x) => Value::from(x.clone()),
            Val::Pair(x) => Value::from(x.clone()),
            Val::Closure(x) => Value::from(x.clone()),
            Val::Table(x) => Value::from(x.clone()),
        }
    }

    fn table_set(&self, t: &Table, key: &Val, v: Val) -> Result<()> {
        let v = Gc::new(v);
        let _old = match key {
            Val::Pair(k) => t.pairs.borrow_mut().insert(k, v),
            Val::Str(k) => t.strs.borrow_mut().insert(k, v),
            Val::Closure(k) => t.closures.borrow_mut().insert(k, v),
            Val::Table(k) => t.tables.borrow_mut().insert(k, v),
            _ => return err(self.not_a_key(key)),
        };
        Ok(())
    }

    fn table_ref(&self, t: &Table, key: &Val) -> Result<Option<Val>> {
        let v = match key {
            Val::Pair(k) => t.pairs.borrow().get(k),
            Val::Str(k) => t.strs.borrow().get(k),
            Val::Closure(k) => t.closures.borrow().get(k),
            Val::Table(k) => t.tables.borrow().get(k),
            _ => return err(self.not_a_key(key)),
        };
        Ok(v.map(|v| (*v).clone()))
    }

    fn table_count(&self, t: &Table) -> i64 {
        let n = t.pairs.borrow_mut().len()
            + t.strs.borrow_mut().len()
            + t.closures.borrow_mut().len()
            + t.tables.borrow_mut().len();
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
        (Val::Str(x), Val::Str(y)) => Gc::ptr_eq(x, y),
        (Val::Pair(x), Val::Pair(y)) => Gc::ptr_eq(x, y),
        (Val::Closure(x), Val::Closure(y)) => Gc::ptr_eq(x, y),
        (Val::Table(x), Val::Table(y)) => Gc::ptr_eq(x, y),
        _ => false,
    }
}

/// A script procedure set as a finalizer: the body of the `Func` fing's finalizer thread
/// calls, with the resurrected object in the frame (as an `interface{}`).
struct ScriptFinalizer {
    interp: Interp,
    proc: Val,
}

impl FrameFn for ScriptFinalizer {
    fn call(self: Box<Self>, frame: &mut Frame<'_>) {
        ON_FINALIZER_THREAD.with(|f| f.set(true));
        let obj = frame
            .take_arg::<Value>(0)
            .map(val_of_value)
            .unwrap_or(Val::Unspec);
        if let Err(Error(msg)) = self.interp.apply(self.proc, vec![obj]) {
            self.interp
                .out
                .write(&format!("error in finalizer: {msg}\n"));
        }
    }
}

/// The script value of a finalized object (one of the heap kinds `to_value` makes).
fn val_of_value(v: Value) -> Val {
    let v = match v.downcast::<Gc<Pair>>() {
        Ok(x) => return Val::Pair(x),
        Err(v) => v,
    };
    let v = match v.downcast::<Gc<Str>>() {
        Ok(x) => return Val::Str(x),
        Err(v) => v,
    };
    let v = match v.downcast::<Gc<Closure>>() {
        Ok(x) => return Val::Closure(x),
        Err(v) => v,
    };
    match v.downcast::<Gc<Table>>() {
        Ok(x) => Val::Table(x),
        Err(_) => Val::Unspec,
    }
}

/// Runs `src` on `threads` interpreter threads (sharing the heap, the program and the
/// globals) with `(size ...)` returning `size` if given; returns what it displayed when
/// `capture`, else prints it.
fn run_script(
    src: &str,
    size: Option<i64>,
    threads: usize,
    capture: bool,
) -> std::result::Result<String, String> {
    let program = reader::compile_program(src)?;
    let out = if capture {
        Out::Capture(Mutex::new(String::new()))
    } else {
        Out::Stdout
    };
    let interp = Interp::new(program, size, out);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let interp = interp.clone();
            // Deep non-tail recursion in scripts recurses in the evaluator: a big stack
            // (the twin uses the same).
            std::thread::Builder::new()
                .stack_size(1 << 30)
                .spawn(move || interp.run().map_err(|Error(e)| e))
                .expect("spawn an interpreter thread")
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "an interpreter thread panicked")??;
    }
    Ok(match &*interp.out {
        Out::Capture(m) => std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner())),
        Out::Stdout => String::new(),
    })
}

fn main() {
    let args = reader::parse_args(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("scheme: {e}");
        std::process::exit(2)
    });
    let src = std::fs::read_to_string(&args.file).unwrap_or_else(|e| {
        eprintln!("scheme: {}: {e}", args.file);
        std::process::exit(2)
    });
    let start = Instant::now();
    if let Err(e) = run_script(&src, args.size, args.threads, false) {
        eprintln!("scheme: error: {e}");
        std::process::exit(1);
    }
    println!(
        "script={} wall_ms={:.1} threads={}",
        args.file,
        start.elapsed().as_secs_f64() * 1e3,
        args.threads
    );
}

#[cfg(test)]
mod tests {
    use super::run_script;

    fn run(name: &str, size: i64, threads: usize) -> String {
        let path = format!(
            "{}/examples/scheme/scripts/{name}.scm",
            env!("CARGO_MANIFEST_DIR")
        );
        let src = std::fs::read_to_string(&path).expect("read the script");
        run_script(&src, Some(size), threads, true).expect("the script runs")
    }

    #[test]
    fn fib() {
        assert_eq!(run("fib", 15, 1), "fib(15) = 610\n");
    }

    #[test]
    fn list() {
        assert_eq!(
            run("list", 1000, 1),
            "length: 1000\nsum: 500500\nlist dropped and collected\n"
        );
    }

    #[test]
    fn closures() {
        assert_eq!(
            run("closures", 1000, 1),
            "closures made and called: 1000, their values summed: 499500\ncollected\n"
        );
    }

    #[test]
    fn finalizers() {
        let out = run("finalizers", 1, 1);
        let pos = |s: &str| {
            out.find(s)
                .unwrap_or_else(|| panic!("`{s}` is not in the output:\n{out}"))
        };
        pos("finalized: (resource . 1)");
        assert!(
            pos("finalizer of A") < pos("finalizer of B"),
            "A's finalizer runs first:\n{out}"
        );
        pos("finalizer of A, B still reachable: (B)");
        pos("resurrected: (phoenix)");
        pos("error: set-finalizer!: fing::set_finalizer: finalizer already set");
        pos("error: set-finalizer!: fing::set_finalizer: first argument is i64, not pointer");
        pos("error: set-finalizer!: fing::set_finalizer: first argument is nil");
        pos("error: set-finalizer!: fing::set_finalizer: cannot pass");
        assert!(!out.contains("error in finalizer"), "{out}");
    }

    #[test]
    fn weak() {
        assert_eq!(
            run("weak", 100, 1),
            "entries while the keys live: 101\n\
             the value of the last key: 9801\n\
             entries after the keys are dropped: 0\n"
        );
    }

    #[test]
    fn two_threads() {
        assert_eq!(run("fib", 15, 2), "fib(15) = 610\n".repeat(2));
        let out = run("list", 500, 2);
        assert_eq!(out.matches("length: 500\n").count(), 2, "{out}");
        assert_eq!(out.matches("sum: 125250\n").count(), 2, "{out}");
    }
}
