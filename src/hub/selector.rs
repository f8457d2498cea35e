//! Topic selectors (Mercure §"Topic Selectors"): the one place that decides whether a topic
//! matches what a subscriber asked for.
//!
//! This issue supports exact strings and `*`; URI Templates come later as a third variant,
//! compiled once per core. Everything else asks [`Selector::matches`] or, for the shard's
//! index, [`Selector::exact`].

/// A compiled topic selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `*`: every topic.
    Any,
    /// A string compared byte for byte (every URI and any other string).
    Exact(Box<str>),
}

impl Selector {
    /// Compiles a selector as it appears in a `topic` parameter or a JWT claim.
    pub fn parse(raw: &str) -> Selector {
        if raw == "*" {
            Selector::Any
        } else {
            Selector::Exact(raw.into())
        }
    }

    /// Whether `topic` matches this selector.
    #[inline]
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(s) => **s == *topic,
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
            Selector::Any => None,
        }
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_everything_exact_matches_itself() {
        assert!(Selector::parse("*").matches("https://x/y"));
        let s = Selector::parse("https://x/books/1");
        assert!(s.matches("https://x/books/1"));
        assert!(!s.matches("https://x/books/10"));
        assert!(s.matches_any(&["a", "https://x/books/1"]));
        assert_eq!(s.exact(), Some("https://x/books/1"));
        assert_eq!(Selector::Any.exact(), None);
    }
}
