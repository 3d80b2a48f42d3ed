//! Writing results: aligned tables for people, CSV and JSON for scripts.
//!
//! Every list is built as a [`Table`] (for `table` and `csv`) next to its serde value (for
//! `json`), so the three formats always hold the same rows.

use std::io::Write;

use serde::Serialize;

pub use crate::cli::Format;

/// Rows of text cells under a header.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    /// Columns padded to their widest cell; numbers right-aligned, text left-aligned.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let numeric: Vec<bool> = (0..self.headers.len())
            .map(|i| {
                self.rows.iter().any(|r| !r[i].is_empty())
                    && self
                        .rows
                        .iter()
                        .all(|r| r[i].is_empty() || r[i].parse::<f64>().is_ok())
            })
            .collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                if numeric[i] {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < cells.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.headers);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.headers).expect("writing to memory");
        for row in &self.rows {
            w.write_record(row).expect("writing to memory");
        }
        String::from_utf8(w.into_inner().expect("writing to memory")).expect("cells are UTF-8")
    }
}

/// Prints `table` or `json` according to `format`.
pub fn print<T: Serialize + ?Sized>(format: Format, table: &Table, json: &T) {
    match format {
        Format::Table => emit(&table.render()),
        Format::Csv => emit(&table.to_csv()),
        Format::Json => print_json(json),
    }
}

/// Pretty JSON plus a newline.
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    emit(&(serde_json::to_string_pretty(value).expect("API types serialise") + "\n"));
}

/// Labelled lines (`label  value`), for one record shown to a person.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(l, v)| format!("{l:width$}  {v}\n"))
        .collect()
}

/// Writes to stdout; a closed pipe (`emsctl … | head`) ends the program quietly.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// A number without trailing noise: `558.6`, `50`, `-200`.
pub fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_right_text_left() {
        let mut t = Table::new(["name", "power_w"]);
        t.push(vec!["a".into(), "5".into()]);
        t.push(vec!["bbb".into(), "-200.5".into()]);
        assert_eq!(t.render(), "name  power_w\na           5\nbbb    -200.5\n");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut t = Table::new(["a", "b"]);
        t.push(vec!["x,y".into(), "plain".into()]);
        assert_eq!(t.to_csv(), "a,b\n\"x,y\",plain\n");
    }

    #[test]
    fn numbers_lose_trailing_zeros() {
        assert_eq!(num(50.0), "50");
        assert_eq!(num(558.6), "558.6");
        assert_eq!(num(-0.0001), "0");
    }
}
