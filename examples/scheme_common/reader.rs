//! The collector-independent half of the Scheme examples (`examples/scheme` on fing,
//! `examples/scheme_rustcc` on rust-cc 0.6): the reader (text to s-expressions), symbol
//! interning, the primitives' names, and the compiler from s-expressions to an AST whose
//! variables are resolved to slots.
//!
//! Both interpreters include this file (`#[path = "../scheme_common/reader.rs"] mod
//! reader;`), so the two differ only in what depends on the collector: the value
//! representation's handle types and the evaluator that walks this AST. The AST holds no
//! handles: literals that need a heap object (strings, quoted lists) are indices into a
//! constant table ([`Program::consts`]) that each interpreter turns into its own values
//! once, before running. Nothing is looked up by name at run time:
//! - a local variable is a `(depth, slot)` pair: `depth` parent links up the chain of
//!   environment frames, then slot `slot` of that frame's vector. A frame is made per call
//!   of a `lambda` (its parameters, then its internal `define`s) and per `let` (its
//!   bindings, then the body's internal `define`s);
//! - a global is an index into the global vector (one slot per name the program mentions
//!   at top level);
//! - a primitive in operator position is a direct call (`Node::Prim1`, `Prim2`, `PrimN`),
//!   with no procedure value and no argument vector for one or two arguments. Primitives
//!   cannot be redefined (a `define` of one is a compile error), which is what allows it.
//!
//! The language: integers (i64), strings, symbols, booleans, the empty list, pairs;
//! `quote` (and `'x`), `if`, `define` (also `(define (f x ...) body...)`), `set!`,
//! `lambda`, `let`, `begin`, `and`, `or`; the primitives in [`Prim`]. Comments start with
//! `;`. No macros, no dotted syntax, no variadic lambdas, no tail `cond`: a small Scheme
//! to benchmark a collector with, not a complete one.

use std::collections::HashMap;
use std::sync::Arc;

/// An interned symbol: an index into the [`Symbols`] table.
pub(crate) type Sym = u32;

/// The symbol table: names to indices and back.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    names: Vec<String>,
    ids: HashMap<String, Sym>,
}

impl Symbols {
    /// The symbol named `name`, interned on first use.
    pub(crate) fn intern(&mut self, name: &str) -> Sym {
        if let Some(&s) = self.ids.get(name) {
            return s;
        }
        let s = Sym::try_from(self.names.len()).expect("fewer than 2^32 symbols");
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), s);
        s
    }

    /// The name of `s`.
    pub(crate) fn name(&self, s: Sym) -> &str {
        &self.names[s as usize]
    }
}

/// An s-expression as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Datum {
    /// An integer.
    Int(i64),
    /// A string literal.
    Str(String),
    /// A symbol.
    Sym(Sym),
    /// `#t` or `#f`.
    Bool(bool),
    /// A proper list (`()` is the empty one).
    List(Vec<Datum>),
}

/// Reads every s-expression of `src`.
pub(crate) fn read_all(src: &str, syms: &mut Symbols) -> Result<Vec<Datum>, String> {
    let mut r = Reader {
        s: src.as_bytes(),
        i: 0,
        line: 1,
    };
    let mut out = Vec::new();
    loop {
        r.skip_space();
        if r.i >= r.s.len() {
            return Ok(out);
        }
        out.push(r.datum(syms)?);
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Reader<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("read error, line {}: {what}", self.line))
    }

    fn skip_space(&mut self) {
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b' ' | b'\t' | b'\r' => self.i += 1,
                b';' => {
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn datum(&mut self, syms: &mut Symbols) -> Result<Datum, String> {
        self.skip_space();
        let Some(&c) = self.s.get(self.i) else {
            return self.err("unexpected end of input");
        };
        match c {
            b'(' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_space();
                    match self.s.get(self.i) {
                        None => return self.err("unclosed `(`"),
                        Some(b')') => {
                            self.i += 1;
                            return Ok(Datum::List(items));
                        }
                        Some(_) => items.push(self.datum(syms)?),
                    }
                }
            }
            b')' => self.err("unexpected `)`"),
            b'\'' => {
                self.i += 1;
                let quoted = self.datum(syms)?;
                Ok(Datum::List(vec![Datum::Sym(syms.intern("quote")), quoted]))
            }
            b'"' => {
                self.i += 1;
                let mut text = String::new();
                loop {
                    match self.s.get(self.i) {
                        None => return self.err("unclosed string"),
                        Some(b'"') => {
                            self.i += 1;
                            return Ok(Datum::Str(text));
                        }
                        Some(b'\\') => {
                            let esc = self.s.get(self.i + 1).copied();
                            text.push(match esc {
                                Some(b'n') => '\n',
                                Some(b't') => '\t',
                                Some(b'"') => '"',
                                Some(b'\\') => '\\',
                                _ => return self.err("unknown escape in string"),
                            });
                            self.i += 2;
                        }
                        Some(_) => {
                            // Copy one UTF-8 character.
                            let rest = std::str::from_utf8(&self.s[self.i..])
                                .map_err(|_| "invalid UTF-8 in string".to_string())?;
                            let ch = rest.chars().next().expect("not at the end");
                            if ch == '\n' {
                                self.line += 1;
                            }
                            text.push(ch);
                            self.i += ch.len_utf8();
                        }
                    }
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && !matches!(
                        self.s[self.i],
                        b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b';' | b'"' | b'\''
                    )
                {
                    self.i += 1;
                }
                let tok = std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| "invalid UTF-8 in a token".to_string())?;
                Ok(match tok {
                    "#t" => Datum::Bool(true),
                    "#f" => Datum::Bool(false),
                    _ => match tok.parse::<i64>() {
                        Ok(n) => Datum::Int(n),
                        Err(_) if tok.starts_with('#') => {
                            return self.err(&format!("unknown token `{tok}`"))
                        }
                        Err(_) => Datum::Sym(syms.intern(tok)),
                    },
                })
            }
        }
    }
}

macro_rules! prims {
    ($($name:ident $text:literal $min:literal $max:expr,)*) => {
        /// The primitives: built-in procedures, called directly when they are the operator
        /// of a call, and values (`Val::Prim`) anywhere else.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Prim { $($name,)* }

        impl Prim {
            /// Every primitive.
            pub(crate) const ALL: &'static [Prim] = &[$(Prim::$name,)*];

            /// The name scripts call it by.
            pub(crate) fn name(self) -> &'static str {
                match self { $(Prim::$name => $text,)* }
            }

            /// The fewest and most arguments it takes.
            pub(crate) fn arity(self) -> (usize, usize) {
                match self { $(Prim::$name => ($min, $max),)* }
            }
        }
    };
}

prims! {
    Add "+" 0 usize::MAX,
    Sub "-" 1 usize::MAX,
    Mul "*" 0 usize::MAX,
    Lt "<" 2 2,
    Gt ">" 2 2,
    Le "<=" 2 2,
    Ge ">=" 2 2,
    NumEq "=" 2 2,
    Eq "eq?" 2 2,
    Not "not" 1 1,
    Cons "cons" 2 2,
    Car "car" 1 1,
    Cdr "cdr" 1 1,
    SetCar "set-car!" 2 2,
    SetCdr "set-cdr!" 2 2,
    IsNull "null?" 1 1,
    IsPair "pair?" 1 1,
    List "list" 0 usize::MAX,
    Display "display" 1 1,
    Newline "newline" 0 0,
    Print "print" 0 usize::MAX,
    Collect "collect" 0 0,
    SetFinalizer "set-finalizer!" 2 2,
    MakeWeakTable "make-weak-table" 0 0,
    WeakTableSet "weak-table-set!" 3 3,
    WeakTableRef "weak-table-ref" 3 3,
    WeakTableCount "weak-table-count" 1 1,
    CatchError "catch-error" 2 2,
    Size "size" 1 1,
}

/// A compiled expression. Children are boxed; lambdas are shared (`Arc`) so that a
/// closure holds its code without copying it.
#[derive(Debug)]
pub(crate) enum Node {
    /// An integer literal.
    Int(i64),
    /// `#t` or `#f`.
    Bool(bool),
    /// `'()`.
    Nil,
    /// A literal from the constant table (a string, a symbol, a quoted list).
    Const(usize),
    /// A primitive as a value.
    PrimRef(Prim),
    /// A variable of the innermost frame: its slot.
    Local(usize),
    /// A variable `depth` frames up: (depth, slot).
    Outer(usize, usize),
    /// A global: its index.
    Global(usize),
    /// `set!` or an internal `define` of a local: (depth, slot, value).
    SetLocal(usize, usize, Box<Node>),
    /// `set!` of a global (an error if it is still unbound).
    SetGlobal(usize, Box<Node>),
    /// A top-level `define`.
    DefineGlobal(usize, Box<Node>),
    /// `(if c t e)`; a missing `e` is unspecified.
    If(Box<Node>, Box<Node>, Option<Box<Node>>),
    /// `(begin e ...)`, a body: the value of the last.
    Begin(Box<[Node]>),
    /// `(and e ...)`.
    And(Box<[Node]>),
    /// `(or e ...)`.
    Or(Box<[Node]>),
    /// `(lambda (p ...) body ...)`: makes a closure over the current frame.
    Lambda(Arc<Lambda>),
    /// `(let ((x e) ...) body ...)`: a new frame of `frame_size` slots, the bindings' values
    /// first.
    Let {
        /// The bindings' values, evaluated in the enclosing frame.
        inits: Box<[Node]>,
        /// Bindings plus the body's internal defines.
        frame_size: usize,
        /// The body.
        body: Box<Node>,
    },
    /// A call of a procedure value.
    Call(Box<Node>, Box<[Node]>),
    /// A primitive called with one argument.
    Prim1(Prim, Box<Node>),
    /// A primitive called with two arguments.
    Prim2(Prim, Box<Node>, Box<Node>),
    /// A primitive called with any other number of arguments.
    PrimN(Prim, Box<[Node]>),
}

/// A `lambda`'s code.
#[derive(Debug)]
pub(crate) struct Lambda {
    /// Its name, if it was defined as `(define (name ...) ...)` or `(define name (lambda ...))`.
    pub(crate) name: Option<Sym>,
    /// How many arguments it takes.
    pub(crate) params: usize,
    /// Parameters plus internal defines: the size of a call's frame.
    pub(crate) frame_size: usize,
    /// The body.
    pub(crate) body: Node,
}

/// A compiled program: its top-level forms, and what the interpreter needs to run them.
#[derive(Debug)]
pub(crate) struct Program {
    /// The top-level forms, in order.
    pub(crate) forms: Vec<Node>,
    /// The literals `Node::Const` indexes.
    pub(crate) consts: Vec<Datum>,
    /// The globals' names, by index.
    pub(crate) globals: Vec<Sym>,
    /// The symbol table (for printing symbols and naming globals in errors).
    pub(crate) symbols: Symbols,
}

/// Reads and compiles a whole program.
pub(crate) fn compile_program(src: &str) -> Result<Program, String> {
    let mut symbols = Symbols::default();
    let data = read_all(src, &mut symbols)?;
    let mut c = Compiler::new(&mut symbols);
    let mut forms = Vec::with_capacity(data.len());
    for d in &data {
        forms.push(c.expr(d, true)?);
    }
    let Compiler {
        consts, globals, ..
    } = c;
    Ok(Program {
        forms,
        consts,
        globals,
        symbols,
    })
}

/// The special forms' symbols.
#[derive(Clone, Copy)]
struct Specials {
    quote: Sym,
    if_: Sym,
    define: Sym,
    set: Sym,
    lambda: Sym,
    let_: Sym,
    begin: Sym,
    and: Sym,
    or: Sym,
}

struct Compiler<'a> {
    syms: &'a mut Symbols,
    sp: Specials,
    prims: HashMap<Sym, Prim>,
    /// The frames in scope, innermost last: each its variables' names by slot.
    scopes: Vec<Vec<Sym>>,
    globals: Vec<Sym>,
    global_ids: HashMap<Sym, usize>,
    consts: Vec<Datum>,
}

impl<'a> Compiler<'a> {
    fn new(syms: &'a mut Symbols) -> Compiler<'a> {
        let sp = Specials {
            quote: syms.intern("quote"),
            if_: syms.intern("if"),
            define: syms.intern("define"),
            set: syms.intern("set!"),
            lambda: syms.intern("lambda"),
            let_: syms.intern("let"),
            begin: syms.intern("begin"),
            and: syms.intern("and"),
            or: syms.intern("or"),
        };
        let prims = Prim::ALL
            .iter()
            .map(|&p| (syms.intern(p.name()), p))
            .collect();
        Compiler {
            syms,
            sp,
            prims,
            scopes: Vec::new(),
            globals: Vec::new(),
            global_ids: HashMap::new(),
            consts: Vec::new(),
        }
    }

    fn name(&self, s: Sym) -> String {
        self.syms.name(s).to_string()
    }

    fn global(&mut self, s: Sym) -> usize {
        if let Some(&g) = self.global_ids.get(&s) {
            return g;
        }
        let g = self.globals.len();
        self.globals.push(s);
        self.global_ids.insert(s, g);
        g
    }

    /// Where `s` lives: a local (depth, slot), else `None` (a global or a primitive).
    fn lookup(&self, s: Sym) -> Option<(usize, usize)> {
        for (depth, scope) in self.scopes.iter().rev().enumerate() {
            if let Some(slot) = scope.iter().rposition(|&n| n == s) {
                return Some((depth, slot));
            }
        }
        None
    }

    fn constant(&mut self, d: &Datum) -> Node {
        match d {
            Datum::Int(n) => Node::Int(*n),
            Datum::Bool(b) => Node::Bool(*b),
            Datum::List(items) if items.is_empty() => Node::Nil,
            _ => {
                self.consts.push(d.clone());
                Node::Const(self.consts.len() - 1)
            }
        }
    }

    fn expr(&mut self, d: &Datum, top: bool) -> Result<Node, String> {
        match d {
            Datum::Sym(s) => Ok(match self.lookup(*s) {
                Some((0, slot)) => Node::Local(slot),
                Some((depth, slot)) => Node::Outer(depth, slot),
                None => match self.prims.get(s) {
                    Some(&p) => Node::PrimRef(p),
                    None => Node::Global(self.global(*s)),
                },
            }),
            Datum::List(items) if !items.is_empty() => self.form(items, top),
            Datum::List(_) => Err("`()` must be quoted".into()),
            _ => Ok(self.constant(d)),
        }
    }

    fn body(&mut self, forms: &[Datum]) -> Result<Node, String> {
        if forms.is_empty() {
            return Err("empty body".into());
        }
        let mut nodes = forms
            .iter()
            .map(|f| self.expr(f, false))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if nodes.len() == 1 {
            nodes.pop().expect("one node")
        } else {
            Node::Begin(nodes.into_boxed_slice())
        })
    }

    /// The names a body defines at its start (its internal defines), in order.
    fn internal_defines(&self, forms: &[Datum]) -> Vec<Sym> {
        let mut names = Vec::new();
        for f in forms {
            let Datum::List(items) = f else { break };
            if items.first() != Some(&Datum::Sym(self.sp.define)) {
                break;
            }
            match items.get(1) {
                Some(Datum::Sym(s)) => names.push(*s),
                Some(Datum::List(sig)) => {
                    if let Some(Datum::Sym(s)) = sig.first() {
                        names.push(*s)
                    }
                }
                _ => {}
            }
        }
        names
    }

    /// Compiles `body` in a new frame whose first slots are `vars`; returns the body and
    /// the frame's size.
    fn frame_body(&mut self, vars: Vec<Sym>, body: &[Datum]) -> Result<(Node, usize), String> {
        let mut scope = vars;
        scope.extend(self.internal_defines(body));
        let size = scope.len();
        self.scopes.push(scope);
        let node = self.body(body);
        self.scopes.pop();
        Ok((node?, size))
    }

    fn lambda(
        &mut self,
        name: Option<Sym>,
        params: &Datum,
        body: &[Datum],
    ) -> Result<Node, String> {
        let Datum::List(ps) = params else {
            return Err("lambda: the parameters must be a list of symbols".into());
        };
        let vars = ps
            .iter()
            .map(|p| match p {
                Datum::Sym(s) => Ok(*s),
                _ => Err("lambda: a parameter is not a symbol".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let params = vars.len();
        let (body, frame_size) = self.frame_body(vars, body)?;
        Ok(Node::Lambda(Arc::new(Lambda {
            name,
            params,
            frame_size,
            body,
        })))
    }

    fn form(&mut self, items: &[Datum], top: bool) -> Result<Node, String> {
        let sp = self.sp;
        let head = match &items[0] {
            Datum::Sym(s) if self.lookup(*s).is_none() => Some(*s),
            _ => None,
        };
        let n = items.len();
        match head {
            Some(s) if s == sp.quote => {
                if n != 2 {
                    return Err("quote takes one datum".into());
                }
                Ok(self.constant(&items[1]))
            }
            Some(s) if s == sp.if_ => {
                if !(3..=4).contains(&n) {
                    return Err("if takes a test, a consequent and an optional alternative".into());
                }
                let c = self.expr(&items[1], false)?;
                let t = self.expr(&items[2], false)?;
                let e = match items.get(3) {
                    Some(e) => Some(Box::new(self.expr(e, false)?)),
                    None => None,
                };
                Ok(Node::If(Box::new(c), Box::new(t), e))
            }
            Some(s) if s == sp.define => {
                let (name, value) = match items.get(1) {
                    Some(Datum::Sym(name)) if n == 3 => {
                        let v = match &items[2] {
                            Datum::List(l)
                                if l.first() == Some(&Datum::Sym(sp.lambda)) && l.len() >= 3 =>
                            {
                                self.lambda(Some(*name), &l[1], &l[2..])?
                            }
                            other => self.expr(other, false)?,
                        };
                        (*name, v)
                    }
                    Some(Datum::List(sig)) if n >= 3 => match sig.first() {
                        Some(Datum::Sym(name)) => {
                            let params = Datum::List(sig[1..].to_vec());
                            (*name, self.lambda(Some(*name), &params, &items[2..])?)
                        }
                        _ => return Err("define: a procedure's name must be a symbol".into()),
                    },
                    _ => return Err("define takes a name and a value".into()),
                };
                if self.prims.contains_key(&name) && self.lookup(name).is_none() {
                    return Err(format!(
                        "define: cannot redefine the primitive `{}`",
                        self.name(name)
                    ));
                }
                match self.lookup(name) {
                    Some((depth, slot)) if !top => Ok(Node::SetLocal(depth, slot, Box::new(value))),
                    _ if top || self.scopes.is_empty() => {
                        Ok(Node::DefineGlobal(self.global(name), Box::new(value)))
                    }
                    _ => Err(format!(
                        "define of `{}`: internal defines must come first in a body",
                        self.name(name)
                    )),
                }
            }
            Some(s) if s == sp.set => {
                let (Some(Datum::Sym(name)), 3) = (items.get(1), n) else {
                    return Err("set! takes a variable and a value".into());
                };
                let v = Box::new(self.expr(&items[2], false)?);
                Ok(match self.lookup(*name) {
                    Some((depth, slot)) => Node::SetLocal(depth, slot, v),
                    None if self.prims.contains_key(name) => {
                        return Err(format!(
                            "set!: cannot assign the primitive `{}`",
                            self.name(*name)
                        ))
                    }
                    None => Node::SetGlobal(self.global(*name), v),
                })
            }
            Some(s) if s == sp.lambda => {
                if n < 3 {
                    return Err("lambda takes parameters and a body".into());
                }
                self.lambda(None, &items[1], &items[2..])
            }
            Some(s) if s == sp.let_ => {
                let (Some(Datum::List(bindings)), true) = (items.get(1), n >= 3) else {
                    return Err("let takes a list of bindings and a body".into());
                };
                let mut vars = Vec::new();
                let mut inits = Vec::new();
                for b in bindings {
                    match b {
                        Datum::List(kv) if kv.len() == 2 => {
                            let Datum::Sym(k) = kv[0] else {
                                return Err("let: a binding's name is not a symbol".into());
                            };
                            vars.push(k);
                            inits.push(self.expr(&kv[1], false)?);
                        }
                        _ => return Err("let: a binding is not (name value)".into()),
                    }
                }
                let (body, frame_size) = self.frame_body(vars, &items[2..])?;
                Ok(Node::Let {
                    inits: inits.into_boxed_slice(),
                    frame_size,
                    body: Box::new(body),
                })
            }
            Some(s) if s == sp.begin => {
                if n == 1 {
                    return Err("begin takes at least one expression".into());
                }
                let nodes = items[1..]
                    .iter()
                    .map(|f| self.expr(f, top))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Node::Begin(nodes.into_boxed_slice()))
            }
            Some(s) if s == sp.and || s == sp.or => {
                let and = s == sp.and;
                let nodes = items[1..]
                    .iter()
                    .map(|f| self.expr(f, false))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_boxed_slice();
                Ok(if and {
                    Node::And(nodes)
                } else {
                    Node::Or(nodes)
                })
            }
            Some(s) if self.prims.contains_key(&s) => {
                let p = self.prims[&s];
                let (min, max) = p.arity();
                let argc = n - 1;
                if argc < min || argc > max {
                    return Err(format!(
                        "{}: called with {argc} arguments, takes {}",
                        p.name(),
                        if min == max {
                            min.to_string()
                        } else if max == usize::MAX {
                            format!("at least {min}")
                        } else {
                            format!("{min} to {max}")
                        }
                    ));
                }
                let mut args = items[1..]
                    .iter()
                    .map(|f| self.expr(f, false))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(match args.len() {
                    1 => Node::Prim1(p, Box::new(args.pop().expect("one"))),
                    2 => {
                        let b = args.pop().expect("two");
                        let a = args.pop().expect("two");
                        Node::Prim2(p, Box::new(a), Box::new(b))
                    }
                    _ => Node::PrimN(p, args.into_boxed_slice()),
                })
            }
            _ => {
                let f = self.expr(&items[0], false)?;
                let args = items[1..]
                    .iter()
                    .map(|a| self.expr(a, false))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Node::Call(Box::new(f), args.into_boxed_slice()))
            }
        }
    }
}

/// The command line both interpreters take: `FILE [SIZE] [--threads N]`.
#[derive(Debug)]
pub(crate) struct Args {
    /// The script.
    pub(crate) file: String,
    /// What `(size default)` returns instead of `default`.
    pub(crate) size: Option<i64>,
    /// Interpreter threads (fing only).
    pub(crate) threads: usize,
}

/// Parses the command line (without the program name).
pub(crate) fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut file = None;
    let mut size = None;
    let mut threads = 1;
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        if a == "--threads" {
            threads = args
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&n| n >= 1)
                .ok_or("--threads takes a positive number")?;
        } else if file.is_none() {
            file = Some(a);
        } else if size.is_none() {
            size = Some(
                a.parse()
                    .map_err(|_| format!("SIZE `{a}` is not an integer"))?,
            );
        } else {
            return Err(format!("unexpected argument `{a}`"));
        }
    }
    Ok(Args {
        file: file.ok_or("usage: FILE [SIZE] [--threads N]")?,
        size,
        threads,
    })
}
