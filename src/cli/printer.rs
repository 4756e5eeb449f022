//! Output conventions: data goes to stdout, status and errors to stderr.
//! `--json` documents carry `schema_version`.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::cli::args::{ColorWhen, GlobalArgs};

pub const JSON_SCHEMA_VERSION: u32 = 1;

pub struct Output {
    pub quiet: bool,
    pub verbose: u8,
    color_out: bool,
    color_err: bool,
    pub progress: bool,
}

#[derive(Clone, Copy)]
pub enum Tone {
    Good,
    Bad,
    Warn,
    Dim,
    Bold,
}

fn use_color(when: ColorWhen, is_tty: bool) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            is_tty
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

impl Output {
    pub fn new(global: &GlobalArgs) -> Output {
        let err_tty = std::io::stderr().is_terminal();
        Output {
            quiet: global.quiet,
            verbose: global.verbose,
            color_out: use_color(global.color, std::io::stdout().is_terminal()),
            color_err: use_color(global.color, err_tty),
            progress: err_tty && !global.no_progress && !global.quiet,
        }
    }

    fn paint(enabled: bool, tone: Tone, text: &str) -> String {
        if !enabled {
            return text.to_string();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Bad => "31",
            Tone::Warn => "33",
            Tone::Dim => "2",
            Tone::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Colour for text bound for stdout.
    pub fn paint_out(&self, tone: Tone, text: &str) -> String {
        Self::paint(self.color_out, tone, text)
    }

    /// A status line on stderr, unless `--quiet`.
    pub fn status(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Detail on stderr, with `-v`.
    pub fn detail(&self, message: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{message}");
        }
    }

    pub fn warn(&self, message: &str) {
        eprintln!(
            "{} {message}",
            Self::paint(self.color_err, Tone::Warn, "warning:")
        );
    }

    pub fn error(&self, err: &anyhow::Error) {
        eprintln!(
            "{} {err:#}",
            Self::paint(self.color_err, Tone::Bad, "error:")
        );
    }

    /// Print a `--json` document: `{"schema_version": 1, ...body}`.
    pub fn json<T: Serialize>(&self, body: &T) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct Envelope<'a, T> {
            schema_version: u32,
            #[serde(flatten)]
            body: &'a T,
        }
        let value = Envelope {
            schema_version: JSON_SCHEMA_VERSION,
            body,
        };
        // Stdout is line-buffered: without this, every line is a syscall.
        let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut stdout, &value)?;
        writeln!(stdout)?;
        stdout.flush()?;
        Ok(())
    }
}

/// Sizes as people read them: `512 B`, `1.5 KiB`, `2.3 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Numbers as people read them: no trailing zeros, at most 4 decimals.
pub fn human_number(n: f64) -> String {
    let text = format!("{n:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A plain text table; cells may carry colour codes, which do not count
/// towards width.
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

fn visible_width(s: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Table {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: vec![],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(visible_width(cell));
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let last = cells.len() - 1;
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(visible_width(cell));
                let (left, right) = match self.headers[i].1 {
                    Align::Left => (0, pad),
                    Align::Right => (pad, 0),
                };
                out.push_str(&" ".repeat(left));
                out.push_str(cell);
                if i < last {
                    out.push_str(&" ".repeat(right));
                    out.push_str("  ");
                }
            }
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
        };
        line(
            self.headers.iter().map(|(h, _)| h.as_str()).collect(),
            &mut out,
        );
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_number(1.5), "1.5");
        assert_eq!(human_number(2.0), "2");
        assert_eq!(human_number(0.123456), "0.1235");
    }

    #[test]
    fn tables_align_ignoring_colour() {
        let mut t = Table::new(&[("A", Align::Left), ("N", Align::Right)]);
        t.row(vec!["\x1b[32mx\x1b[0m".into(), "10".into()]);
        t.row(vec!["yy".into(), "2".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A    N");
        assert_eq!(lines[2], "yy   2");
    }
}
