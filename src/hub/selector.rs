//! Topic selectors (Mercure §"Topic Selectors"): the one place that decides whether a topic
//! matches what a subscriber asked for, or what a token allows.
//!
//! Owns: parsing and matching selectors, their cost bounds. May call: nothing of the crate.
//!
//! A selector is `*`, a URI Template (RFC 6570), or any other string compared exactly. The
//! shard compiles each distinct selector once per core and shares it between the
//! subscribers that use it.
//!
//! ## Templates: a linear automaton of our own
//!
//! A template compiles into a small program for a Thompson NFA that runs over the topic in
//! lockstep (a "Pike VM" without captures): compiling is one pass over the text, and the
//! program has a few instructions per character of the template (at most
//! [`Template::MAX_INSTS_PER_BYTE`]), so a selector's memory is linear in its length with a
//! small constant. Matching keeps at most one thread per instruction, so it is linear in
//! the topic's length times the program's length, with no backtracking.
//!
//! Why not the `regex` crate (which this module used before): a prefix modifier `{v:N}`
//! becomes a counted repetition, and finite automata expand those into `N` copies. Eight
//! bytes of `{v:9999}` cost 28 ms and 7 MB to compile; even a plain template held ~19 KB.
//! Here a prefix modifier is one counter: a thread carries how many value units it has
//! consumed, and of two threads at the same instruction only the one with the smaller count
//! is kept (a bound that is only an upper bound cannot prefer the larger), so the count
//! costs no extra threads.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// A compiled topic selector.
#[derive(Clone)]
pub enum Selector {
    /// `*`: every topic.
    Any,
    /// A string compared byte for byte (URIs and any string that is not a valid template).
    Exact(Box<str>),
    /// A URI Template; it also matches its own text exactly (spec step 2).
    Template(Arc<Template>),
}

/// A compiled URI Template.
pub struct Template {
    raw: Box<str>,
    /// Length of the text before the first expression: a topic not starting with it cannot
    /// match, and the program starts after it.
    prefix: usize,
    /// Length of the text after the last expression: a topic not ending with it cannot
    /// match either.
    suffix: usize,
    prog: Box<[Inst]>,
    /// Instructions of the program that consume a byte: the most threads a match keeps,
    /// so what testing one topic byte can cost (0 for a run).
    width: u32,
    /// The common shape `prefix{var}suffix` with one unnamed, unbounded expression: its
    /// language is a run of value units, checked by one scan without the program.
    run: Option<Run>,
}

/// The language of one unnamed, unbounded expression: empty, or (after `first`, when the
/// operator has one) any run of value units of `class` and the bytes of `extra` (the
/// separator, and `=` when a variable is exploded). Adjacent runs merge (see
/// [`Run::then`]); `{/a}{/b}` becomes up to `times` segments, each `first` and a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: Option<u8>,
    class: u8,
    extra: [u8; 2],
    /// Most `first`-led segments (1 unless merged; more only when `first` is not itself a
    /// value byte, so that it marks where a segment starts).
    times: u16,
    /// A prefix modifier's bound, in characters (one variable, no `first`, or merged from
    /// such). Bounded runs are matched by the program, never by [`Run::matches`].
    bound: Option<u16>,
}

impl Run {
    /// Whether `s` (the topic between the literal prefix and suffix) is in the language.
    fn matches(self, s: &[u8]) -> bool {
        let s = match (self.first, s.split_first()) {
            (_, None) => return true,
            (None, _) => s,
            (Some(f), Some((&b, rest))) if b == f => rest,
            (Some(_), Some(_)) => return false,
        };
        let mut segments = 1;
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            if self.accepts(b) {
                i += 1;
            } else if b == b'%'
                && i + 2 < s.len()
                && CLASSES[s[i + 1] as usize] & HEX != 0
                && CLASSES[s[i + 2] as usize] & HEX != 0
            {
                i += 3;
            } else if Some(b) == self.first && segments < self.times {
                segments += 1;
                i += 1;
            } else {
                return false;
            }
        }
        true
    }

    /// Whether `b` is a value byte of the run (any run also takes percent-encoded octets).
    #[inline]
    fn accepts(self, b: u8) -> bool {
        CLASSES[b as usize] & self.class != 0 || self.extra.contains(&b)
    }

    /// The value bytes, as a 256-bit set.
    fn bytes(self) -> [u64; 4] {
        let mut set = [0u64; 4];
        for (bit, class_set) in CLASS_SETS.iter().enumerate() {
            if self.class & (1 << bit) != 0 {
                for (w, c) in set.iter_mut().zip(class_set) {
                    *w |= c;
                }
            }
        }
        for b in self.extra {
            set[b as usize / 64] |= 1 << (b % 64);
        }
        set
    }

    /// Whether every value byte of `self` is one of `other`.
    fn within(self, other: Run) -> bool {
        let (a, b) = (self.bytes(), other.bytes());
        a.iter().zip(&b).all(|(a, b)| a & !b == 0)
    }

    /// The run whose language is this one followed by `next`, if there is one. Adjacent
    /// expressions taking the same bytes (`{a}{b}`, `{+a}{b}`, `{/a}{/b}`) would otherwise
    /// leave the matcher a thread for every way of cutting the topic between them, so
    /// matching would cost the topic's length times the number of expressions.
    fn then(self, next: Run) -> Option<Run> {
        let unbounded = self.bound.is_none();
        match (self.first, next.first) {
            // A* B is A* when B's bytes are A's; A B* is B* when A's are B's.
            (None, None) if unbounded && next.within(self) => Some(self),
            (None, None) if next.bound.is_none() && self.within(next) => Some(next),
            // A{0,m} A{0,n} is A{0,m+n} (in characters, as prefixes count).
            (None, None) => match (self.bound, next.bound) {
                (Some(m), Some(n)) if self.within(next) && next.within(self) => Some(Run {
                    bound: Some(m.checked_add(n)?),
                    ..self
                }),
                _ => None,
            },
            // A* (ε | f B) is A* when f and B's bytes are A's.
            (None, Some(f)) if unbounded && self.accepts(f) && next.within(self) => Some(self),
            (Some(f), Some(g)) if f == g && unbounded => {
                if self.accepts(f) && next.within(self) {
                    // (ε | f A*)(ε | f B) is ε | f A*.
                    Some(self)
                } else if next.bound.is_none()
                    && !self.accepts(f)
                    && self.within(next)
                    && next.within(self)
                {
                    // Segments led by f: at most as many as both together.
                    let times = self.times.checked_add(next.times)?;
                    Some(Run { times, ..self })
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// One instruction of a template's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inst {
    /// Consume this byte.
    Byte(u8),
    /// Consume one byte of the classes in this mask (see [`CLASSES`]).
    Class(u8),
    /// Continue both at the next instruction and at this one.
    Split(u32),
    /// Continue at this instruction.
    Jmp(u32),
    /// Start counting value units from zero.
    Reset,
    /// One more value unit; a thread past this many dies (a prefix modifier's bound).
    Count(u16),
    /// The template matched, if the topic ends here.
    Match,
    /// A thread here dies.
    Fail,
}

/// Character classes, as bits of [`CLASSES`].
const UNRESERVED: u8 = 1;
const RESERVED: u8 = 2;
const HEX: u8 = 4;
const COMMA: u8 = 8;
/// First hex digit of an octet that starts a UTF-8 character (`0`–`7`, `C`–`F`).
const LEAD: u8 = 16;
/// First hex digit of a UTF-8 continuation octet (`8`–`B`).
const CONT: u8 = 32;

/// The classes of every byte (RFC 3986 unreserved and reserved characters, hex digits).
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            t[b] |= UNRESERVED;
        }
        if matches!(
            c,
            b':' | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        ) {
            t[b] |= RESERVED;
        }
        if c.is_ascii_hexdigit() {
            t[b] |= HEX;
            t[b] |= if matches!(c, b'8' | b'9' | b'a' | b'b' | b'A' | b'B') {
                CONT
            } else {
                LEAD
            };
        }
        if c == b',' {
            t[b] |= COMMA;
        }
        b += 1;
    }
    t
};

/// The bytes of each class bit of [`CLASSES`], as 256-bit sets.
static CLASS_SETS: [[u64; 4]; 6] = {
    let mut sets = [[0u64; 4]; 6];
    let mut b = 0;
    while b < 256 {
        let mut bit = 0;
        while bit < 6 {
            if CLASSES[b] & (1 << bit) != 0 {
                sets[bit][b / 64] |= 1 << (b % 64);
            }
            bit += 1;
        }
        b += 1;
    }
    sets
};

/// Most expressions in a template a subscriber may send (see [`Selector::refusal`]).
pub const MAX_EXPRESSIONS: usize = 16;

impl Selector {
    /// Why a subscriber's selector is refused before it is compiled, if it is: a template
    /// with more than [`MAX_EXPRESSIONS`] expressions. Adjacent expressions that take the
    /// same bytes merge into one, but others (`{+a}{?b}{+c}{?d}…`) each keep a matching
    /// thread alive for every byte of a topic; sixteen is more than real templates use and
    /// keeps that cost small. A topic is an IRI, which has no `{`, so every `{` counts.
    pub fn refusal(raw: &str) -> Option<String> {
        let exprs = raw.bytes().filter(|&b| b == b'{').count();
        (exprs > MAX_EXPRESSIONS)
            .then(|| format!("has {exprs} template expressions (at most {MAX_EXPRESSIONS})"))
    }

    /// Why a compiled selector is refused to a subscriber, if it is: a template whose
    /// matching may keep more than [`Template::MAX_WIDTH`] threads (long literals between
    /// expressions, many variables), each of which costs every event's test of it per topic
    /// byte.
    pub fn too_complex(&self) -> Option<String> {
        let width = self.width();
        (width > Template::MAX_WIDTH).then(|| {
            format!(
                "is too complex to match (needs {width} matching threads, at most {})",
                Template::MAX_WIDTH
            )
        })
    }

    /// The most threads matching a topic against this selector keeps (0 when it needs no
    /// program): testing a topic costs at most this many steps per byte.
    pub fn width(&self) -> usize {
        match self {
            Selector::Template(t) => t.width as usize,
            _ => 0,
        }
    }

    /// Compiles a selector as it appears in a `topic` parameter or a JWT claim.
    pub fn parse(raw: &str) -> Selector {
        if raw == "*" {
            return Selector::Any;
        }
        if raw.contains('{') {
            if let Some(t) = Template::compile(raw) {
                return Selector::Template(Arc::new(t));
            }
        }
        Selector::Exact(raw.into())
    }

    /// Whether `topic` matches this selector.
    #[inline]
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(s) => **s == *topic,
            Selector::Template(t) => t.matches(topic),
        }
    }

    /// Whether any of `topics` matches.
    pub fn matches_any<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        topics.iter().any(|t| self.matches(t.as_ref()))
    }

    /// The string a topic must equal, when the selector is exact: such selectors are found
    /// through a hash lookup by topic instead of being tested one by one.
    pub fn exact(&self) -> Option<&str> {
        match self {
            Selector::Exact(s) => Some(s),
            _ => None,
        }
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(s) => s,
            Selector::Template(t) => &t.raw,
        }
    }

    /// Heap bytes this compiled selector holds.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Selector::Any => 0,
            Selector::Exact(s) => s.len(),
            Selector::Template(t) => t.heap_bytes(),
        }
    }

    /// What a core's template budget (`max_template_bytes`) counts for this selector: its
    /// heap bytes, plus [`Selector::BYTES_PER_THREAD`] for each thread its matches may keep
    /// (the work each event's test of it can cost, per topic byte).
    pub fn budget_bytes(&self) -> usize {
        match self {
            Selector::Template(t) => t.heap_bytes() + Selector::BYTES_PER_THREAD * t.width as usize,
            _ => self.heap_bytes(),
        }
    }

    /// The budget charge per matching thread: sized so that a core whose budget is full of
    /// the costliest templates a subscriber may send spends about half a millisecond per
    /// event on a short URL topic (`bench-results/hostile-2026-12-02.md`).
    pub const BYTES_PER_THREAD: usize = 64;
}

impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Selector {}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Any => f.write_str("Any"),
            Selector::Exact(s) => write!(f, "Exact({s:?})"),
            Selector::Template(t) => write!(f, "Template({:?})", t.raw),
        }
    }
}

impl Template {
    /// Most instructions compiled per byte of template text (exploded named variables,
    /// `{;a*,b*}`, are the densest case); the bound the memory figure in the README rests on.
    pub const MAX_INSTS_PER_BYTE: usize = 12;

    /// Most matching threads (instructions that consume a byte) a subscriber's template
    /// may have: what testing one topic byte against it costs at worst. Real templates
    /// need a few dozen (`https://x/{a}/chapters/{b}{?lang}`: 28).
    pub const MAX_WIDTH: usize = 256;

    /// Compiles `raw`, or `None` when it is not a valid URI Template (it is then an exact
    /// selector, as the spec says for any other string).
    pub fn compile(raw: &str) -> Option<Template> {
        Template::compile_with(raw, true)
    }

    /// Compiles `raw`; with `merge`, adjacent expressions whose concatenated languages are
    /// one run (see [`Run::then`]) become that run. Tests compile both ways and compare.
    fn compile_with(raw: &str, merge: bool) -> Option<Template> {
        let mut p = Program::default();
        let mut prefix = None;
        let mut suffix_start = 0;
        // Expressions after merging, and the last one when it is a run that ends the
        // program so far (where it starts, what it is): a candidate to merge with the next.
        let mut exprs = 0;
        let mut last_run: Option<(usize, Run)> = None;
        let mut only_run = None;
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            let literal = &rest[..open];
            if literal.contains('}') {
                return None;
            }
            let at = raw.len() - rest.len();
            match prefix {
                None => prefix = Some(at + open),
                Some(_) if literal.is_empty() => {}
                Some(_) => {
                    p.literal(literal);
                    last_run = None;
                }
            }
            let close = rest[open..].find('}')? + open;
            let start = p.insts.len();
            let run = p.expression(&rest[open + 1..close])?;
            let merged = match (last_run, run) {
                (Some((from, a)), Some(b)) if merge => a.then(b).map(|r| (from, r)),
                _ => None,
            };
            last_run = match merged {
                Some((from, r)) => {
                    p.insts.truncate(from);
                    p.emit_run(r);
                    Some((from, r))
                }
                None => {
                    exprs += 1;
                    run.map(|r| (start, r))
                }
            };
            only_run = last_run.map(|(_, r)| r);
            rest = &rest[close + 1..];
            suffix_start = raw.len() - rest.len();
        }
        if rest.contains('}') {
            return None;
        }
        // No expression: not a template.
        let prefix = prefix?;
        // The text after the last expression is checked as the suffix, so the program
        // covers only what lies between the prefix and the suffix: a literal after a run
        // would otherwise keep a thread alive at each of its offsets.
        p.push(Inst::Match);
        // Programs are addressed with u32 and counted from there: absurd sizes are refused
        // (the request layer bounds selector lengths far below this anyway).
        if p.insts.len() > u32::MAX as usize / 2 {
            return None;
        }
        let run = only_run.filter(|r| exprs == 1 && r.bound.is_none());
        let width = match run {
            Some(_) => 0,
            None => p
                .insts
                .iter()
                .filter(|i| matches!(i, Inst::Byte(_) | Inst::Class(_)))
                .count() as u32,
        };
        Some(Template {
            width,
            raw: raw.into(),
            prefix,
            suffix: raw.len() - suffix_start,
            // A run does not need the program (tests keep it, to check the two agree).
            prog: if run.is_some() && !cfg!(test) {
                Box::default()
            } else {
                p.insts.into_boxed_slice()
            },
            run,
        })
    }

    /// Whether `topic` is this template's text or an expansion of it.
    pub fn matches(&self, topic: &str) -> bool {
        if *self.raw == *topic {
            return true;
        }
        let (t, raw) = (topic.as_bytes(), self.raw.as_bytes());
        if t.len() < self.prefix + self.suffix
            || t[..self.prefix] != raw[..self.prefix]
            || t[t.len() - self.suffix..] != raw[raw.len() - self.suffix..]
        {
            return false;
        }
        let middle = &t[self.prefix..t.len() - self.suffix];
        match self.run {
            Some(run) => run.matches(middle),
            None => self.run_program(middle),
        }
    }

    /// Runs the program on the topic between the prefix and the suffix.
    fn run_program(&self, input: &[u8]) -> bool {
        VM.with(|vm| match vm.try_borrow_mut() {
            Ok(mut vm) => vm.run(&self.prog, input),
            // Not reentrant, so never taken; a fresh machine keeps it correct regardless.
            Err(_) => Vm::default().run(&self.prog, input),
        })
    }

    /// Heap bytes held by this template: its text and its program.
    pub fn heap_bytes(&self) -> usize {
        self.raw.len() + std::mem::size_of_val(&*self.prog) + std::mem::size_of::<Template>()
    }
}

/// A program being compiled.
#[derive(Default)]
struct Program {
    insts: Vec<Inst>,
}

impl Program {
    fn pc(&self) -> u32 {
        self.insts.len() as u32
    }

    fn push(&mut self, inst: Inst) -> usize {
        self.insts.push(inst);
        self.insts.len() - 1
    }

    /// Points the `Split` or `Jmp` at `at` to the next instruction to be compiled.
    fn patch(&mut self, at: usize) {
        let to = self.pc();
        match &mut self.insts[at] {
            Inst::Split(x) | Inst::Jmp(x) => *x = to,
            _ => unreachable!("only jumps are patched"),
        }
    }

    fn literal(&mut self, s: &str) {
        self.insts.extend(s.bytes().map(Inst::Byte));
    }

    /// Points the `Split` or `Jmp` at `at` to instruction `to`.
    fn patch_to(&mut self, at: usize, to: u32) {
        match &mut self.insts[at] {
            Inst::Split(x) | Inst::Jmp(x) => *x = to,
            _ => unreachable!("only jumps are patched"),
        }
    }

    /// One value unit: a character of `class`, or a percent-encoded octet. With a bound,
    /// each character counts once: a single unit, or the `%XX` that starts a UTF-8
    /// sequence (its continuation octets, `%80`–`%BF`, are part of the same character, as
    /// RFC 6570 counts a prefix in characters).
    fn unit(&mut self, class: u8, bound: Option<u16>) {
        let pct = self.push(Inst::Split(0));
        self.push(Inst::Class(class));
        let mut done = Vec::new();
        match bound {
            None => {
                done.push(self.push(Inst::Jmp(0)));
                self.patch(pct);
                self.push(Inst::Byte(b'%'));
                self.push(Inst::Class(HEX));
                self.push(Inst::Class(HEX));
            }
            Some(n) => {
                self.push(Inst::Count(n));
                done.push(self.push(Inst::Jmp(0)));
                self.patch(pct);
                self.push(Inst::Byte(b'%'));
                let cont = self.push(Inst::Split(0));
                self.push(Inst::Class(LEAD));
                self.push(Inst::Class(HEX));
                self.push(Inst::Count(n));
                done.push(self.push(Inst::Jmp(0)));
                self.patch(cont);
                self.push(Inst::Class(CONT));
                self.push(Inst::Class(HEX));
            }
        }
        for d in done {
            self.patch(d);
        }
    }

    /// The program of a [`Run`] (for runs merged from several expressions).
    fn emit_run(&mut self, r: Run) {
        let mut extra = Vec::new();
        for b in r.extra {
            if CLASSES[b as usize] & r.class == 0 && !extra.contains(&b) {
                extra.push(b);
            }
        }
        match (r.first, r.times) {
            (None, _) => self.units(r.class, &extra, r.bound),
            (Some(f), 1) => {
                let skip = self.push(Inst::Split(0));
                self.push(Inst::Byte(f));
                self.units(r.class, &extra, r.bound);
                self.patch(skip);
            }
            (Some(f), n) => {
                // Up to n segments, counted as a prefix modifier counts units.
                self.push(Inst::Reset);
                let top = self.pc();
                let out = self.push(Inst::Split(0));
                self.push(Inst::Byte(f));
                self.push(Inst::Count(n));
                self.units(r.class, &extra, None);
                self.push(Inst::Jmp(top));
                self.patch(out);
                self.push(Inst::Reset);
            }
        }
    }

    /// Zero or more units of `class` or bytes of `extra`; at most `bound` characters.
    fn units(&mut self, class: u8, extra: &[u8], bound: Option<u16>) {
        if bound.is_some() {
            self.push(Inst::Reset);
        }
        let top = self.pc();
        let out = self.push(Inst::Split(0));
        for &b in extra {
            let next = self.push(Inst::Split(0));
            self.push(Inst::Byte(b));
            self.push(Inst::Jmp(top));
            self.patch(next);
        }
        self.unit(class, bound);
        self.push(Inst::Jmp(top));
        self.patch(out);
        if bound.is_some() {
            // Threads outside a bounded value all count zero, so they never differ.
            self.push(Inst::Reset);
        }
    }

    /// One `{…}` expression (RFC 6570 §3.2), or `None` if it is invalid; with its [`Run`]
    /// when its language is a plain run of units.
    ///
    /// Matching is as strict as the expansion rules allow without knowing the variables'
    /// values: the operator decides the first character, the separator and the characters a
    /// value may contain; the variables come in their order, each one possibly undefined
    /// (skipped with its separator), so the whole expression may be empty; named operators
    /// (`;`, `?`, `&`) require each variable's name; a prefix bounds its own variable, in
    /// characters, and makes it a string (no list commas).
    fn expression(&mut self, expr: &str) -> Option<Option<Run>> {
        let (op, list) = match expr.chars().next()? {
            c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&') => (Some(c), &expr[1..]),
            '=' | ',' | '!' | '@' | '|' => return None, // reserved for future operators
            _ => (None, expr),
        };
        let (first, sep, named, reserved) = match op {
            None => (None, b',', false, false),
            Some('+') => (None, b',', false, true),
            Some('#') => (Some(b'#'), b',', false, true),
            Some('.') => (Some(b'.'), b'.', false, false),
            Some('/') => (Some(b'/'), b'/', false, false),
            Some(';') => (Some(b';'), b';', true, false),
            Some('?') => (Some(b'?'), b'&', true, false),
            Some(_) => (Some(b'&'), b'&', true, false),
        };
        let mut vars = Vec::new();
        for spec in list.split(',') {
            let (name, modifier) = match spec.find([':', '*']) {
                Some(i) => (&spec[..i], &spec[i..]),
                None => (spec, ""),
            };
            let valid_name = !name.is_empty()
                && name.split('.').all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'%')
                });
            if !valid_name {
                return None;
            }
            let var = match modifier {
                "" => Var {
                    name,
                    explode: false,
                    bound: None,
                },
                "*" => Var {
                    name,
                    explode: true,
                    bound: None,
                },
                m => {
                    // RFC 6570 §2.4.1: max-length = %x31-39 0*3DIGIT, so 1 to 9999.
                    let digits = m.strip_prefix(':')?;
                    if digits.is_empty()
                        || digits.len() > 4
                        || digits.starts_with('0')
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                    {
                        return None;
                    }
                    Var {
                        name,
                        explode: false,
                        bound: Some(digits.parse().ok()?),
                    }
                }
            };
            vars.push(var);
        }
        let chars = if reserved {
            UNRESERVED | RESERVED
        } else {
            UNRESERVED
        };

        // Empty (every variable undefined), or `first` and the defined variables joined by
        // `sep`. Two junctions per variable, one shared body: "none defined yet" enters the
        // body directly, "some defined" through a separator; the body leaves as "some".
        let skip = self.push(Inst::Split(0));
        if let Some(f) = first {
            self.push(Inst::Byte(f));
        }
        let mut to_some = Vec::new(); // (jump, variable index it goes to)
        let mut none_skip = None;
        if let [var] = &vars[..] {
            // One variable (the usual case): no junctions, it is defined or all is empty.
            self.variable(var, named, chars, sep);
            self.patch(skip);
            return Some(self.run(&vars, first, named, chars, sep));
        }
        for (i, var) in vars.iter().enumerate() {
            if let Some(at) = none_skip.take() {
                self.patch(at);
            }
            // None defined yet: skip this one too, or enter its body.
            none_skip = Some(self.push(Inst::Split(0)));
            let mut some = 0;
            if i > 0 {
                let enter = self.push(Inst::Jmp(0));
                // Some defined (reached from the previous body or the previous skip).
                some = self.pc();
                let some_skip = self.push(Inst::Split(0));
                to_some.push((some_skip, i + 1));
                self.push(Inst::Byte(sep));
                let body = self.pc();
                self.patch_to(enter, body);
            }
            self.variable(var, named, chars, sep);
            to_some.push((self.push(Inst::Jmp(0)), i + 1));
            if i > 0 {
                // The previous variable's jumps to "some defined at i" land here.
                for (at, to) in to_some.iter_mut() {
                    if *to == i {
                        *to = usize::MAX;
                        let at = *at;
                        self.patch_to(at, some);
                    }
                }
            }
        }
        // Past the last variable with none defined: `first` alone is no expansion.
        if let Some(at) = none_skip {
            self.patch(at);
        }
        self.push(Inst::Fail);
        let end = self.pc();
        for (at, to) in to_some {
            if to != usize::MAX {
                self.patch_to(at, end);
            }
        }
        self.patch(skip);
        Some(self.run(&vars, first, named, chars, sep))
    }

    /// The expression's [`Run`], when its language is one: unnamed, unbounded variables
    /// joined by a separator that is itself a value character (or absorbed by an exploded
    /// variable).
    fn run(
        &self,
        vars: &[Var<'_>],
        first: Option<u8>,
        named: bool,
        chars: u8,
        sep: u8,
    ) -> Option<Run> {
        let exploded = vars.iter().any(|v| v.explode);
        let sep_is_value = CLASSES[sep as usize] & (chars | COMMA) != 0;
        let one = vars.len() == 1;
        if let [Var {
            bound: Some(n),
            explode: false,
            ..
        }] = vars
        {
            // `{v:n}`: at most n characters, no list commas; `a` repeats the class, so
            // there is no extra byte.
            return (!named && first.is_none()).then_some(Run {
                first,
                times: 1,
                bound: Some(*n),
                class: chars,
                extra: [b'a', b'a'],
            });
        }
        let runnable =
            !named && vars.iter().all(|v| v.bound.is_none()) && (sep_is_value || exploded || one);
        runnable.then_some(Run {
            first,
            times: 1,
            bound: None,
            class: chars | COMMA,
            extra: [
                if exploded || !one { sep } else { b',' },
                if exploded { b'=' } else { b',' },
            ],
        })
    }

    /// The body of one defined variable.
    fn variable(&mut self, var: &Var<'_>, named: bool, chars: u8, sep: u8) {
        // A string under a prefix has no list commas; lists and pairs do.
        let value = |bound: Option<u16>| {
            if bound.is_some() {
                chars
            } else {
                chars | COMMA
            }
        };
        match (named, var.explode) {
            (false, false) => self.units(value(var.bound), &[], var.bound),
            // Items (or key=value pairs) joined by the separator.
            (false, true) => self.units(chars | COMMA, &[sep, b'='], None),
            (true, false) => {
                self.literal(var.name);
                let no_value = self.push(Inst::Split(0));
                self.push(Inst::Byte(b'='));
                self.units(value(var.bound), &[], var.bound);
                self.patch(no_value);
            }
            (true, true) => {
                // name[=value] pairs joined by the separator; an exploded associative array
                // uses its keys as names, so any name.
                let pair = self.pc();
                self.unit(chars, None);
                self.units(chars, &[], None);
                let no_value = self.push(Inst::Split(0));
                self.push(Inst::Byte(b'='));
                self.units(chars | COMMA, &[], None);
                self.patch(no_value);
                let done = self.push(Inst::Split(0));
                self.push(Inst::Byte(sep));
                self.push(Inst::Jmp(pair));
                self.patch(done);
            }
        }
    }
}

/// One variable of an expression.
struct Var<'a> {
    name: &'a str,
    explode: bool,
    bound: Option<u16>,
}

thread_local! {
    /// Each core's matching machine, reused by every match on that core.
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// The lockstep matcher: the threads alive before and after the current byte.
#[derive(Default)]
struct Vm {
    now: Threads,
    next: Threads,
    /// Work list of the closure over non-consuming instructions (no recursion: a long run of
    /// optional expressions must not grow the call stack).
    stack: Vec<(u32, u16)>,
}

/// A sparse set of instructions, each with the smallest unit count a thread reached it with.
#[derive(Default)]
struct Threads {
    dense: Vec<u32>,
    sparse: Vec<u32>,
    count: Vec<u16>,
}

impl Threads {
    fn reset(&mut self, len: usize) {
        self.dense.clear();
        if self.sparse.len() < len {
            self.sparse.resize(len, 0);
            self.count.resize(len, 0);
        }
    }

    /// Adds the thread, or lowers the count of the one there. Returns whether that changed
    /// anything (then its closure has to be followed again).
    #[inline]
    fn add(&mut self, pc: u32, count: u16) -> bool {
        let i = self.sparse[pc as usize] as usize;
        if i < self.dense.len() && self.dense[i] == pc {
            if self.count[pc as usize] <= count {
                return false;
            }
        } else {
            self.sparse[pc as usize] = self.dense.len() as u32;
            self.dense.push(pc);
        }
        self.count[pc as usize] = count;
        true
    }

    fn contains(&self, pc: u32) -> bool {
        let i = self.sparse[pc as usize] as usize;
        i < self.dense.len() && self.dense[i] == pc
    }
}

impl Vm {
    fn run(&mut self, prog: &[Inst], input: &[u8]) -> bool {
        self.now.reset(prog.len());
        self.next.reset(prog.len());
        follow(prog, &mut self.now, &mut self.stack, 0, 0);
        for &b in input {
            self.next.dense.clear();
            let class = CLASSES[b as usize];
            for i in 0..self.now.dense.len() {
                let pc = self.now.dense[i];
                let takes = match prog[pc as usize] {
                    Inst::Byte(x) => x == b,
                    Inst::Class(mask) => class & mask != 0,
                    _ => false,
                };
                if takes {
                    let count = self.now.count[pc as usize];
                    follow(prog, &mut self.next, &mut self.stack, pc + 1, count);
                }
            }
            std::mem::swap(&mut self.now, &mut self.next);
            if self.now.dense.is_empty() {
                return false;
            }
        }
        self.now.contains(prog.len() as u32 - 1)
    }
}

/// Adds the thread at `pc` and everything it reaches without consuming a byte.
fn follow(prog: &[Inst], set: &mut Threads, stack: &mut Vec<(u32, u16)>, pc: u32, count: u16) {
    stack.push((pc, count));
    while let Some((pc, count)) = stack.pop() {
        if !set.add(pc, count) {
            continue;
        }
        match prog[pc as usize] {
            Inst::Split(x) => {
                stack.push((x, count));
                stack.push((pc + 1, count));
            }
            Inst::Jmp(x) => stack.push((x, count)),
            Inst::Reset => stack.push((pc + 1, 0)),
            Inst::Count(max) => {
                if count < max {
                    stack.push((pc + 1, count + 1));
                }
            }
            Inst::Byte(_) | Inst::Class(_) | Inst::Match | Inst::Fail => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(selector: &str, topic: &str) -> bool {
        Selector::parse(selector).matches(topic)
    }

    #[test]
    fn star_and_exact() {
        assert!(m("*", "https://x/y"));
        assert!(m("https://x/books/1", "https://x/books/1"));
        assert!(!m("https://x/books/1", "https://x/books/10"));
        assert_eq!(Selector::parse("a").exact(), Some("a"));
        assert_eq!(Selector::Any.exact(), None);
    }

    #[test]
    fn simple_templates() {
        let books = "https://example.com/books/{id}";
        assert!(m(books, "https://example.com/books/1"));
        assert!(m(books, "https://example.com/books/the%20dune"));
        assert!(!m(books, "https://example.com/books/1/chapters"));
        assert!(!m(books, "https://example.com/authors/1"));
        assert!(!m(books, "http://example.com/books/1"));
        // A template matches its own text (spec step 2).
        assert!(m(books, books));
        assert!(Selector::parse(books).exact().is_none());
    }

    #[test]
    fn operators() {
        assert!(m("https://x/{+path}/end", "https://x/a/b/c/end"));
        assert!(!m("https://x/{path}/end", "https://x/a/b/c/end"));
        assert!(m("https://x/users{/id,tab}", "https://x/users/7/posts"));
        assert!(m("https://x/users{/id,tab}", "https://x/users"));
        assert!(m("https://x/file{.ext}", "https://x/file.json"));
        assert!(m("https://x/m{;v}", "https://x/m;v=2"));
        assert!(m("https://x/page{#frag}", "https://x/page#a/b"));
        assert!(m("https://x/s{?q,lang}", "https://x/s?q=dune&lang=en"));
        assert!(!m("https://x/s{?q}", "https://x/s?other=1"));
        assert!(m("https://x/s?fixed=1{&q}", "https://x/s?fixed=1&q=2"));
        assert!(m("https://x/{term:1}/{term}", "https://x/c/cat"));
        assert!(!m("https://x/{term:1}/{term}", "https://x/ca/cat"));
    }

    #[test]
    fn the_specs_private_update_example() {
        let claim = "https://example.com/users/foo/{?topic}";
        assert!(m(
            claim,
            "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"
        ));
        assert!(!m(claim, "https://example.com/users/bar/?topic=x"));
    }

    #[test]
    fn invalid_templates_are_exact_strings() {
        for raw in [
            "https://x/{",
            "https://x/}{a}",
            "https://x/{!a}",
            "https://x/{a b}",
            "{}",
        ] {
            let s = Selector::parse(raw);
            assert_eq!(s.exact(), Some(raw), "{raw}");
            assert!(s.matches(raw));
        }
    }

    #[test]
    fn prefix_modifiers_bound_the_value_in_units() {
        assert!(m("https://x/{v:3}", "https://x/abc"));
        assert!(m("https://x/{v:3}", "https://x/"));
        assert!(!m("https://x/{v:3}", "https://x/abcd"));
        // A percent-encoded octet is one unit; a comma separates values, each bounded.
        assert!(m("https://x/{v:3}", "https://x/a%20b"));
        assert!(!m("https://x/{v:3}", "https://x/abc,def"));
        assert!(m("https://x/{v:3,w}", "https://x/abc,def"));
        assert!(m("https://x/{v:3,w}", "https://x/abcd,e")); // v undefined
        assert!(!m("https://x/{v:3,w:1}", "https://x/abcd,e"));
        // A prefix counts characters: "é" is two octets, one character.
        assert!(m("https://x/{v:1}", "https://x/%C3%A9"));
        assert!(!m("https://x/{v:1}", "https://x/%C3%A9a"));
        // Each variable has its own prefix; variables come in order.
        assert!(m("{t,e:1}", "a1,a"));
        assert!(!m("{t:2,e:1}", "a1,ab"));
        assert!(m("x{;a,b}", "x;a=1;b"));
        assert!(!m("x{;a,b}", "x;b=1;a=2"));
        assert!(!m("x{/a,b}", "x/1/2/3"));
        assert!(m("x{/a*,b}", "x/1/2/3"));
        // Both splits have to be tried: "xy" is only "x" + "y".
        assert!(m("{a:1}{b:1}", "xy"));
        assert!(!m("{a:1}{b:1}", "xyz"));
        assert!(m("https://x/{a:2}-{b}/{c:1}", "https://x/ab-cd-ef/g"));
        assert!(!m("https://x/{a:2}-{b}/{c:1}", "https://x/abc-d/g"));
        // Named operators bound the value, not the name.
        assert!(m("https://x/m{;v:2}", "https://x/m;v=ab"));
        assert!(!m("https://x/m{;v:2}", "https://x/m;v=abc"));
        // RFC 6570 §2.4.1: 1 to 9999, digits only.
        for bad in ["{v:0}", "{v:10000}", "{v:+5}", "{v:05}", "{v:}", "{v:3*}"] {
            assert_eq!(Selector::parse(bad).exact(), Some(bad), "{bad}");
        }
    }

    #[test]
    fn the_largest_prefix_modifier_is_one_counter() {
        let s = Selector::parse("https://x/{v:9999}");
        assert!(s.heap_bytes() < 512, "{} bytes", s.heap_bytes());
        let value = "a".repeat(9999);
        assert!(s.matches(&format!("https://x/{value}")));
        assert!(!s.matches(&format!("https://x/{value}a")));
    }

    #[test]
    fn programs_are_linear_in_the_text() {
        let many: String = (0..700).map(|i| format!("{{v{i}:9}}")).collect();
        let dense = [
            "{+a}",
            "{;a,b,c}",
            "https://x/{?q*}{&r}",
            "{;a*,b*,c*,d*}",
            "{a:1,b:1,c:1}",
            "{;a:1,b:1}",
            "{/a,b,c,d}",
            "{?a,b,c,d,e}",
            "{a*,b*}",
            "{#a:9,b*}",
        ];
        for raw in std::iter::once(many.as_str()).chain(dense) {
            let t = Template::compile(raw).unwrap();
            assert!(
                t.prog.len() <= Template::MAX_INSTS_PER_BYTE * raw.len() + 1,
                "{raw}: {} instructions",
                t.prog.len()
            );
        }
        let s = Selector::parse(&many);
        assert!(s.matches("abcdefghi"));
        assert!(!s.matches(&"a!".repeat(50)));
    }

    #[test]
    fn the_one_expression_scan_agrees_with_the_program() {
        let templates = [
            "https://x/{id}",
            "https://x/{+path}/end",
            "https://x/p{#frag}",
            "https://x/f{.ext}",
            "https://x/u{/a*,b}",
            "https://x/u{/a}",
            "x{.a}",
            "{a,b*}",
            "x{+r*}y",
            // Merged into one run.
            "{a}{b}",
            "x{a}{+b}{c*}y",
            "x{/a}{/b}{/c}",
            "x{#a}{#b}",
            "x{.a*}{.b}",
        ];
        let alphabet = [
            b'a', b'/', b'.', b'#', b',', b'%', b'4', b'F', b'!', b'x', b'y',
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for raw in templates {
            let t = Template::compile(raw).unwrap();
            assert!(t.run.is_some(), "{raw}");
            for _ in 0..3000 {
                let len = rng.usize(0..8);
                let middle: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.usize(..alphabet.len())])
                    .collect();
                let (pre, suf) = (&raw[..t.prefix], &raw[raw.len() - t.suffix..]);
                let topic = format!("{pre}{}{suf}", String::from_utf8(middle).unwrap());
                let input = &topic.as_bytes()[t.prefix..topic.len() - t.suffix];
                assert_eq!(
                    t.matches(&topic),
                    topic == raw || t.run_program(input),
                    "{raw} vs {topic}"
                );
            }
        }
        assert!(Template::compile("{a}/{b}").unwrap().run.is_none());
        assert!(Template::compile("x{/a,b}").unwrap().run.is_none());
        assert!(Template::compile("x{a:3}").unwrap().run.is_none());
        assert!(Template::compile("x{;a}").unwrap().run.is_none());
    }

    /// Random templates from pieces that merge, or nearly: the merged program and the one
    /// compiled expression by expression accept the same topics.
    #[test]
    fn merged_expressions_match_what_they_were_merged_from() {
        let pieces = [
            "{a}", "{+a}", "{a*}", "{+a*}", "{/a}", "{/a*}", "{#a}", "{.a}", "{.a*}", "{a,b}",
            "{/a,b}", "{a:2}", "{a:1}", "{+a:3}", "{/a:2}", "{;a}", "{?a}", "/", ".", "x",
        ];
        let alphabet = [
            b'a', b'/', b'.', b'#', b',', b'=', b'%', b'4', b'F', b'!', b'x', b';', b'?', b'C',
            b'8',
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        let mut merged_some = 0;
        for _ in 0..2000 {
            let raw: String = (0..rng.usize(1..6))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let (Some(merged), Some(plain)) = (
                Template::compile_with(&raw, true),
                Template::compile_with(&raw, false),
            ) else {
                continue;
            };
            merged_some += (merged.prog.len() < plain.prog.len()) as usize;
            for _ in 0..40 {
                let topic: String = (0..rng.usize(0..10))
                    .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
                    .collect();
                assert_eq!(
                    merged.matches(&topic),
                    plain.matches(&topic),
                    "{raw} vs {topic:?}"
                );
            }
        }
        assert!(merged_some > 100, "only {merged_some} templates merged");
    }

    #[test]
    fn adjacent_expressions_taking_the_same_bytes_cost_one() {
        // As many as fit in the default max_selector_bytes: a program no longer than one
        // expression's, so the threads a match keeps do not grow with the count.
        for (one, n) in [
            ("{a}", 336),
            ("{+a}", 255),
            ("{/a}", 256),
            ("{#a}", 255),
            ("{a:9}", 200),
        ] {
            let raw = one.repeat(n);
            let t = Template::compile(&raw).unwrap();
            let single = Template::compile_with(one, false).unwrap();
            assert!(
                t.prog.len() <= single.prog.len() + 4,
                "{one}×{n}: {} instructions",
                t.prog.len()
            );
        }
        assert!(m(&"{/a}".repeat(3), "/x/y/z"));
        assert!(!m(&"{/a}".repeat(3), "/x/y/z/w"));
        assert!(m(&"{a}".repeat(3), ""));
        assert!(m(&"{a:2}".repeat(3), "abcdef"));
        assert!(!m(&"{a:2}".repeat(3), "abcdefg"));
        assert!(m(&"{a:1}".repeat(2), "%C3%A9%C3%A9"));
        assert!(!m(&"{a:1}".repeat(2), "a,b"));
    }

    #[test]
    fn the_budget_counts_matching_work() {
        let plain = Selector::parse("https://example.com/books/{id}");
        assert_eq!(plain.budget_bytes(), plain.heap_bytes());
        let two = Selector::parse("https://x/{a}/{b}");
        let hostile = Selector::parse(&("{+v}".to_owned() + &"{?w}{+v}".repeat(7) + "{?z}"));
        eprintln!(
            "budget bytes: plain {}, two expressions {}, 16 hostile expressions {}",
            plain.budget_bytes(),
            two.budget_bytes(),
            hostile.budget_bytes()
        );
        assert!(two.budget_bytes() > two.heap_bytes());
        let width = |raw: &str| Selector::parse(raw).width();
        assert_eq!(width("https://x/{a}/chapters/{b}{?lang}"), 28);
        assert_eq!(width("https://example.com/books/{id}"), 0);
        let long_literal = format!("{{a}}{}{{b}}", "a".repeat(300));
        assert!(Selector::parse(&long_literal).too_complex().is_some());
        assert!(hostile.too_complex().is_none());
        eprintln!(
            "width of 16 hostile expressions: {}",
            width(hostile.as_str())
        );
        assert!(hostile.budget_bytes() > 40 * plain.budget_bytes());
    }

    #[test]
    fn matching_is_linear_on_hostile_input() {
        let s = Selector::parse("https://x/{a}{b}{c}{d}{e}/{+f}");
        let topic = format!("https://x/{}!", "a".repeat(100_000));
        // Finite automata: this finishes promptly however the template is built.
        assert!(!s.matches(&topic));
    }
}
