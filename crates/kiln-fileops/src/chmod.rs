//! `--chmod` values: octal (`640`, `0755`, `4755`) or symbolic
//! (`u+x,g-w,o=r`, `a+X`) as chmod(1) and newer BuildKit accept them.

use crate::error::{Error, Result};

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// An absolute mode (permission and setuid/setgid/sticky bits).
    Octal(u32),
    /// Changes applied to each file's own mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: String,
}

impl Chmod {
    /// Parses a `--chmod` value.
    pub fn parse(s: &str) -> Result<Chmod> {
        let bad = || Error::BadChmod(s.to_string());
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let mode = u32::from_str_radix(s, 8).map_err(|_| bad())?;
            if mode > 0o7777 {
                return Err(bad());
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let op_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who_s, rest) = part.split_at(op_at);
            let mut who = 0;
            for c in who_s.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad()),
                };
            }
            // Several ops may follow one who: "u+x-w".
            let mut chars = rest.chars().peekable();
            while let Some(op) = chars.next() {
                let mut perms = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, '+' | '-' | '=') {
                        break;
                    }
                    if !matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't') {
                        return Err(bad());
                    }
                    perms.push(c);
                    chars.next();
                }
                clauses.push(Clause { who, op, perms });
            }
        }
        if clauses.is_empty() {
            return Err(bad());
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a file or directory gets, given its current mode bits.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for c in clauses {
                    // No who means "a" (chmod would also apply the umask; a build has none).
                    let who = if c.who == 0 { 0o7777 } else { c.who };
                    let mut bits = 0;
                    for p in c.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & who;
                    mode = match c.op {
                        '+' => mode | bits,
                        '-' => mode & !bits,
                        _ => (mode & !(who & 0o7777)) | bits,
                    };
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_forms() {
        assert_eq!(Chmod::parse("640").ok(), Some(Chmod::Octal(0o640)));
        assert_eq!(Chmod::parse("0755").ok(), Some(Chmod::Octal(0o755)));
        assert_eq!(Chmod::parse("4755").ok(), Some(Chmod::Octal(0o4755)));
        assert!(Chmod::parse("99").is_err());
        assert!(Chmod::parse("17777").is_err());
        assert!(Chmod::parse("").is_err());
    }

    #[test]
    fn symbolic_forms() {
        let c = Chmod::parse("u+x,g-w,o=r").expect("parse");
        assert_eq!(c.apply(0o664, false), 0o744);
        let c = Chmod::parse("a+X").expect("parse");
        assert_eq!(c.apply(0o644, true), 0o755);
        assert_eq!(c.apply(0o644, false), 0o644);
        assert_eq!(c.apply(0o744, false), 0o755);
        let c = Chmod::parse("go=").expect("parse");
        assert_eq!(c.apply(0o777, false), 0o700);
        let c = Chmod::parse("u+s").expect("parse");
        assert_eq!(c.apply(0o755, false), 0o4755);
        assert!(Chmod::parse("u+q").is_err());
        assert!(Chmod::parse("z+x").is_err());
    }
}
