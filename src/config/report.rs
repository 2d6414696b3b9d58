//! Collects the errors found while loading one file and pins each one to a
//! line and column.
//!
//! This file owns byte-offset to line/column translation and the list of
//! errors. It does not decide what is an error: the parser and the validator do.

use std::ops::Range;

use super::error::{ConfigError, ConfigErrors};

/// A byte range in the configuration text.
pub type Span = Range<usize>;

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Every error found so far in one file.
pub struct Report<'a> {
    file: String,
    text: &'a str,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'a> Report<'a> {
    pub fn new(file: String, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Report {
            file,
            text,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// Records an error at `span` (or at no position when `None`).
    pub fn error(&mut self, span: Option<Span>, key_path: &str, message: impl Into<String>) {
        let position = span.map(|s| self.position(s.start));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            key_path: key_path.to_string(),
            message: message.into(),
        });
    }

    /// Records an error at `span`.
    pub fn at(&mut self, span: &Span, key_path: &str, message: impl Into<String>) {
        self.error(Some(span.clone()), key_path, message);
    }

    /// The line and column of a byte offset.
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line_index = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let line_start = self.line_starts[line_index];
        let column = match self.text.get(line_start..offset) {
            Some(before) => before.chars().count() + 1,
            None => offset - line_start + 1,
        };
        Position {
            line: line_index + 1,
            column,
        }
    }

    /// "line L, column C" of a byte offset, for messages that name another place.
    pub fn describe(&self, span: &Span) -> String {
        let p = self.position(span.start);
        format!("line {}, column {}", p.line, p.column)
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Puts the errors recorded after the first `from` in file order.
    pub fn sort_from(&mut self, from: usize) {
        let from = from.min(self.errors.len());
        let tail = &mut self.errors[from..];
        tail.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
    }

    pub fn into_errors(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let report = Report::new("f".into(), "ab\ncé d\n\nx");
        assert_eq!(report.position(0), Position { line: 1, column: 1 });
        assert_eq!(report.position(2), Position { line: 1, column: 3 });
        assert_eq!(report.position(3), Position { line: 2, column: 1 });
        // 'é' is two bytes but one column.
        assert_eq!(report.position(7), Position { line: 2, column: 4 });
        assert_eq!(report.position(9), Position { line: 3, column: 1 });
        assert_eq!(report.position(10), Position { line: 4, column: 1 });
        assert_eq!(report.position(99), Position { line: 4, column: 2 });
    }

    #[test]
    fn empty_text_has_a_first_line() {
        let report = Report::new("f".into(), "");
        assert_eq!(report.position(0), Position { line: 1, column: 1 });
    }

    #[test]
    fn sorting_keeps_earlier_errors_first() {
        let mut report = Report::new("f".into(), "a\nb\nc\n");
        report.at(&(4..5), "late", "x");
        report.at(&(2..3), "second", "x");
        report.at(&(0..1), "first", "x");
        report.sort_from(1);
        let paths: Vec<_> = report
            .into_errors()
            .into_iter()
            .map(|e| e.key_path)
            .collect();
        assert_eq!(paths, ["late", "first", "second"]);
    }
}
