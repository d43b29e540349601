//! The CLI's text tables: columns as wide as their widest value (header
//! included), two spaces apart, no borders, the same whether or not stdout is
//! a terminal. Only for people; scripts use `--json`.

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, presets::NOTHING};

/// A table being filled; [`TextTable::print`] writes it to stdout.
pub struct TextTable {
    table: Table,
    right: Vec<usize>,
    rows: usize,
}

impl TextTable {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        let mut table = Table::new();
        table
            .load_style(NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(headers.to_vec());
        Self {
            table,
            right: Vec::new(),
            rows: 0,
        }
    }

    /// Right-aligns column `i` (numbers, sizes).
    pub fn right(mut self, i: usize) -> Self {
        self.right.push(i);
        self
    }

    /// Adds one row (as many values as headers).
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.table
            .add_row(cells.into_iter().map(Into::into).collect::<Vec<String>>());
        self.rows += 1;
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(mut self) -> String {
        let last = self.table.column_count().saturating_sub(1);
        for (i, col) in self.table.column_iter_mut().enumerate() {
            // Two spaces between columns, none after the last.
            col.set_padding((0, if i == last { 0 } else { 2 }));
            col.set_constraint(ColumnConstraint::ContentWidth);
            if self.right.contains(&i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut out = String::new();
        for line in self.table.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table.
    pub fn print(self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_longest_value() {
        let mut t = TextTable::new(&["id", "kind", "attempts"]).right(2);
        t.row(["a", "drop_pre_restore", "1/3"]);
        t.row(["bb", "ping", "10/10"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // Every column starts at the same offset on every line.
        let at = |l: &str, what: &str| l.find(what).unwrap();
        assert_eq!(at(lines[0], "kind"), at(lines[1], "drop_pre_restore"));
        assert_eq!(at(lines[1], "drop_pre_restore"), at(lines[2], "ping"));
        assert!(
            lines[2].ends_with("10/10") && lines[1].ends_with("  1/3"),
            "{text}"
        );
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text}");
    }
}
