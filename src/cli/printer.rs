//! Every byte the binary writes goes through one [`Printer`]: data to its
//! stdout, status and errors to its stderr. Both are writers handed in at
//! construction, so tests render into buffers. `--json` documents carry
//! `schema_version`.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::cli::args::{ColorWhen, GlobalArgs};

pub const JSON_SCHEMA_VERSION: u32 = 1;

/// Pretty JSON as `serde_json::to_writer_pretty` writes it, starting
/// `depth` levels deep (two spaces a level), for items of
/// [`Printer::json_array`]: `{`, one `"key": value` line per field, `}`.
pub struct PrettyAt<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
    first: bool,
}

impl<'a> PrettyAt<'a> {
    pub fn object(out: &'a mut Vec<u8>, depth: usize) -> PrettyAt<'a> {
        out.push(b'{');
        PrettyAt {
            out,
            depth,
            first: true,
        }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.out
            .extend_from_slice(if self.first { b"\n" } else { b",\n" });
        self.first = false;
        indent(self.out, self.depth + 1);
        let _ = serde_json::to_writer(&mut *self.out, key);
        self.out.extend_from_slice(b": ");
        self.out
    }

    /// A field whose value serde writes (a scalar or a string).
    pub fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        let out = self.key(key);
        let _ = serde_json::to_writer(out, value);
    }

    /// A field whose value is already compact JSON (from serde_json).
    pub fn raw(&mut self, key: &str, compact: &str) {
        let depth = self.depth + 1;
        let out = self.key(key);
        reindent(out, compact, depth);
    }

    pub fn end(self) {
        if !self.first {
            self.out.push(b'\n');
            indent(self.out, self.depth);
        }
        self.out.push(b'}');
    }
}

fn indent(out: &mut Vec<u8>, depth: usize) {
    out.extend(std::iter::repeat_n(b' ', depth * 2));
}

/// Compact JSON rewritten as pretty JSON `depth` levels deep: the bytes
/// serde_json's pretty printer writes for the same value.
pub fn reindent(out: &mut Vec<u8>, compact: &str, mut depth: usize) {
    let bytes = compact.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            out.push(c);
            if c == b'\\' && i + 1 < bytes.len() {
                out.push(bytes[i + 1]);
                i += 1;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                out.push(c);
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                let mut j = i + 1;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                if bytes.get(j) == Some(&close) {
                    out.push(c);
                    out.push(close);
                    i = j;
                } else {
                    depth += 1;
                    out.push(c);
                    out.push(b'\n');
                    indent(out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                out.push(b'\n');
                indent(out, depth);
                out.push(c);
            }
            b',' => {
                out.extend_from_slice(b",\n");
                indent(out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => out.push(c),
        }
        i += 1;
    }
}

/// Where the printer writes: the process's stdout or stderr, or a buffer.
pub type Sink = Box<dyn Write + Send>;

/// How the printer behaves, decided once from the global flags and the
/// terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// `--quiet`: no status lines.
    pub quiet: bool,
    /// `-v` count: detail lines.
    pub verbose: u8,
    /// Colour codes in data bound for stdout.
    pub color_out: bool,
    /// Colour codes in `warning:` and `error:` prefixes on stderr.
    pub color_err: bool,
    /// Progress bars may be drawn (stderr is a terminal, no `--no-progress`,
    /// no `--quiet`).
    pub progress: bool,
}

pub struct Printer {
    stdout: Mutex<Sink>,
    stderr: Mutex<Sink>,
    pub quiet: bool,
    pub verbose: u8,
    color_out: bool,
    color_err: bool,
    pub progress: bool,
    /// A `--json` document went to stdout already; an error after it must
    /// not add a second one.
    json_written: std::sync::atomic::AtomicBool,
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

fn lock(sink: &Mutex<Sink>) -> MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Mode {
    /// The mode for the process's own stdout and stderr.
    pub fn for_terminal(global: &GlobalArgs) -> Mode {
        let err_tty = io::stderr().is_terminal();
        Mode {
            quiet: global.quiet,
            verbose: global.verbose,
            color_out: use_color(global.color, io::stdout().is_terminal()),
            color_err: use_color(global.color, err_tty),
            progress: err_tty && !global.no_progress && !global.quiet,
        }
    }
}

impl Printer {
    /// The printer of the process: its stdout (buffered, flushed after each
    /// piece of data) and its stderr.
    pub fn new(global: &GlobalArgs) -> Printer {
        // Stdout is line-buffered: without the buffer, every line is a syscall.
        let stdout = io::BufWriter::with_capacity(1 << 16, io::stdout());
        Printer::with_writers(
            Box::new(stdout),
            Box::new(io::stderr()),
            Mode::for_terminal(global),
        )
    }

    pub fn with_writers(stdout: Sink, stderr: Sink, mode: Mode) -> Printer {
        let Mode {
            quiet,
            verbose,
            color_out,
            color_err,
            progress,
        } = mode;
        Printer {
            stdout: Mutex::new(stdout),
            stderr: Mutex::new(stderr),
            quiet,
            verbose,
            color_out,
            color_err,
            progress,
            json_written: std::sync::atomic::AtomicBool::new(false),
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

    // ---- data: stdout ----

    /// Data text on stdout, written as is.
    pub fn text(&self, text: &str) -> io::Result<()> {
        let mut out = lock(&self.stdout);
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// One line of data on stdout.
    pub fn line(&self, line: &str) -> io::Result<()> {
        let mut out = lock(&self.stdout);
        writeln!(out, "{line}")?;
        out.flush()
    }

    /// One line of a long listing on stdout, left in the buffer until
    /// [`Printer::flush`]; may be called from several threads.
    pub fn listing_line(&self, line: &str) -> io::Result<()> {
        writeln!(lock(&self.stdout), "{line}")
    }

    /// Hand stdout to a writer of data (completions, the man page).
    pub fn write_data(
        &self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut out = lock(&self.stdout);
        write(&mut *out)?;
        out.flush()
    }

    /// Write out whatever stdout still buffers.
    pub fn flush(&self) -> io::Result<()> {
        lock(&self.stdout).flush()
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
        self.json_written
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut out = lock(&self.stdout);
        serde_json::to_writer_pretty(&mut *out, &value)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    }

    /// Print a `--json` document whose one field `key` is an array of
    /// `items`, byte for byte what [`Printer::json`] prints for
    /// `{key: [...]}`: `write` writes one item as pretty JSON nested two
    /// levels deep (see [`PrettyAt`]). Items are formatted in parallel, a
    /// batch at a time, so a long listing is never held whole.
    pub fn json_array<T: Sync>(
        &self,
        key: &str,
        items: &[T],
        write: impl Fn(&T, &mut Vec<u8>) + Sync,
    ) -> anyhow::Result<()> {
        use rayon::prelude::*;
        const BATCH: usize = 8192;
        self.json_written
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut out = lock(&self.stdout);
        write!(out, "{{\n  \"schema_version\": {JSON_SCHEMA_VERSION},\n  ")?;
        serde_json::to_writer(&mut *out, key)?;
        if items.is_empty() {
            out.write_all(b": []\n}\n")?;
            out.flush()?;
            return Ok(());
        }
        out.write_all(b": [")?;
        for (b, batch) in items.chunks(BATCH).enumerate() {
            let parts: Vec<Vec<u8>> = batch
                .par_chunks(256)
                .enumerate()
                .map(|(c, chunk)| {
                    let mut buf = Vec::with_capacity(chunk.len() * 640);
                    for (i, item) in chunk.iter().enumerate() {
                        let first = b == 0 && c == 0 && i == 0;
                        buf.extend_from_slice(if first { b"\n    " } else { b",\n    " });
                        write(item, &mut buf);
                    }
                    buf
                })
                .collect();
            for part in parts {
                out.write_all(&part)?;
            }
        }
        out.write_all(b"\n  ]\n}\n")?;
        out.flush()?;
        Ok(())
    }

    // ---- status: stderr ----
    //
    // A failure to write status is ignored: there is nowhere left to report
    // it, and the command's data and exit code still stand.

    /// A line on stderr, whatever `--quiet` says: the caller decided.
    pub fn err_line(&self, line: &str) {
        let _ = writeln!(lock(&self.stderr), "{line}");
    }

    /// A status line on stderr, unless `--quiet`.
    pub fn status(&self, message: &str) {
        if !self.quiet {
            self.err_line(message);
        }
    }

    /// Detail on stderr, with `-v`.
    pub fn detail(&self, message: &str) {
        if self.verbose > 0 && !self.quiet {
            self.err_line(message);
        }
    }

    pub fn warn(&self, message: &str) {
        self.err_line(&format!(
            "{} {message}",
            Self::paint(self.color_err, Tone::Warn, "warning:")
        ));
    }

    pub fn error(&self, err: &anyhow::Error) {
        self.err_line(&format!(
            "{} {err:#}",
            Self::paint(self.color_err, Tone::Bad, "error:")
        ));
    }

    /// A failure under `--json`: the message on stderr as always, and one
    /// `{"schema_version", "error": {"kind", "message"}, "exit_code"}`
    /// object on stdout for a script that reads only stdout, unless the
    /// command printed its document before failing.
    pub fn error_json(&self, kind: &str, err: &anyhow::Error, exit_code: u8) {
        self.error(err);
        if self.json_written.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let _ = self.json(&serde_json::json!({
            "error": {"kind": kind, "message": format!("{err:#}")},
            "exit_code": exit_code,
        }));
    }

    /// A question on stderr, without a newline, for the answer to follow.
    pub fn ask(&self, question: &str) -> io::Result<()> {
        let mut err = lock(&self.stderr);
        write!(err, "{question}")?;
        err.flush()
    }
}

/// A count with thousands separators: `7,492`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` of a noun: `1 file`, `2 files`, `1,200 files`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
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
    if !s.as_bytes().contains(&0x1b) {
        return s.chars().count();
    }
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
        let line_width: usize = widths.iter().sum::<usize>() + 2 * widths.len() + 1;
        let mut out = String::with_capacity(line_width * (self.rows.len() + 1));
        let spaces = |out: &mut String, n: usize| out.extend(std::iter::repeat_n(' ', n));
        let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
            let last = widths.len() - 1;
            for (i, cell) in cells.enumerate() {
                let pad = widths[i].saturating_sub(visible_width(cell));
                let (left, right) = match self.headers[i].1 {
                    Align::Left => (0, pad),
                    Align::Right => (pad, 0),
                };
                spaces(out, left);
                out.push_str(cell);
                if i < last {
                    spaces(out, right + 2);
                }
            }
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
        };
        line(&mut self.headers.iter().map(|(h, _)| h.as_str()), &mut out);
        for row in &self.rows {
            line(&mut row.iter().map(String::as_str), &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer the test can read back after the printer wrote to it.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn printer(mode: Mode) -> (Printer, Buffer, Buffer) {
        let (out, err) = (Buffer::default(), Buffer::default());
        let printer = Printer::with_writers(Box::new(out.clone()), Box::new(err.clone()), mode);
        (printer, out, err)
    }

    #[test]
    fn a_table_goes_to_stdout_and_status_to_stderr() {
        let (p, out, err) = printer(Mode::default());
        let mut t = Table::new(&[("REF", Align::Left), ("SIZE", Align::Right)]);
        t.row(vec!["20261123_101500".into(), human_size(1536)]);
        p.text(&t.render()).unwrap();
        p.status("1 run");
        assert_eq!(
            out.text(),
            "REF                 SIZE\n20261123_101500  1.5 KiB\n"
        );
        assert_eq!(err.text(), "1 run\n");
    }

    #[test]
    fn quiet_drops_status_and_detail_but_not_warnings_or_data() {
        let (p, out, err) = printer(Mode {
            quiet: true,
            verbose: 1,
            ..Mode::default()
        });
        p.status("registered");
        p.detail("path: /x");
        p.line("raw/20261123_101500").unwrap();
        p.warn("careful");
        assert_eq!(out.text(), "raw/20261123_101500\n");
        assert_eq!(err.text(), "warning: careful\n");
    }

    #[test]
    fn detail_needs_verbose() {
        let (p, _, err) = printer(Mode::default());
        p.detail("hidden");
        assert_eq!(err.text(), "");
        let (p, _, err) = printer(Mode {
            verbose: 1,
            ..Mode::default()
        });
        p.detail("shown");
        assert_eq!(err.text(), "shown\n");
    }

    #[test]
    fn counts_have_separators_and_plurals() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(7492), "7,492");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(plural(1, "file", "files"), "1 file");
        assert_eq!(plural(1200, "file", "files"), "1,200 files");
    }

    #[test]
    fn json_carries_the_schema_version() {
        let (p, out, err) = printer(Mode::default());
        p.json(&serde_json::json!({"ref": "raw/a"})).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out.text()).unwrap();
        assert_eq!(value["schema_version"], JSON_SCHEMA_VERSION);
        assert_eq!(value["ref"], "raw/a");
        assert!(out.text().ends_with("}\n"));
        assert_eq!(err.text(), "");
    }

    #[test]
    fn json_array_prints_what_json_prints() {
        let items = [
            serde_json::json!({
                "ref": "raw/a\"b\\c", "n": 1, "f": 0.30000000000000004, "none": null,
                "empty": {}, "list": [], "nested": {"a": [1, {"b": "x,y:z"}], "é": "ü\n"},
                "tags": ["a", "b"], "weird": {"k": [[], {}, [1, [2]]]}
            }),
            serde_json::json!({"only": true}),
            serde_json::json!({}),
        ];
        // Past the size of the chunks formatted in parallel.
        let items: Vec<serde_json::Value> = items.iter().cycle().take(700).cloned().collect();
        let (p, expected, _) = printer(Mode::default());
        p.json(&serde_json::json!({ "runs": items })).unwrap();
        let (p, out, _) = printer(Mode::default());
        p.json_array("runs", &items, |item, buf| {
            let mut o = PrettyAt::object(buf, 2);
            for (key, value) in item.as_object().unwrap() {
                if value.is_object() || value.is_array() {
                    o.raw(key, &value.to_string());
                } else {
                    o.field(key, value);
                }
            }
            o.end();
        })
        .unwrap();
        assert_eq!(out.text(), expected.text());
        let (p, out, _) = printer(Mode::default());
        let none: [u8; 0] = [];
        p.json_array("runs", &none, |_, _| {}).unwrap();
        let (q, expected, _) = printer(Mode::default());
        q.json(&serde_json::json!({ "runs": [] })).unwrap();
        assert_eq!(out.text(), expected.text());
    }

    #[test]
    fn errors_and_warnings_are_coloured_only_on_request() {
        let (p, out, err) = printer(Mode {
            color_err: true,
            ..Mode::default()
        });
        p.error(&anyhow::anyhow!("no such run"));
        assert_eq!(err.text(), "\x1b[31merror:\x1b[0m no such run\n");
        assert_eq!(p.paint_out(Tone::Good, "*"), "*");
        assert_eq!(out.text(), "");
    }

    #[test]
    fn a_failed_write_to_stdout_is_an_error_not_a_panic() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "no space"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = Buffer::default();
        let p = Printer::with_writers(Box::new(Full), Box::new(err.clone()), Mode::default());
        assert!(p.line("data").is_err());
        assert!(p.text("data").is_err());
        assert!(p.json(&serde_json::json!({})).is_err());
        p.status("still fine");
        assert_eq!(err.text(), "still fine\n");
    }

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
