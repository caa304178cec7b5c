//! BuildKit's shell lexer: variable expansion and word splitting for the
//! words of a Dockerfile (`$VAR`, `${VAR:-x}`, quotes, the escape character).
//!
//! This follows `frontend/dockerfile/shell/lex.go` rule for rule, including
//! its oddities, because Dockerfiles in the wild depend on them.

use std::collections::BTreeSet;

use crate::Error;

/// Looks a variable up; `None` means unset (`Some("")` is set but empty).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The result of processing one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word with quotes, escapes and variables processed.
    pub word: String,
    /// The same, split into fields the way `ProcessWords` does.
    pub words: Vec<String>,
    /// Variables referenced and set.
    pub matched: BTreeSet<String>,
    /// Variables referenced but unset (BuildKit warns about these).
    pub unmatched: BTreeSet<String>,
}

/// A configured lexer. `Lexer::new('\\')` is what Dockerfile instructions use.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl Lexer {
    /// A lexer using `escape` (`\` or `` ` ``) as escape character.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands one word (BuildKit's `ProcessWord`).
    pub fn process_word(&self, word: &str, lookup: Lookup<'_>) -> Result<String, Error> {
        self.process(word, lookup).map(|e| e.word)
    }

    /// Expands and splits into words (BuildKit's `ProcessWords`).
    pub fn process_words(&self, word: &str, lookup: Lookup<'_>) -> Result<Vec<String>, Error> {
        self.process(word, lookup).map(|e| e.words)
    }

    /// Expands a word and reports which variables were used.
    pub fn process(&self, word: &str, lookup: Lookup<'_>) -> Result<Expansion, Error> {
        let mut sw = ShellWord {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
            raw_escapes: self.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let raw = sw.raw_escapes;
        match sw.process_stop_on(None, raw) {
            Ok((word_out, words)) => Ok(Expansion {
                word: word_out,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(e) => Err(Error::msg(format!(
                "failed to process {}: {e}",
                go_quote(word)
            ))),
        }
    }
}

/// Expands `word` with the default escape character and a lookup function.
pub fn expand_word(word: &str, lookup: Lookup<'_>, escape: char) -> Result<String, Error> {
    Lexer::new(escape).process_word(word, lookup)
}

pub(crate) fn go_quote(s: &str) -> String {
    crate::parser::go_quote(s)
}

struct ShellWord<'a> {
    lex: Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: Lookup<'a>,
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

type LexResult<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> LexResult<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = ch == '$' || (!self.lex.skip_process_quotes && (ch == '\'' || ch == '"'));
            if special {
                let tmp = match ch {
                    '$' => self.process_dollar()?,
                    '\'' => self.process_single_quote()?,
                    _ => self.process_double_quote()?,
                };
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            self.next();
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // The escape character escapes anything but the end of input.
                let Some(escaped) = self.next() else { break };
                words.add_raw_char(escaped);
                result.push(escaped);
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> LexResult<String> {
        // Everything up to the next ' is literal; ' cannot be escaped.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> LexResult<String> {
        // Literal except `$` and the escape character, which escapes only
        // `"`, `$` and itself (like sh's backslash in double quotes).
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let v = (self.lookup)(name);
        if v.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        v
    }

    fn process_dollar(&mut self) -> LexResult<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let first = self.next();
        let mut chs: String = first.map(String::from).unwrap_or_else(|| "\u{FFFD}".into());
        let mut null_is_unset = false;
        let mut ch = first;
        match first {
            Some('}') => {
                return Ok(match self.get_env(&name) {
                    Some(v) => v,
                    None if self.lex.skip_unset_env => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            Some(':') => {
                null_is_unset = true;
                ch = self.next();
                chs.push(ch.unwrap_or('\u{FFFD}'));
            }
            Some('+' | '-' | '?' | '#' | '%') => {}
            Some('/') => return self.process_replace(&name),
            None => return Err("syntax error: missing '}'".into()),
            _ => return Err(format!("unsupported modifier ({chs}) in substitution")),
        }
        let raw = matches!(ch, Some('#' | '%'));
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let value = self.get_env(&name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match ch {
            Some('-') => Ok(if unset_or_null {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if unset_or_null { String::new() } else { word }),
            Some('?') => match value {
                None => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    }
                )),
                Some(v) if null_is_unset && v.is_empty() => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    }
                )),
                Some(v) => Ok(v),
            },
            Some(c @ ('%' | '#')) => {
                let value = value.unwrap_or_default();
                let (greedy, pattern) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                if c == '%' {
                    trim_suffix(&pattern, &value, greedy)
                } else {
                    trim_prefix(&pattern, &value, greedy)
                }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_replace(&mut self, name: &str) -> LexResult<String> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '/' in ${}".into());
                }
                return Err(e);
            }
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let value = self.get_env(name);
        let Some(value) = value else {
            if self.lex.skip_unset_env {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let pat = Pattern::compile(&pattern, true)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut start = 0;
        let mut i = 0;
        while i <= chars.len() {
            if let Some(end) = pat.match_at(&chars, i) {
                out.extend(&chars[start..i]);
                out.push_str(&replacement);
                if !replace_all {
                    start = end;
                    break;
                }
                // An empty match advances by one character, like Go's regexp.
                if end == i {
                    if i < chars.len() {
                        out.push(chars[i]);
                    }
                    start = i + 1;
                    i += 1;
                } else {
                    start = end;
                    i = end;
                }
                continue;
            }
            i += 1;
        }
        if start < chars.len() {
            out.extend(&chars[start..]);
        }
        Ok(out)
    }

    fn process_name(&mut self) -> String {
        // A name is letters, digits and `_`; a leading digit reads all the
        // digits (positional parameter), and special parameters are one char.
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek() {
                    if !d.is_numeric() {
                        break;
                    }
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !ch.is_numeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// A shell wildcard pattern (`*`, `?`, `\` escapes) as BuildKit converts it
/// to a regular expression for `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/r}`.
#[derive(Debug)]
enum PatTok {
    Lit(char),
    Any,
    Star,
}

struct Pattern {
    toks: Vec<PatTok>,
    greedy: bool,
}

impl Pattern {
    fn compile(pattern: &str, greedy: bool) -> Result<Pattern, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => toks.push(PatTok::Star),
                '?' => toks.push(PatTok::Any),
                '\\' => {
                    // `\}` and `\/` belong to the ${} syntax, not the pattern.
                    if matches!(chars.get(i), Some('}' | '/')) {
                        continue;
                    }
                    match chars.get(i) {
                        Some(&n @ ('*' | '?' | '\\')) => {
                            toks.push(PatTok::Lit(n));
                            i += 1;
                        }
                        Some(&n) => return Err(format!("invalid escape '\\{n}'")),
                        None => return Err("invalid escape '\\'".into()),
                    }
                }
                c => toks.push(PatTok::Lit(c)),
            }
        }
        Ok(Pattern { toks, greedy })
    }

    /// Matches at `start` with backtracking regexp semantics (leftmost-first:
    /// greedy stars try the longest extent first); returns the end.
    fn match_at(&self, s: &[char], start: usize) -> Option<usize> {
        let mut memo = vec![None; (self.toks.len() + 1) * (s.len() + 1)];
        self.m(0, start, s, &mut memo)
    }

    fn m(
        &self,
        t: usize,
        i: usize,
        s: &[char],
        memo: &mut [Option<Option<usize>>],
    ) -> Option<usize> {
        let key = t * (s.len() + 1) + i;
        if let Some(r) = memo[key] {
            return r;
        }
        let r = match self.toks.get(t) {
            None => Some(i),
            Some(PatTok::Lit(c)) => {
                if s.get(i) == Some(c) {
                    self.m(t + 1, i + 1, s, memo)
                } else {
                    None
                }
            }
            Some(PatTok::Any) => {
                // Go's `.` does not match a newline.
                if s.get(i).is_some_and(|&c| c != '\n') {
                    self.m(t + 1, i + 1, s, memo)
                } else {
                    None
                }
            }
            Some(PatTok::Star) => {
                let mut max = i;
                while max < s.len() && s[max] != '\n' {
                    max += 1;
                }
                let mut found = None;
                if self.greedy {
                    for j in (i..=max).rev() {
                        if let Some(e) = self.m(t + 1, j, s, memo) {
                            found = Some(e);
                            break;
                        }
                    }
                } else {
                    for j in i..=max {
                        if let Some(e) = self.m(t + 1, j, s, memo) {
                            found = Some(e);
                            break;
                        }
                    }
                }
                found
            }
        };
        memo[key] = Some(r);
        r
    }
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> LexResult<String> {
    let pat = Pattern::compile(pattern, greedy)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match pat.match_at(&chars, 0) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// Reverses a pattern keeping `\x` escapes in front of what they escape.
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; p.len()];
    let last = p.len().saturating_sub(1);
    let mut i = 0;
    while i < p.len() {
        let o = last - i;
        if p[i] == '\\' && i != last {
            out[o - 1] = '\\';
            out[o] = p[i + 1];
            i += 2;
        } else {
            out[o] = p[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> LexResult<String> {
    // Matching the shortest rightmost suffix is matching the shortest
    // leftmost prefix of the reversed string with the reversed pattern.
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    Ok(trim_prefix(&rp, &rv, greedy)?.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PWD" => Some("/home".into()),
            "FILE" => Some("dir/sub/file.tar.gz".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn w(s: &str) -> Result<String, Error> {
        Lexer::new('\\').process_word(s, &env)
    }

    #[test]
    fn pattern_forms() {
        assert_eq!(w("${FILE#*/}").unwrap(), "sub/file.tar.gz");
        assert_eq!(w("${FILE##*/}").unwrap(), "file.tar.gz");
        assert_eq!(w("${FILE%.*}").unwrap(), "dir/sub/file.tar");
        assert_eq!(w("${FILE%%.*}").unwrap(), "dir/sub/file");
        assert_eq!(w("${FILE/sub/SUB}").unwrap(), "dir/SUB/file.tar.gz");
        assert_eq!(w("${FILE//\\//_}").unwrap(), "dir_sub_file.tar.gz");
        assert_eq!(w("${FILE/*./X}").unwrap(), "Xgz");
        assert_eq!(w("${NOPE/a/b}").unwrap(), "");
    }

    #[test]
    fn unmatched_variables_are_reported() {
        let e = Lexer::new('\\')
            .process("$PWD ${NOPE:-x} $EMPTY", &env)
            .unwrap();
        assert_eq!(e.word, "/home x ");
        assert!(e.unmatched.contains("NOPE"));
        assert!(e.matched.contains("PWD") && e.matched.contains("EMPTY"));
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut l = Lexer::new('\\');
        l.skip_unset_env = true;
        assert_eq!(
            l.process_word("$A ${B} ${C:-d} $PWD", &env).unwrap(),
            "$A ${B} ${C:-d} /home"
        );
    }

    #[test]
    fn backtick_escape() {
        let l = Lexer::new('`');
        assert_eq!(l.process_word("a`$PWD\\x", &env).unwrap(), "a$PWD\\x");
    }

    #[test]
    fn error_names_the_word() {
        let e = w("${PWD").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to process \"${PWD\": syntax error: missing '}'"
        );
        let e = w("${NOPE?must be set}").unwrap_err();
        assert!(e.message.ends_with("NOPE: must be set"), "{e}");
    }
}
