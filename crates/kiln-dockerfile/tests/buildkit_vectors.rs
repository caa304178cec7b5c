//! BuildKit's own test vectors: every parser test file, every envVarTest
//! case for platforms A and U, every wordsTest case. Each test reports all
//! failures at once.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_dockerfile::parse;
use kiln_dockerfile::shell::Lexer;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/buildkit")
}

#[test]
fn parser_testfiles() {
    let dir = testdata().join("parser/testfiles");
    let mut failures = Vec::new();
    let mut count = 0;
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for case in entries {
        count += 1;
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let src = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let result = case.join("result");
        match (parse(&src), result.exists()) {
            (Ok(ast), true) => {
                let want = fs::read_to_string(&result).unwrap();
                let got = ast.dump();
                if got.trim_end() != want.trim_end() {
                    failures.push(format!("{name}:\n--- want\n{want}\n--- got\n{got}"));
                }
            }
            (Ok(ast), false) => {
                failures.push(format!("{name}: expected an error, got\n{}", ast.dump()))
            }
            (Err(e), true) => failures.push(format!("{name}: unexpected error: {e}")),
            (Err(_), false) => {}
        }
    }
    assert!(
        count >= 33,
        "only {count} test files found in {}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn env_var_test() {
    let text = fs::read_to_string(testdata().join("shell/envVarTest")).unwrap();
    let env: HashMap<&str, &str> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into();
    let lookup = |n: &str| env.get(n).map(|v| v.to_string());
    let lex = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "line {}: {line:?}", i + 1);
        let (platform, input, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            continue;
        }
        count += 1;
        let got = lex.process_word(input, &lookup);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => e != "error" && w == e,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {input:?} want {expected:?} got {got:?}",
                i + 1
            ));
        }
    }
    assert!(count > 200);
    assert!(
        failures.is_empty(),
        "{} of {count} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_test() {
    let text = fs::read_to_string(testdata().join("shell/wordsTest")).unwrap();
    let lex = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}: {line:?}", i + 1);
        count += 1;
        let input = parts[0].trim();
        let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        let lookup = |n: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let got = match lex.process_words(input, &lookup) {
            Ok(w) => w,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!(
                "line {}: {input:?} want {expected:?} got {got:?}",
                i + 1
            ));
        }
    }
    assert!(count > 20);
    assert!(
        failures.is_empty(),
        "{} of {count} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
