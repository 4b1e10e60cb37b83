//! The reader of an imported `dump.sql`: it lexes the dump the way psql 15 does (quoted
//! strings, `E''` strings with backslash escapes, dollar quotes, quoted identifiers, nested
//! block comments, `--` comments, psql's variables, parentheses and `BEGIN ATOMIC` bodies)
//! and passes it on line by line, refusing, with the line's number, any backslash that psql
//! would read as one of its own commands (`\!` runs a shell, `\c` reconnects, `\i` reads a
//! file, `\;` and `\:` too): only the data of a `COPY ... FROM stdin` may hold backslashes.
//! pg_dump's own `\restrict KEY` / `\unrestrict KEY` lines (PostgreSQL 15.14 and later) are
//! dropped (sent on as empty lines, so psql's line numbers stay the dump's): plantd runs psql
//! under its own `\restrict` key.
//!
//! This is the first of three walls, the one that gives a clear error: it reads the dump as
//! psql does with `standard_conforming_strings` on and a UTF-8 client encoding, which is what
//! every pg_dump writes. A dump made to be read differently (one that turns those settings off
//! from inside a function, say) meets the second wall, psql's own `\restrict`, which refuses
//! every backslash command psql sees, and the third, the sandbox it runs in.

use std::io::{BufRead, Write};

/// Why a dump is refused.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("dump.sql, line {line}: `{command}` is a psql command, which an imported dump may not run (only SQL and COPY data); a dump that only a shell escape could produce is refused")]
    Backslash { line: u64, command: String },
    #[error("dump.sql, line {line}: a COPY that reads from stdin in a form pg_dump never writes (`{statement}`); plantd cannot tell where its data ends, so the dump is refused")]
    UnclearCopy { line: u64, statement: String },
    #[error("dump.sql, line {line}: {what}, which psql may read either as a plain or as an E'' string; pg_dump never writes it, so the dump is refused")]
    Unclear { line: u64, what: &'static str },
    #[error("dump.sql, line {line}: text after a COPY ... FROM stdin; on the same line; pg_dump starts the data on the next line, so the dump is refused")]
    AfterCopy { line: u64 },
    #[error("dump.sql, line {line}: a NUL byte; a SQL dump is text")]
    Nul { line: u64 },
    #[error("reading dump.sql: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the lexer is, between two bytes.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// SQL outside any quote or comment.
    Normal,
    /// `--` to the end of the line.
    LineComment,
    /// `/* */`, nested to this depth (0: the outermost).
    Block(u32),
    /// `'...'` (also `B''`, `X''`, `N''`, `U&''`): no escapes.
    Plain,
    /// `E'...'`: a backslash escapes the next byte.
    Escaped,
    /// Just after the closing quote of a string of this kind (`true`: an `E''`): a newline,
    /// then only white space or comments, then a quote, continue it (SQL's string continuation).
    QuoteStop { escaped: bool, newline: bool },
    /// `"..."` (also `U&"..."`).
    Ident,
    /// `$tag$...$tag$`; holds the whole delimiter.
    Dollar(Vec<u8>),
    /// The data of a `COPY ... FROM stdin`, up to a line `\.`.
    Copy,
}

/// What psql tracks of the statement it is collecting, to find its end and, here, whether it
/// is a `COPY ... FROM stdin`.
#[derive(Debug, Default)]
struct Statement {
    paren_depth: u32,
    begin_depth: u32,
    identifier_count: usize,
    /// First letters of `create`, `or`, `replace`, `function`, `procedure` among the first
    /// identifiers, as psql keeps them.
    identifiers: [u8; 4],
    /// The first tokens (words lowercased, quoted identifiers as `"`, punctuation as itself).
    tokens: Vec<Token>,
    /// Whether an unquoted `stdin` appears anywhere.
    stdin: bool,
    /// Whether anything but white space and comments was seen.
    started: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted,
    Punct(u8),
    Other,
}

const TOKENS_KEPT: usize = 8;
const COPY_TOKENS_KEPT: usize = 100_000;

impl Statement {
    fn push(&mut self, token: Token) {
        self.started = true;
        // A COPY's column list can be long; of anything else only the start matters.
        let keep = if self.tokens.first() == Some(&Token::Word("copy".into())) {
            COPY_TOKENS_KEPT
        } else {
            TOKENS_KEPT
        };
        if self.tokens.len() < keep {
            self.tokens.push(token);
        }
    }

    fn identifier(&mut self, word: &[u8]) {
        let lower = word.to_ascii_lowercase();
        if self.identifier_count == 0 {
            self.identifiers = [0; 4];
        }
        if matches!(
            &lower[..],
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) && self.identifier_count < self.identifiers.len()
        {
            self.identifiers[self.identifier_count] = lower[0];
        }
        self.identifier_count += 1;
        let ids = self.identifiers;
        let in_function = ids[0] == b'c'
            && (ids[1] == b'f'
                || ids[1] == b'p'
                || (ids[1] == b'o' && ids[2] == b'r' && (ids[3] == b'f' || ids[3] == b'p')));
        if in_function && self.paren_depth == 0 {
            match &lower[..] {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        if lower == b"stdin" {
            self.stdin = true;
        }
        self.push(Token::Word(String::from_utf8_lossy(&lower).into_owned()));
    }

    /// Whether this is `COPY [BINARY] name[.name[.name]] [(columns)] FROM STDIN ...`, the one
    /// form in which the server reads data from psql's input.
    fn copy_from_stdin(&self) -> Result<bool, ()> {
        let t = &self.tokens;
        if t.first() != Some(&Token::Word("copy".into())) {
            return Ok(false);
        }
        let word = |i: usize, w: &str| t.get(i) == Some(&Token::Word(w.into()));
        let name = |i: usize| matches!(t.get(i), Some(Token::Word(_) | Token::Quoted));
        let mut i = 1;
        if word(i, "binary") && name(i + 1) && !word(i + 1, "from") {
            i += 1;
        }
        let shaped = (|| {
            if !name(i) {
                return false;
            }
            i += 1;
            for _ in 0..2 {
                if t.get(i) == Some(&Token::Punct(b'.')) && name(i + 1) {
                    i += 2;
                }
            }
            if t.get(i) == Some(&Token::Punct(b'(')) {
                i += 1;
                while name(i) || t.get(i) == Some(&Token::Punct(b',')) {
                    i += 1;
                }
                if t.get(i) != Some(&Token::Punct(b')')) {
                    return false;
                }
                i += 1;
            }
            word(i, "from") && word(i + 1, "stdin")
        })();
        match (shaped, self.stdin) {
            (true, _) => Ok(true),
            (false, false) => Ok(false),
            (false, true) => Err(()),
        }
    }
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn ident_cont(c: u8) -> bool {
    ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn variable_char(c: u8) -> bool {
    ident_start(c) || c.is_ascii_digit()
}

fn newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

/// The dump's reader: feed it lines, it says what to pass on.
#[derive(Debug)]
pub struct Reader {
    mode: Mode,
    statement: Statement,
    line: u64,
    /// A COPY ... FROM stdin ended on this line: its data starts on the next.
    copy_next: bool,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            mode: Mode::Normal,
            statement: Statement::default(),
            line: 0,
            copy_next: false,
        }
    }
}

impl Reader {
    /// Reads one line (with its `\n`, if any); returns what psql is to get for it (the line
    /// itself, or an empty line in place of pg_dump's `\restrict`).
    pub fn line<'a>(&mut self, line: &'a [u8]) -> Result<&'a [u8], DumpError> {
        self.line += 1;
        if line.contains(&0) {
            return Err(DumpError::Nul { line: self.line });
        }
        if self.mode == Mode::Copy {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            // psql ends the data at `\.` alone on a line, with `\n` or `\r\n` after it.
            if text == b"\\." || text == b"\\.\r" {
                self.mode = Mode::Normal;
            }
            return Ok(line);
        }
        if self.mode == Mode::Normal && !self.statement.started {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            for command in [&b"\\restrict "[..], b"\\unrestrict "] {
                if let Some(key) = text.strip_prefix(command) {
                    if !key.is_empty() && key.iter().all(u8::is_ascii_alphanumeric) {
                        return Ok(b"\n");
                    }
                }
            }
        }
        self.lex(line)?;
        if self.copy_next {
            self.copy_next = false;
            self.mode = Mode::Copy;
        }
        Ok(line)
    }

    fn refuse(&self, rest: &[u8]) -> DumpError {
        let text: String = String::from_utf8_lossy(rest)
            .trim_end()
            .chars()
            .filter(|c| !c.is_control())
            .take(40)
            .collect();
        DumpError::Backslash {
            line: self.line,
            command: text,
        }
    }

    fn lex(&mut self, line: &[u8]) -> Result<(), DumpError> {
        let at = |i: usize| line.get(i).copied().unwrap_or(0);
        let mut i = 0;
        while i < line.len() {
            let c = line[i];
            match &mut self.mode {
                Mode::Copy => unreachable!("COPY data is read whole lines at a time"),
                Mode::LineComment => {
                    if newline(c) {
                        self.mode = Mode::Normal;
                    }
                    i += 1;
                }
                Mode::Block(depth) => {
                    if c == b'/' && at(i + 1) == b'*' {
                        *depth += 1;
                        i += 2;
                    } else if c == b'*' && at(i + 1) == b'/' {
                        if *depth == 0 {
                            self.mode = Mode::Normal;
                        } else {
                            *depth -= 1;
                        }
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                Mode::Plain => {
                    if c == b'\'' {
                        if at(i + 1) == b'\'' {
                            i += 2;
                        } else {
                            self.mode = Mode::QuoteStop {
                                escaped: false,
                                newline: false,
                            };
                            i += 1;
                        }
                    } else {
                        i += 1;
                    }
                }
                Mode::Escaped => {
                    if c == b'\\' {
                        // The escaped byte may be the line's newline: the string goes on.
                        i += 2;
                    } else if c == b'\'' {
                        if at(i + 1) == b'\'' {
                            i += 2;
                        } else {
                            self.mode = Mode::QuoteStop {
                                escaped: true,
                                newline: false,
                            };
                            i += 1;
                        }
                    } else {
                        i += 1;
                    }
                }
                Mode::QuoteStop {
                    escaped,
                    newline: seen,
                } => {
                    let (escaped, seen) = (*escaped, *seen);
                    if c == b' ' || c == b'\t' || c == 0x0c {
                        i += 1;
                    } else if newline(c) {
                        self.mode = Mode::QuoteStop {
                            escaped,
                            newline: true,
                        };
                        i += 1;
                    } else if c == b'-' && at(i + 1) == b'-' {
                        // A comment to the end of the line, which is white space here.
                        let end = line[i..]
                            .iter()
                            .position(|&b| newline(b))
                            .map_or(line.len(), |p| i + p);
                        i = end;
                    } else if c == b'\'' && seen {
                        self.mode = if escaped { Mode::Escaped } else { Mode::Plain };
                        i += 1;
                    } else {
                        // Not continued: read it again as SQL.
                        self.mode = Mode::Normal;
                    }
                }
                Mode::Ident => {
                    if c == b'"' {
                        if at(i + 1) == b'"' {
                            i += 2;
                        } else {
                            self.mode = Mode::Normal;
                            i += 1;
                        }
                    } else {
                        i += 1;
                    }
                }
                Mode::Dollar(tag) => {
                    if c == b'$' && line[i..].starts_with(tag) {
                        i += tag.len();
                        self.mode = Mode::Normal;
                    } else {
                        i += 1;
                    }
                }
                Mode::Normal => i = self.normal(line, i)?,
            }
        }
        Ok(())
    }

    /// One token of SQL outside quotes and comments, starting at `i`; returns where the next
    /// one starts.
    fn normal(&mut self, line: &[u8], i: usize) -> Result<usize, DumpError> {
        let at = |i: usize| line.get(i).copied().unwrap_or(0);
        let c = line[i];
        let st = &mut self.statement;
        Ok(match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => i + 1,
            b'-' if at(i + 1) == b'-' => {
                self.mode = Mode::LineComment;
                i + 2
            }
            b'/' if at(i + 1) == b'*' => {
                self.mode = Mode::Block(0);
                i + 2
            }
            b'\\' => return Err(self.refuse(&line[i..])),
            b'\'' => {
                st.push(Token::Other);
                self.mode = Mode::Plain;
                i + 1
            }
            b'"' => {
                st.push(Token::Quoted);
                self.mode = Mode::Ident;
                i + 1
            }
            b'$' => {
                let tag_end = line[i + 1..]
                    .iter()
                    .position(|&b| !ident_start(b) && !b.is_ascii_digit())
                    .map_or(line.len(), |p| i + 1 + p);
                let tag_ok = tag_end == i + 1 || ident_start(line[i + 1]);
                if tag_ok && at(tag_end) == b'$' {
                    st.push(Token::Other);
                    self.mode = Mode::Dollar(line[i..=tag_end].to_vec());
                    tag_end + 1
                } else if at(i + 1).is_ascii_digit() {
                    // $1: a parameter.
                    st.push(Token::Other);
                    i + 1
                        + line[i + 1..]
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .count()
                } else {
                    st.push(Token::Other);
                    i + 1
                }
            }
            b':' => {
                st.push(Token::Other);
                let n = at(i + 1);
                if n == b':' || n == b'=' {
                    i + 2
                } else if variable_char(n) {
                    // :name, psql's variable (or, when it has none of that name, the text).
                    i + 1
                        + line[i + 1..]
                            .iter()
                            .take_while(|&&b| variable_char(b))
                            .count()
                } else if n == b'\'' || n == b'"' {
                    // :'name' and :"name" are read whole; anything else starts a quote.
                    let run = line[i + 2..]
                        .iter()
                        .take_while(|&&b| variable_char(b))
                        .count();
                    if run > 0 && at(i + 2 + run) == n {
                        i + 3 + run
                    } else {
                        i + 1
                    }
                } else if n == b'{' {
                    // :{?name}
                    let run = line[i + 2..]
                        .iter()
                        .skip(1)
                        .take_while(|&&b| variable_char(b))
                        .count();
                    if at(i + 2) == b'?' && run > 0 && at(i + 3 + run) == b'}' {
                        i + 4 + run
                    } else {
                        i + 1
                    }
                } else {
                    i + 1
                }
            }
            b'(' => {
                st.paren_depth += 1;
                st.push(Token::Punct(b'('));
                i + 1
            }
            b')' => {
                st.paren_depth = st.paren_depth.saturating_sub(1);
                st.push(Token::Punct(b')'));
                i + 1
            }
            b';' => {
                if st.paren_depth == 0 && st.begin_depth == 0 {
                    self.end_statement(line, i)?;
                } else {
                    st.push(Token::Punct(b';'));
                }
                i + 1
            }
            b'0'..=b'9' => {
                // A number, and psql 15's "junk" rule: a number glued to a letter is one token
                // with that letter.
                let mut j = i;
                while at(j).is_ascii_digit() || at(j) == b'.' && at(j + 1) != b'.' {
                    j += 1;
                }
                if matches!(at(j), b'e' | b'E') {
                    let sign = usize::from(matches!(at(j + 1), b'+' | b'-'));
                    if at(j + 1 + sign).is_ascii_digit() {
                        j += 1 + sign;
                        while at(j).is_ascii_digit() {
                            j += 1;
                        }
                    }
                }
                if matches!(at(j), b'e' | b'E') && at(j + 1) == b'\'' {
                    return Err(DumpError::Unclear {
                        line: self.line,
                        what: "a number glued to E'...'",
                    });
                }
                if ident_start(at(j)) {
                    j += 1;
                }
                st.push(Token::Other);
                j
            }
            c if ident_start(c) => {
                let next = at(i + 1);
                let lower = c.to_ascii_lowercase();
                if next == b'\'' && matches!(lower, b'e' | b'b' | b'x' | b'n') {
                    st.push(Token::Other);
                    self.mode = if lower == b'e' {
                        Mode::Escaped
                    } else {
                        Mode::Plain
                    };
                    i + 2
                } else if lower == b'u' && next == b'&' {
                    st.push(Token::Other);
                    match at(i + 2) {
                        b'\'' => {
                            self.mode = Mode::Plain;
                            i + 3
                        }
                        b'"' => {
                            self.mode = Mode::Ident;
                            i + 3
                        }
                        _ => i + 1,
                    }
                } else {
                    let len = line[i..].iter().take_while(|&&b| ident_cont(b)).count();
                    st.identifier(&line[i..i + len]);
                    i + len
                }
            }
            b',' | b'.' => {
                st.push(Token::Punct(c));
                i + 1
            }
            _ => {
                st.push(Token::Other);
                i + 1
            }
        })
    }

    /// The statement ends at the `;` at `i`: psql sends it now.
    fn end_statement(&mut self, line: &[u8], i: usize) -> Result<(), DumpError> {
        let copy = self.statement.copy_from_stdin();
        let statement = std::mem::take(&mut self.statement);
        match copy {
            Ok(false) => Ok(()),
            Ok(true) => {
                if !line[i + 1..]
                    .iter()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                {
                    return Err(DumpError::AfterCopy { line: self.line });
                }
                self.copy_next = true;
                Ok(())
            }
            Err(()) => Err(DumpError::UnclearCopy {
                line: self.line,
                statement: statement
                    .tokens
                    .iter()
                    .take(8)
                    .map(|t| match t {
                        Token::Word(w) => w.clone(),
                        Token::Quoted => "\"…\"".into(),
                        Token::Punct(p) => (*p as char).to_string(),
                        Token::Other => "…".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            }),
        }
    }
}

/// Copies a plain SQL dump from `input` to `out`, refusing what [`Reader`] refuses.
pub fn copy(mut input: impl BufRead, out: &mut dyn Write) -> Result<(), DumpError> {
    let mut reader = Reader::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        out.write_all(reader.line(&line)?)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(sql: &str) -> Result<String, DumpError> {
        let mut out = Vec::new();
        copy(sql.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn refused_at(sql: &str) -> u64 {
        match run(sql) {
            Err(DumpError::Backslash { line, .. })
            | Err(DumpError::UnclearCopy { line, .. })
            | Err(DumpError::Unclear { line, .. })
            | Err(DumpError::AfterCopy { line }) => line,
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_pg_dump_passes_whole_but_its_restrict_lines() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\\restrict abc123\nSET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\nCREATE FUNCTION public.f() RETURNS text LANGUAGE plpgsql AS $_$\nBEGIN\n  RETURN E'a\\\\b' || $x$ \\! $x$;\nEND $_$;\nCOMMENT ON TABLE public.t IS 'C:\\path';\nCOPY public.t (a, \"b c\") FROM stdin;\n\\N\tx\\\\y\n\\! not a command here\n\\.\nSELECT 1;\n\\unrestrict abc123\n";
        let out = run(dump).unwrap();
        assert_eq!(
            out,
            dump.replace("\\restrict abc123\n", "\n")
                .replace("\\unrestrict abc123\n", "\n")
        );
    }

    #[test]
    fn backslash_commands_are_refused_naming_the_line() {
        for (bad, line) in [
            ("SELECT 1;\n\\! rm -rf /var/lib/postgresql/data\n", 2),
            ("SELECT 1; \\! id > pwned\n", 1),
            ("SELECT 1;\n   \\! id\n", 2),
            ("\\connect odoo\nDROP TABLE res_partner;\n", 1),
            ("SELECT 1; \\c odoo odoo\n", 1),
            ("COPY t FROM stdin;\n1\n\\.\n\\copy t TO '/tmp/x'\n", 4),
            ("\\i /etc/passwd\r\n", 1),
            // A line inside a string that looks like a COPY is no COPY.
            ("SELECT '\nCOPY t FROM stdin;\n';\n\\! id\n", 4),
            ("SELECT $$\nCOPY t FROM stdin;\n$$;\n\\! id\n", 4),
            ("/* COPY t FROM stdin;\n*/ \\! id\n", 2),
            ("-- comment\r\\! id\n", 1),
            // E'' ends at the first unescaped quote; a plain one does not take \ as escape.
            ("SELECT E'\\'' ; \\! id\n", 1),
            ("SELECT 'a\\' ; \\! id\n", 1),
            // :E is psql's variable E, not the start of an E'' string.
            ("SELECT :E'\\' \\! id';\n", 1),
            ("SELECT 1 \\; SELECT 2;\n", 1),
            // Inside BEGIN ATOMIC a semicolon does not end the statement: no COPY there.
            ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC\nCOPY t FROM stdin;\n\\! id\nEND;\n", 3),
            // The query form of COPY only writes; a COPY reading stdin in another form is refused.
            ("COPY (SELECT 1 FROM stdin) TO stdout;\n\\! id\n", 1),
            ("COPY t FROM stdin; SELECT 1;\n1\n\\.\n", 1),
        ] {
            assert_eq!(refused_at(bad), line, "{bad:?}");
        }
        let e = run("SELECT 1; \\! id > pwned\n").unwrap_err().to_string();
        assert!(
            e.contains("dump.sql, line 1")
                && e.contains("`\\! id > pwned`")
                && e.contains("shell escape"),
            "{e}"
        );
    }

    #[test]
    fn copy_data_ends_only_at_a_line_of_backslash_dot() {
        let ok = "COPY t FROM stdin;\n\\.x\n \\.\n\\.\r\nSELECT 1;\n";
        assert_eq!(run(ok).unwrap(), ok);
        assert_eq!(
            refused_at("copy \"T\".x FROM STDIN WITH (FORMAT csv);\n\\.\n\\x\n"),
            3
        );
        assert!(matches!(
            run("SELECT 1;\0\n"),
            Err(DumpError::Nul { line: 1 })
        ));
    }

    /// Pieces of SQL, each with a backslash where psql does not read it as a command.
    fn harmless() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("SELECT 1;\n".to_string()),
            Just("SELECT 'a\\b' AS x;\n".to_string()),
            Just("SELECT E'it\\'s \\\\ ok';\n".to_string()),
            Just("SELECT $q$ \\! $ $q$;\n".to_string()),
            Just("SELECT $$\n\\! id\n$$;\n".to_string()),
            Just("/* \\! /* nested */ \\c */ SELECT 2;\n".to_string()),
            Just("-- \\! id\n".to_string()),
            Just("SELECT \"we\\ird\" FROM x;\n".to_string()),
            Just("SELECT 'multi\nline \\! x\n';\n".to_string()),
            Just("COPY public.t (a) FROM stdin;\n\\N\n\\! data\n\\.\n".to_string()),
            Just("SELECT (1;\n2);\n".to_string()),
            "[a-z ]{0,12}".prop_map(|s| format!("SELECT '{s}';\n")),
        ]
    }

    /// A psql command, the way a hostile dump would hide it.
    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\\! touch /tmp/pwned\n"),
            Just("SELECT 1; \\! id\n"),
            Just("   \\c odoo odoo\n"),
            Just("SELECT ''; \\i /etc/passwd\n"),
            Just("SELECT E'\\''; \\o /tmp/x\n"),
            Just("SELECT $a$ $b$ $a$ \\! x\n"),
        ]
        .prop_map(str::to_string)
    }

    proptest! {
        #[test]
        fn dumps_of_harmless_pieces_pass_unchanged(pieces in prop::collection::vec(harmless(), 0..12)) {
            let dump: String = pieces.concat();
            prop_assert_eq!(run(&dump).unwrap(), dump);
        }

        #[test]
        fn a_hidden_command_is_refused_at_its_line(
            before in prop::collection::vec(harmless(), 0..8),
            bad in hostile(),
            after in prop::collection::vec(harmless(), 0..4),
        ) {
            let head: String = before.concat();
            let dump = format!("{head}{bad}{}", after.concat());
            let line = head.matches('\n').count() as u64 + 1;
            prop_assert_eq!(refused_at(&dump), line);
        }

        #[test]
        fn any_bytes_give_an_answer_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut out = Vec::new();
            let _ = copy(&bytes[..], &mut out);
        }
    }
}
