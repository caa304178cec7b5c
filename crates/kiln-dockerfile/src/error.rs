//! The crate's single error type: a message plus the place in the source it
//! points at.

use std::fmt;

/// An error with the 1-based line and column it refers to.
///
/// `line == 0` means the error has no place in a source file (for example an
/// unknown `--target`, or a word expanded outside any Dockerfile); `Display`
/// then prints the message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// Last line of the instruction the error belongs to (equal to `line`
    /// for single-line instructions, 0 when unknown).
    pub end_line: usize,
    /// What went wrong, in BuildKit's words where BuildKit has them.
    pub message: String,
}

impl Error {
    /// An error without a location yet.
    pub fn msg(message: impl Into<String>) -> Self {
        Error {
            line: 0,
            column: 0,
            end_line: 0,
            message: message.into(),
        }
    }

    /// An error at a line and column.
    pub fn at(line: usize, column: usize, message: impl Into<String>) -> Self {
        Error {
            line,
            column,
            end_line: line,
            message: message.into(),
        }
    }

    /// Gives a location to an error that has none (an inner error keeps the
    /// more precise place it already had).
    pub(crate) fn located(mut self, line: usize, end_line: usize, column: usize) -> Self {
        if self.line == 0 {
            self.line = line;
            self.end_line = end_line;
            self.column = column;
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(
                f,
                "line {}, column {}: {}",
                self.line,
                self.column.max(1),
                self.message
            )
        }
    }
}
