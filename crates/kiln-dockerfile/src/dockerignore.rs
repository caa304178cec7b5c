//! `.dockerignore` files with moby/patternmatcher semantics: the last
//! matching pattern wins, `!` re-includes, a path is excluded when it or
//! one of its parent directories matches, `**` spans directories.

use crate::Error;

/// Compiled `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Glob,
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    /// `*`: anything but `/`.
    Star,
    /// `?`: one char but `/`.
    Quest,
    /// `**/` or `**` inside: `(.*/)?`.
    DirStar,
    /// `**` at the end: `.*`.
    AnyEnd,
    /// `[...]`.
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    match_type: MatchType,
    toks: Vec<Tok>,
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

impl DockerIgnore {
    /// Reads a `.dockerignore` file's text (moby's `ignorefile.ReadAll` then
    /// `patternmatcher.New`). Errors name the 1-based line.
    pub fn parse(text: &str) -> Result<DockerIgnore, Error> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let invert = p.starts_with('!');
            if invert {
                p = p[1..].trim();
            }
            let mut pat = String::new();
            if !p.is_empty() {
                let c = clean_path(p);
                pat = match c.strip_prefix('/') {
                    Some(rest) if c.len() > 1 => rest.to_string(),
                    _ => c,
                };
            }
            if invert {
                pat.insert(0, '!');
            }
            let compiled = Pattern::new(&pat).map_err(|e| Error::at(i + 1, 1, e))?;
            patterns.extend(compiled);
        }
        Ok(DockerIgnore { patterns })
    }

    /// Builds a matcher from patterns as `patternmatcher.New` takes them.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<DockerIgnore, Error> {
        let mut out = Vec::new();
        for p in patterns {
            out.extend(Pattern::new(p.as_ref()).map_err(Error::msg)?);
        }
        Ok(DockerIgnore { patterns: out })
    }

    /// The patterns, cleaned, exceptions prefixed with `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.cleaned)
                } else {
                    p.cleaned.clone()
                }
            })
            .collect()
    }

    /// Whether any `!` exception pattern exists.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is left
    /// out of the context: patternmatcher's `MatchesOrParentMatches`.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let file = clean_path(rel_path.trim_start_matches('/'));
        let parent = match file.rfind('/') {
            Some(i) => &file[..i],
            None => ".",
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            // An exception only matters once something matched, and a plain
            // pattern only when nothing did.
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(&file);
            if !m && parent != "." {
                for i in 0..parent_dirs.len() {
                    if p.matches(&parent_dirs[..=i].join("/")) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walk may skip the directory `rel_dir` without looking
    /// inside: it is excluded and no exception pattern could re-include
    /// anything below it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.is_excluded(rel_dir) {
            return false;
        }
        let dir = clean_path(rel_dir.trim_start_matches('/'));
        let dir_slash = format!("{dir}/");
        !self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            // The literal part before the first wildcard bounds what the
            // exception can match.
            let lit_end = p
                .cleaned
                .find(['*', '?', '[', '\\'])
                .unwrap_or(p.cleaned.len());
            let lit = &p.cleaned[..lit_end];
            if lit_end == p.cleaned.len() {
                lit.starts_with(&dir_slash)
            } else {
                lit.starts_with(&dir_slash) || dir_slash.starts_with(lit)
            }
        })
    }
}

impl Pattern {
    /// `None` for blank patterns (ignored, like patternmatcher does).
    fn new(raw: &str) -> Result<Option<Pattern>, String> {
        let p = raw.trim();
        if p.is_empty() {
            return Ok(None);
        }
        let mut p = clean_path(p);
        let exclusion = p.starts_with('!');
        if exclusion {
            if p.len() == 1 {
                return Err("illegal exclusion pattern: \"!\"".into());
            }
            p.remove(0);
        }
        validate_go_match(&p)
            .map_err(|e| format!("{e} in pattern {}", crate::parser::go_quote(&p)))?;
        let (match_type, toks) = compile(&p);
        Ok(Some(Pattern {
            cleaned: p,
            exclusion,
            match_type,
            toks,
        }))
    }

    fn matches(&self, path: &str) -> bool {
        match self.match_type {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchType::Glob => {
                let chars: Vec<char> = path.chars().collect();
                let mut memo = vec![None; (self.toks.len() + 1) * (chars.len() + 1)];
                glob(&self.toks, 0, &chars, 0, &mut memo)
            }
        }
    }
}

/// Rejects what Go's `filepath.Match` calls a bad pattern.
fn validate_go_match(p: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err("syntax error");
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut n = 0;
                loop {
                    match chars.get(i) {
                        None => return Err("syntax error"),
                        Some(']') if n > 0 => break,
                        Some('\\') => i += 2,
                        Some('-') if n == 0 => return Err("syntax error"),
                        Some(_) => {
                            if chars.get(i + 1) == Some(&'-') {
                                match chars.get(i + 2) {
                                    None | Some(']') => return Err("syntax error"),
                                    Some('\\') => i += 4,
                                    Some(_) => i += 3,
                                }
                            } else {
                                i += 1;
                            }
                        }
                    }
                    n += 1;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn compile(p: &str) -> (MatchType, Vec<Tok>) {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut mt = MatchType::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if mt == MatchType::Exact {
                        mt = MatchType::Prefix;
                    } else {
                        mt = MatchType::Glob;
                    }
                    toks.push(Tok::AnyEnd);
                } else {
                    toks.push(Tok::DirStar);
                    mt = MatchType::Glob;
                }
                if first {
                    mt = MatchType::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                mt = MatchType::Glob;
            }
            '?' => {
                toks.push(Tok::Quest);
                mt = MatchType::Glob;
            }
            '\\' => {
                if let Some(&n) = chars.get(i) {
                    i += 1;
                    toks.push(Tok::Lit(n));
                    mt = MatchType::Glob;
                } else {
                    toks.push(Tok::Lit('\\'));
                }
            }
            '[' => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut items = Vec::new();
                let mut n = 0;
                while let Some(&c) = chars.get(i) {
                    if c == ']' && n > 0 {
                        i += 1;
                        break;
                    }
                    let lo = if c == '\\' {
                        i += 1;
                        chars.get(i).copied().unwrap_or('\\')
                    } else {
                        c
                    };
                    i += 1;
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                        i += 1;
                        hi = if chars[i] == '\\' {
                            i += 1;
                            chars.get(i).copied().unwrap_or('\\')
                        } else {
                            chars[i]
                        };
                        i += 1;
                    }
                    items.push((lo, hi));
                    n += 1;
                }
                toks.push(Tok::Class { negated, items });
                mt = MatchType::Glob;
            }
            c => toks.push(Tok::Lit(c)),
        }
        first = false;
    }
    // A prefix or suffix shortcut is only right when nothing else in the
    // pattern is special; otherwise match the whole expression.
    if matches!(mt, MatchType::Suffix) && toks[1..].iter().any(|t| !matches!(t, Tok::Lit(_))) {
        mt = MatchType::Glob;
    }
    (mt, toks)
}

fn glob(toks: &[Tok], t: usize, s: &[char], i: usize, memo: &mut [Option<bool>]) -> bool {
    let key = t * (s.len() + 1) + i;
    if let Some(r) = memo[key] {
        return r;
    }
    let r = match toks.get(t) {
        None => i == s.len(),
        Some(Tok::Lit(c)) => s.get(i) == Some(c) && glob(toks, t + 1, s, i + 1, memo),
        Some(Tok::Quest) => {
            s.get(i).is_some_and(|&c| c != '/') && glob(toks, t + 1, s, i + 1, memo)
        }
        Some(Tok::Class { negated, items }) => {
            s.get(i)
                .is_some_and(|&c| items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
                && glob(toks, t + 1, s, i + 1, memo)
        }
        Some(Tok::Star) => {
            let mut j = i;
            loop {
                if glob(toks, t + 1, s, j, memo) {
                    break true;
                }
                if j >= s.len() || s[j] == '/' {
                    break false;
                }
                j += 1;
            }
        }
        Some(Tok::AnyEnd) => s[i..].iter().all(|&c| c != '\n'),
        Some(Tok::DirStar) => {
            // Either nothing, or anything ending in `/`.
            glob(toks, t + 1, s, i, memo)
                || (i..s.len()).any(|j| {
                    s[j] == '/' && !s[i..j].contains(&'\n') && glob(toks, t + 1, s, j + 1, memo)
                })
        }
    };
    memo[key] = Some(r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn di(p: &[&str]) -> DockerIgnore {
        DockerIgnore::from_patterns(p).unwrap()
    }

    #[test]
    fn clean() {
        assert_eq!(clean_path("a//b/./c/.."), "a/b");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("../a/"), "../a");
        assert_eq!(clean_path("./"), ".");
    }

    // Cases from moby/patternmatcher's TestMatches (MatchesOrParentMatches).
    #[test]
    fn moby_matches() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
        ];
        for &(pattern, path, want) in cases {
            let got = di(&[pattern]).is_excluded(path);
            assert_eq!(got, want, "pattern {pattern:?} path {path:?}");
        }
    }

    #[test]
    fn last_match_wins_and_parents() {
        let d = di(&["docs", "!docs/README.md", "*.tmp"]);
        assert!(d.is_excluded("docs/a.md"));
        assert!(d.is_excluded("docs/sub/x"));
        assert!(!d.is_excluded("docs/README.md"));
        assert!(d.is_excluded("x.tmp"));
        assert!(!d.is_excluded("sub/x.tmp"));
        assert!(!d.is_excluded("src/main.rs"));
        assert!(!d.can_skip_dir("docs"));
        let d = di(&["target", "*.log"]);
        assert!(d.can_skip_dir("target"));
        assert!(!d.can_skip_dir("src"));
        let d = di(&["target", "!**/*.keep"]);
        assert!(!d.can_skip_dir("target"));
        let d = di(&["target", "!other/*.keep"]);
        assert!(d.can_skip_dir("target"));
    }

    #[test]
    fn file_syntax() {
        let d =
            DockerIgnore::parse("# comment\n\n/abs/path\n./rel/\n  !  keep \n**/*.o\n").unwrap();
        assert_eq!(d.patterns(), vec!["abs/path", "rel", "!keep", "**/*.o"]);
        assert!(d.is_excluded("abs/path/x"));
        assert!(d.is_excluded("a/b/c.o"));
        let e = DockerIgnore::parse("ok\n[a-\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(DockerIgnore::parse("!\n").is_err());
    }

    #[test]
    fn exceptions_of_exceptions() {
        // moby's TestMatchesWithMalformedPatterns-style ordering checks.
        let d = di(&["**", "!*.go", "vendor"]);
        assert!(d.is_excluded("a.txt"));
        assert!(!d.is_excluded("main.go"));
        assert!(d.is_excluded("vendor/x.go"));
        let d = di(&["a", "!a/b", "a/b/c"]);
        assert!(d.is_excluded("a/x"));
        assert!(!d.is_excluded("a/b/x"));
        assert!(d.is_excluded("a/b/c/x"));
    }
}
