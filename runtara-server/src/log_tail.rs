//! The last lines a process printed, kept for status replies.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Lines kept.
const MAX_LINES: usize = 50;
/// Longest line kept (longer ones are cut).
const MAX_LINE: usize = 1024;

/// A bounded tail of output lines; safe to share between the stdout and stderr readers.
#[derive(Debug, Default)]
pub struct LogTail {
    lines: Mutex<VecDeque<String>>,
}

impl LogTail {
    /// Appends a line, dropping the oldest beyond the limit.
    pub fn push(&self, line: &str) {
        let mut line = line.to_owned();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == MAX_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines joined by newlines, or `None` when nothing was printed.
    pub fn text(&self) -> Option<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        (!lines.is_empty()).then(|| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_and_cuts_long_ones() {
        let tail = LogTail::default();
        assert_eq!(tail.text(), None);
        for n in 0..(MAX_LINES + 5) {
            tail.push(&format!("line {n}"));
        }
        tail.push(&"é".repeat(MAX_LINE));
        let text = tail.text().unwrap();
        assert!(!text.contains("line 5\n"));
        assert!(text.starts_with("line 6\n"));
        assert!(text.ends_with('…'));
    }
}
