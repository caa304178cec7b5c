//! Instruction flags (`--from=x`, `--link`), checked like BuildKit's BFlags.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    Bool,
    String,
    Strings,
}

/// The flags an instruction accepts and the values it was given.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    defs: BTreeMap<&'static str, FlagType>,
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
}

/// A flag that failed to parse; `flag` names it so the error can point at it.
#[derive(Debug)]
pub(crate) struct FlagError {
    pub flag: Option<String>,
    pub message: String,
}

impl Flags {
    pub fn new(defs: &[(&'static str, FlagType)]) -> Self {
        Flags {
            defs: defs.iter().copied().collect(),
            ..Default::default()
        }
    }

    /// Parses `args` (each `--name[=value]`); a lone `--` ends the flags.
    pub fn parse(&mut self, args: &[String]) -> Result<(), FlagError> {
        for arg in args {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(FlagError {
                    flag: None,
                    message: format!("Arg should start with -- : {arg}"),
                });
            };
            if body.is_empty() {
                return Ok(());
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let err = |message: String| FlagError {
                flag: Some(name.to_string()),
                message,
            };
            let Some((&key, &ty)) = self.defs.get_key_value(name) else {
                return Err(err(format!("Unknown flag: {name}")));
            };
            let used = self.bools.contains_key(key)
                || self.strings.contains_key(key)
                || self.lists.contains_key(key);
            if used && ty != FlagType::Strings {
                return Err(err(format!("Duplicate flag specified: {name}")));
            }
            match ty {
                FlagType::Bool => {
                    let v = match value {
                        None => true,
                        Some("") => return Err(err(format!("Missing a value on flag: {name}"))),
                        Some(v) if v.eq_ignore_ascii_case("true") => true,
                        Some(v) if v.eq_ignore_ascii_case("false") => false,
                        Some(v) => {
                            return Err(err(format!(
                                "Expecting boolean value for flag {name}, not: {v}"
                            )));
                        }
                    };
                    self.bools.insert(key, v);
                }
                FlagType::String => {
                    let Some(v) = value else {
                        return Err(err(format!("Missing a value on flag: {name}")));
                    };
                    self.strings.insert(key, v.to_string());
                }
                FlagType::Strings => {
                    let Some(v) = value else {
                        return Err(err(format!("Missing a value on flag: {name}")));
                    };
                    self.lists.entry(key).or_default().push(v.to_string());
                }
            }
        }
        Ok(())
    }

    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }

    /// The value of a string flag; `None` when not given (an explicit empty
    /// value is `Some("")`).
    pub fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_kinds() {
        let mut f = Flags::new(&[
            ("link", FlagType::Bool),
            ("from", FlagType::String),
            ("exclude", FlagType::Strings),
        ]);
        f.parse(&args(&[
            "--link=FALSE",
            "--from=x",
            "--exclude=a",
            "--exclude=b",
        ]))
        .unwrap();
        assert!(!f.bool("link"));
        assert_eq!(f.string("from").as_deref(), Some("x"));
        assert_eq!(f.strings("exclude"), vec!["a", "b"]);
    }

    #[test]
    fn errors() {
        let mut f = Flags::new(&[("link", FlagType::Bool), ("from", FlagType::String)]);
        let e = f.parse(&args(&["--frob=x"])).unwrap_err();
        assert_eq!(
            (e.flag.as_deref(), e.message.as_str()),
            (Some("frob"), "Unknown flag: frob")
        );
        let mut f = Flags::new(&[("from", FlagType::String)]);
        assert_eq!(
            f.parse(&args(&["--from"])).unwrap_err().message,
            "Missing a value on flag: from"
        );
        let mut f = Flags::new(&[("from", FlagType::String)]);
        let e = f.parse(&args(&["--from=a", "--from=b"])).unwrap_err();
        assert_eq!(e.message, "Duplicate flag specified: from");
        let mut f = Flags::new(&[("link", FlagType::Bool)]);
        assert!(f.parse(&args(&["--link=maybe"])).is_err());
    }
}
