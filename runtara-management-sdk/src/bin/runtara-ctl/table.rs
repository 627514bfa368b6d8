//! A tiny aligned-table formatter for human output.

/// Rows of cells, rendered with columns padded to their widest cell and separated by
/// two spaces. The last column is not padded, so lines have no trailing spaces.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `headers`.
    pub fn with_headers(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// A table without headers (key/value listings).
    pub fn new() -> Self {
        Table::default()
    }

    /// Appends a row.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The rendered table, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                if index > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if index + 1 < row.len() {
                    let pad = widths[index].saturating_sub(cell.chars().count());
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` cut to at most `max` characters, with `…` marking a cut, and with line breaks
/// shown as `⏎` so one cell stays on one line.
pub fn ellipsize(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { '⏎' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let mut table = Table::with_headers(&["ID", "STATUS", "CREATED"]);
        table.row(["a", "running", "2024"]);
        table.row(["longer-id", "ok", ""]);
        assert_eq!(
            table.render(),
            "ID         STATUS   CREATED\n\
             a          running  2024\n\
             longer-id  ok\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::new();
        table.row(["é", "x"]);
        table.row(["ab", "y"]);
        assert_eq!(table.render(), "é   x\nab  y\n");
    }

    #[test]
    fn empty_tables_render_nothing() {
        assert_eq!(Table::new().render(), "");
    }

    #[test]
    fn long_cells_are_cut() {
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abc", 4), "abc");
        assert_eq!(ellipsize("a\nb", 4), "a⏎b");
    }
}
