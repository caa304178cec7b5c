//! Go's `filepath.Match` syntax for one path component, which is what Docker
//! and BuildKit use for COPY/ADD source wildcards: `*`, `?`, `[...]` classes
//! with `^` negation and ranges, and `\` escapes.

/// One compiled path-component pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// The pattern is malformed (Go's `ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Whether a path component contains an unescaped wildcard character.
pub(crate) fn has_wildcard(component: &str) -> bool {
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Removes the escapes of a wildcard-free component (`a\*b` names the file `a*b`).
pub(crate) fn unescape(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escaped_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, BadPattern> {
    match chars.next() {
        None | Some('-') | Some(']') => Err(BadPattern),
        Some('\\') => chars.next().ok_or(BadPattern),
        Some(c) => Ok(c),
    }
}

impl Pattern {
    /// Compiles a component pattern; malformed classes and trailing `\` are errors.
    pub fn new(pattern: &str) -> Result<Self, BadPattern> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::AnyChar),
                '\\' => tokens.push(Token::Literal(chars.next().ok_or(BadPattern)?)),
                '[' => {
                    let negated = chars.peek() == Some(&'^');
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    loop {
                        if chars.peek() == Some(&']') && !ranges.is_empty() {
                            chars.next();
                            break;
                        }
                        let lo = escaped_char(&mut chars)?;
                        let hi = if chars.peek() == Some(&'-') {
                            chars.next();
                            let hi = escaped_char(&mut chars)?;
                            if hi < lo {
                                return Err(BadPattern);
                            }
                            hi
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    tokens.push(Token::Class { negated, ranges });
                }
                other => tokens.push(Token::Literal(other)),
            }
        }
        Ok(Pattern { tokens })
    }

    /// Whether `name` (one component, no `/`) matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Classic iterative glob matching with one backtrack point per star.
        let (mut t, mut n) = (0usize, 0usize);
        let mut backtrack: Option<(usize, usize)> = None;
        while n < name.len() {
            let step = match self.tokens.get(t) {
                Some(Token::Star) => {
                    backtrack = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(Token::AnyChar) => name[n] != '/',
                Some(Token::Literal(c)) => *c == name[n],
                Some(Token::Class { negated, ranges }) => {
                    let inside = ranges
                        .iter()
                        .any(|(lo, hi)| *lo <= name[n] && name[n] <= *hi);
                    name[n] != '/' && inside != *negated
                }
                None => false,
            };
            if step {
                t += 1;
                n += 1;
            } else if let Some((bt, bn)) = backtrack {
                if name[bn] == '/' {
                    return false;
                }
                backtrack = Some((bt, bn + 1));
                t = bt + 1;
                n = bn + 1;
            } else {
                return false;
            }
        }
        self.tokens[t..].iter().all(|tok| *tok == Token::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Pattern::new(p).map(|p| p.matches(n)).unwrap_or(false)
    }

    // Cases from Go's path/filepath match_test.go.
    #[test]
    fn go_match_cases() {
        assert!(m("abc", "abc"));
        assert!(m("*", "abc"));
        assert!(m("*c", "abc"));
        assert!(!m("a*", "ab/c"));
        assert!(m("a*b*c*d*e*", "axbxcxdxe"));
        assert!(m("a*b?c*x", "abxbbxdbxebxczzx"));
        assert!(!m("a*b?c*x", "abxbbxdbxebxczzy"));
        assert!(m("ab[c]", "abc"));
        assert!(m("ab[b-d]", "abc"));
        assert!(!m("ab[e-g]", "abc"));
        assert!(!m("ab[^c]", "abc"));
        assert!(!m("ab[^b-d]", "abc"));
        assert!(m("ab[^e-g]", "abc"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "ab"));
        assert!(m("a?b", "a☺b"));
        assert!(m("a[^a]b", "a☺b"));
        assert!(!m("a???b", "a☺b"));
        assert!(m("[\\-]", "-"));
        assert!(m("[x\\-]", "x"));
        assert!(!m("[x\\-]", "z"));
        assert!(m("[\\-x]", "x"));
        assert!(m("*x", "xxx"));
        assert!(!m("a?", "a"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\", "[\\", "[a-\\",
        ] {
            assert_eq!(Pattern::new(bad), Err(BadPattern), "{bad}");
        }
    }

    #[test]
    fn wildcard_detection_respects_escapes() {
        assert!(has_wildcard("*.txt"));
        assert!(has_wildcard("a[bc]"));
        assert!(!has_wildcard("a\\*b"));
        assert!(!has_wildcard("plain.txt"));
        assert_eq!(unescape("a\\*b"), "a*b");
    }
}
