//! The Dockerfile syntax tree, built line by line the way BuildKit's
//! `frontend/dockerfile/parser` does: parser directives, comments, line
//! continuations, flags, JSON vs shell form, heredocs.

use crate::Error;
use crate::shell::Lexer;

/// A parsed Dockerfile: one node per instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// Instructions in file order.
    pub nodes: Vec<Node>,
    /// The escape character in force (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// Non-fatal findings (empty continuation lines), in BuildKit's words.
    pub warnings: Vec<String>,
}

/// One instruction as written, before any interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword as written (`from`, `RUN`, ...).
    pub instruction: String,
    /// Flags in front of the arguments (`--from=x`), as written.
    pub flags: Vec<String>,
    /// The arguments, shaped per instruction like BuildKit's parse tree:
    /// JSON array elements, whitespace-split words, the rest of the line as
    /// one string, or `key value sep` triples for ENV and LABEL (`sep` is
    /// `=` for `k=v`, empty for the old `ENV k v` form).
    pub args: Vec<String>,
    /// ONBUILD's trigger instruction.
    pub sub: Option<Box<Node>>,
    /// Whether the arguments came from a JSON array.
    pub json: bool,
    /// Heredocs attached to this instruction, in order.
    pub heredocs: Vec<Heredoc>,
    /// The instruction line with continuations joined (no heredoc bodies).
    pub original: String,
    /// 1-based first line.
    pub start_line: usize,
    /// 1-based last line (including heredoc bodies).
    pub end_line: usize,
    /// 1-based column of the keyword on its first line.
    pub column: usize,
}

/// A heredoc attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// File descriptor prefix (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// False when any part of the delimiter was quoted: the body is then
    /// taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from each line of the body.
    pub chomp: bool,
    /// The body as read, each line with its newline; see [`Heredoc::body`].
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed when the heredoc is `<<-`.
    pub fn body(&self) -> String {
        if self.chomp {
            chomp_heredoc_content(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Removes the leading tabs of every line (`<<-` heredocs).
pub fn chomp_heredoc_content(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

impl Node {
    /// The keyword in lower case.
    pub fn name(&self) -> String {
        self.instruction.to_ascii_lowercase()
    }

    /// The node in BuildKit's test format: `(copy ["--from=a"] "src" "dst")`
    /// without the parentheses.
    pub fn dump(&self) -> String {
        let mut s = self.instruction.to_lowercase();
        if !self.flags.is_empty() {
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&format!(" [{}]", quoted.join(" ")));
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        if let Some(sub) = &self.sub {
            s.push_str(&format!(" ({})", sub.dump()));
        }
        s.trim().to_string()
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.sub, self.name().as_str()) {
            (Some(sub), "onbuild") => sub,
            _ => self,
        };
        matches!(node.name().as_str(), "add" | "copy" | "run") && !node.json
    }
}

impl Ast {
    /// The whole tree in BuildKit's `result` file format, one line per
    /// instruction.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push('(');
            out.push_str(&n.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// Quotes a string exactly like Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `strconv.IsPrint`: controls, separators other than the
/// ASCII space and the common format characters are not printable.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0xD800..=0xDFFF | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF)
}

/// Directive state: the escape character and whether directives may still
/// appear (only before anything else in the file).
struct Directives {
    escape: char,
    done: bool,
    seen: Vec<String>,
}

impl Directives {
    fn possible_directive(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        // `check` is a BuildKit directive for its linter: valid, ignored.
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        if key == "escape" {
            match value {
                "`" => self.escape = '`',
                "\\" => self.escape = '\\',
                v => return Err(format!("invalid escape token '{v}' does not match ` or \\")),
            }
        }
        Ok(())
    }
}

fn is_go_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_go_re_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_go_re_space).strip_prefix('=')?;
    let value = rest.trim_matches(is_go_re_space);
    if value.is_empty() || value.contains('\n') {
        return None;
    }
    Some((name, value))
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

/// Removes a trailing escape character used as line continuation; returns
/// the line and whether the instruction ends here. An escaped escape
/// character at the end (`\\`) is not a continuation.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (before.to_string(), false);
    }
    (line.to_string(), true)
}

/// Parses a Dockerfile.
pub fn parse(src: &str) -> Result<Ast, Error> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let mut d = Directives {
        escape: '\\',
        done: false,
        seen: Vec::new(),
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut idx = 0;
    let mut current_line = 0;
    while idx < lines.len() {
        let raw = lines[idx];
        idx += 1;
        let stripped = trim_newline(raw).trim_start();
        let column = trim_newline(raw).chars().count() - stripped.chars().count() + 1;
        d.possible_directive(stripped)
            .map_err(|e| Error::at(current_line + 1, 1, e))?;
        let processed = if stripped.starts_with('#') {
            ""
        } else {
            stripped
        };
        current_line += 1;
        let start_line = current_line;
        let (mut line, mut end) = trim_continuation(processed, d.escape);
        if end && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !end && idx < lines.len() {
            let raw = lines[idx];
            idx += 1;
            let token = trim_newline(raw);
            d.possible_directive(token)
                .map_err(|e| Error::at(current_line + 1, 1, e))?;
            current_line += 1;
            if is_comment(raw) {
                continue;
            }
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (cont, e) = trim_continuation(token, d.escape);
            end = e;
            line.push_str(&cont);
        }
        if empty_continuation {
            warnings.push(format!(
                "[WARNING]: Empty continuation line found in:\n    {line}"
            ));
        }
        let mut node = node_from_line(&line, d.escape)
            .map_err(|e| Error::msg(e).located(start_line, current_line, column))?;
        if node.can_contain_heredoc() {
            let heredocs = heredocs_from_line(&line)
                .map_err(|e| Error::msg(e).located(start_line, current_line, column))?;
            for mut h in heredocs {
                let mut terminated = false;
                while idx < lines.len() {
                    let raw = lines[idx];
                    idx += 1;
                    current_line += 1;
                    let mut candidate = trim_newline(raw);
                    if h.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    h.content.push_str(raw);
                }
                if !terminated {
                    return Err(Error {
                        line: start_line,
                        column,
                        end_line: current_line,
                        message: format!("unterminated heredoc {}", h.name),
                    });
                }
                node.heredocs.push(h);
            }
        }
        node.start_line = start_line;
        node.end_line = current_line;
        node.column = column;
        set_location(&mut node.sub, start_line, current_line, column);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(Error::at(
            current_line.max(1),
            1,
            "file with no instructions",
        ));
    }
    if !warnings.is_empty() {
        warnings.push(
            "[WARNING]: Empty continuation lines will become errors in a future release.".into(),
        );
    }
    Ok(Ast {
        nodes,
        escape: d.escape,
        warnings,
    })
}

fn set_location(sub: &mut Option<Box<Node>>, start: usize, end: usize, column: usize) {
    if let Some(s) = sub {
        s.start_line = start;
        s.end_line = end;
        s.column = column;
    }
}

fn is_reg_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits the keyword and flags off a joined instruction line and shapes
/// the arguments for that keyword.
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_reg_ws) {
        Some(i) => (
            &trimmed[..i],
            Some(trimmed[i..].trim_start_matches(is_reg_ws)),
        ),
        None => (trimmed, None),
    };
    let (args_str, flags) = match rest {
        Some(r) => extract_flags(r),
        None => (String::new(), Vec::new()),
    };
    let args_str = args_str.trim();
    let mut node = Node {
        instruction: cmd.to_string(),
        flags,
        args: Vec::new(),
        sub: None,
        json: false,
        heredocs: Vec::new(),
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
        column: 1,
    };
    match cmd.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => {
            (node.args, node.json) = parse_maybe_json_to_list(args_str)?;
        }
        "arg" => node.args = parse_words(args_str, escape),
        "cmd" | "entrypoint" | "run" | "shell" => {
            (node.args, node.json) = parse_maybe_json(args_str)?;
        }
        "env" => node.args = parse_name_val(args_str, "ENV", escape)?,
        "label" => node.args = parse_name_val(args_str, "LABEL", escape)?,
        "expose" | "from" => node.args = split_whitespace(args_str),
        "healthcheck" => (node.args, node.json) = parse_health_config(args_str)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !args_str.is_empty() {
                node.args = vec![args_str.to_string()];
            }
        }
        "onbuild" => {
            if !args_str.is_empty() {
                node.sub = Some(Box::new(node_from_line(args_str, escape)?));
            }
        }
        // Unknown instructions parse (BuildKit's parseIgnore) and fail
        // later, when typed.
        _ => node.args = vec![String::new()],
    }
    Ok(node)
}

/// Takes the `--flag` words off the front of the arguments.
fn extract_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let (off, ch) = if at_end {
            (line.len(), '\0')
        } else {
            chars[pos]
        };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == chars.len() || chars[pos + 1].1 != '-' {
                return (line[off..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[off..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = chars[pos].1;
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = chars[pos].1;
        }
        word.push(c);
        pos += 1;
    }
    (String::new(), words)
}

/// Splits words on whitespace keeping quotes and escapes as written (they
/// are processed at expansion time); used by ENV, LABEL and ARG.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                // An escape outside quotes keeps itself and the next char,
                // even a quote.
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Inside quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        // Old form: `KEY name value...`, value is the rest of the line.
        let Some(i) = rest.find(is_reg_ws) else {
            return Err(format!("{key} must have two arguments"));
        };
        let value = rest[i..].trim_start_matches(is_reg_ws);
        return Ok(vec![
            rest[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::new();
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(w)
            ));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_reg_ws)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

enum JsonOutcome {
    Array(Vec<String>),
    NotJson,
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

fn parse_json(rest: &str) -> Result<JsonOutcome, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(JsonOutcome::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(JsonOutcome::NotJson);
    };
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match v {
            serde_json::Value::String(s) => out.push(s),
            _ => return Err(NOT_STRING_ARRAY.into()),
        }
    }
    Ok(JsonOutcome::Array(out))
}

fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest)? {
        JsonOutcome::Array(a) => Ok((a, true)),
        JsonOutcome::NotJson => Ok((vec![rest.to_string()], false)),
    }
}

fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json(rest)? {
        JsonOutcome::Array(a) => Ok((a, true)),
        JsonOutcome::NotJson => Ok((split_whitespace(rest), false)),
    }
}

fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let next = rest[sep..].trim_start();
    let (cmd, json) = parse_maybe_json(next)?;
    let mut args = vec![typ.to_string()];
    args.extend(cmd);
    Ok((args, json))
}

/// Finds the heredocs a RUN/COPY/ADD line opens, in order.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    let words = lex.process_words(line, &|_| None).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// Recognises a heredoc opener word (`<<EOF`, `<<-"EOF"`, `3<<EOF`).
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    // ^(\d*)<<(-?)([^<]*)$
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &|_| None).map_err(|e| e.message)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &|_| None).map_err(|e| e.message)?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\t\u{7f}♥"), r#""\x00\t\x7f♥""#);
        assert_eq!(go_quote("\u{200b}"), r#""\u200b""#);
    }

    #[test]
    fn directives() {
        assert_eq!(match_directive("# escape = `"), Some(("escape", "`")));
        assert_eq!(
            match_directive("#syntax=docker/dockerfile:1"),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(match_directive("# just a comment"), None);
        assert_eq!(match_directive("# 1x=y"), None);
    }

    #[test]
    fn duplicate_directive_is_an_error() {
        let e = parse("# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("only one escape parser directive"),
            "{e}"
        );
        let e = parse("# escape=x\nFROM a\n").unwrap_err();
        assert!(e.message.contains("invalid escape token"), "{e}");
    }

    #[test]
    fn directive_after_instruction_is_a_comment() {
        let ast = parse("FROM a\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(ast.escape, '\\');
        assert_eq!(ast.nodes[1].args, vec!["a  b"]);
    }

    #[test]
    fn check_directive_does_not_end_directives() {
        let ast = parse("# check=skip=all\n# escape=`\nFROM a\nRUN a `\n b\n").unwrap();
        assert_eq!(ast.escape, '`');
        assert_eq!(ast.nodes[1].args, vec!["a  b"]);
    }

    #[test]
    fn heredoc_openers() {
        let h = parse_heredoc("<<EOF").unwrap().unwrap();
        assert!(h.expand && !h.chomp && h.name == "EOF");
        let h = parse_heredoc("<<-\"EOF\"").unwrap().unwrap();
        assert!(!h.expand && h.chomp && h.name == "EOF");
        let h = parse_heredoc("3<<'E'OF").unwrap().unwrap();
        assert!(!h.expand && h.fd == 3 && h.name == "EOF");
        assert!(parse_heredoc("a<<EOF").unwrap().is_none());
        assert!(parse_heredoc("<<").unwrap().is_none());
    }

    #[test]
    fn lines_and_columns() {
        let ast = parse("FROM a\n\n  RUN x \\\n    y\nCOPY <<EOF /f\nhi\nEOF\n").unwrap();
        let n = &ast.nodes[1];
        assert_eq!((n.start_line, n.end_line, n.column), (3, 4, 3));
        let c = &ast.nodes[2];
        assert_eq!((c.start_line, c.end_line), (5, 7));
        assert_eq!(c.heredocs[0].content, "hi\n");
    }

    #[test]
    fn crlf_line_endings() {
        let ast = parse("FROM a\r\nRUN echo \\\r\n  hi\r\n").unwrap();
        assert_eq!(ast.nodes[1].args, vec!["echo   hi"]);
    }
}
