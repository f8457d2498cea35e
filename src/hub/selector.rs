//! Topic selectors (Mercure §"Topic Selectors"): the one place that decides whether a topic
//! matches what a subscriber asked for, or what a token allows.
//!
//! A selector is `*`, a URI Template (RFC 6570), or any other string compared exactly. A
//! template is compiled once into a regular expression (the `regex` crate: finite automata,
//! so matching is linear in the topic's length) behind a cheap literal-prefix check. The
//! shard compiles each distinct selector once per core and shares it between the
//! subscribers that use it.

use std::fmt;
use std::sync::Arc;

use regex::Regex;

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
    /// Text before the first expression: a topic not starting with it cannot match.
    prefix: Box<str>,
    regex: Regex,
}

impl Selector {
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
    /// Compiles `raw`, or `None` when it is not a valid URI Template (it is then an exact
    /// selector, as the spec says for any other string).
    pub fn compile(raw: &str) -> Option<Template> {
        let mut pattern = String::with_capacity(raw.len() * 4);
        pattern.push('^');
        let mut prefix = None;
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            let literal = &rest[..open];
            if literal.contains('}') {
                return None;
            }
            pattern.push_str(&regex::escape(literal));
            if prefix.is_none() {
                prefix = Some(raw[..raw.len() - rest.len() + open].to_owned());
            }
            let close = rest[open..].find('}')? + open;
            expression(&rest[open + 1..close], &mut pattern)?;
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return None;
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        Some(Template {
            raw: raw.into(),
            prefix: prefix.unwrap_or_default().into(),
            regex: Regex::new(&pattern).ok()?,
        })
    }

    /// Whether `topic` is this template's text or an expansion of it.
    pub fn matches(&self, topic: &str) -> bool {
        *self.raw == *topic || (topic.starts_with(&*self.prefix) && self.regex.is_match(topic))
    }
}

/// One unit of a value: an allowed character or a percent-encoded octet.
const UNRESERVED: &str = r"A-Za-z0-9\-._~";
const RESERVED: &str = r":/?#\[\]@!$&'()*+,;=";

/// Appends the regex for one `{…}` expression (RFC 6570 §3.2), or `None` if it is invalid.
///
/// Matching is as strict as the expansion rules allow without knowing the variables'
/// values: the operator decides the first character, the separator and the characters a
/// value may contain; named operators (`;`, `?`, `&`) require the variables' names; every
/// variable may be undefined, so the whole expression may be empty.
fn expression(expr: &str, out: &mut String) -> Option<()> {
    let (op, vars) = match expr.chars().next()? {
        c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&') => (Some(c), &expr[1..]),
        '=' | ',' | '!' | '@' | '|' => return None, // reserved for future operators
        _ => (None, expr),
    };
    let (first, sep, named, reserved) = match op {
        None => ("", ",", false, false),
        Some('+') => ("", ",", false, true),
        Some('#') => ("#", ",", false, true),
        Some('.') => (r"\.", r"\.", false, false),
        Some('/') => ("/", "/", false, false),
        Some(';') => (";", ";", true, false),
        Some('?') => (r"\?", "&", true, false),
        Some(_) => ("&", "&", true, false),
    };
    let mut names = Vec::new();
    let mut explode = false;
    let mut max_len: Option<usize> = None;
    for spec in vars.split(',') {
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
        match modifier {
            "" => {}
            "*" => explode = true,
            m => {
                let n: usize = m.strip_prefix(':')?.parse().ok()?;
                if n == 0 || n > 9999 {
                    return None;
                }
                max_len = Some(max_len.map_or(n, |m: usize| m.max(n)));
            }
        }
        names.push(regex::escape(name));
    }
    let chars = if reserved {
        format!("[{UNRESERVED}{RESERVED}]|%[0-9A-Fa-f]{{2}}")
    } else {
        format!("[{UNRESERVED}]|%[0-9A-Fa-f]{{2}}")
    };
    // Lists join their items with ',' (or the separator when exploded).
    let item = format!("(?:{chars}|,)");
    let value = match (max_len, explode) {
        (Some(n), false) => format!("(?:{chars}){{0,{n}}}"),
        _ => format!("{item}*"),
    };
    let var = if named {
        // Exploded associative arrays use their keys as names: any name then.
        let name = if explode {
            format!("(?:{chars})+")
        } else {
            format!("(?:{})", names.join("|"))
        };
        format!("{name}(?:={value})?")
    } else {
        value
    };
    out.push_str(&format!("(?:{first}{var}(?:{sep}{var})*)?"));
    Some(())
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
    fn matching_is_linear_on_hostile_input() {
        let s = Selector::parse("https://x/{a}{b}{c}{d}{e}/{+f}");
        let topic = format!("https://x/{}!", "a".repeat(100_000));
        // Finite automata: this finishes promptly however the template is built.
        assert!(!s.matches(&topic));
    }
}
