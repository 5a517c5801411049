//! Plain-text tables for listings: left-aligned columns, one header row.
//! Cells come from Redis and may hold anything: each is made printable and
//! cut to a readable width.

/// The widest a cell is shown, in characters.
const MAX_CELL_CHARS: usize = 80;

/// A table being built.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|name| name.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns); control characters are
    /// escaped and long cells cut.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .iter()
                .map(|cell| super::format::printable(cell, MAX_CELL_CHARS))
                .collect(),
        );
    }

    /// Whether the table has no rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, columns padded to their widest cell.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .header
            .iter()
            .map(|cell| cell.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    let pad = width.saturating_sub(cell.chars().count()) + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_hostile_cells_are_cut_and_escaped() {
        let mut table = Table::new(&["TYPE", "ID"]);
        table.row(vec!["t".repeat(100_000), "a\nb\u{1b}[2J".into()]);
        let text = table.render();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.len() < 300, "{}", text.len());
        assert!(text.contains("a\\nb\\u{1b}[2J"), "{text}");
    }

    #[test]
    fn columns_are_padded_to_their_widest_cell() {
        let mut table = Table::new(&["NAME", "STATE"]);
        table.row(vec!["a-long-name".into(), "ok".into()]);
        table.row(vec!["b".into(), "paused".into()]);
        assert_eq!(
            table.render(),
            "NAME         STATE\na-long-name  ok\nb            paused\n"
        );
    }
}
