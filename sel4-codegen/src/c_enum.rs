//! A small reader of the enumerators in a C header: `enum [tag] { A, B = 3, C = B, ... }`,
//! with the value of each one as the compiler would number it.
//!
//! It does not preprocess. Comments are skipped; preprocessor lines are not expanded, but
//! every enumerator records the `#if`/`#ifdef`/`#ifndef` blocks around it, so that a caller
//! can refuse a value whose existence depends on configuration. What it cannot evaluate (a
//! macro used as an enumerator, such as libsel4's `SEL4_FORCE_LONG_ENUM(...)`, an
//! initialiser that is not a number or an earlier enumerator, a conditional inside the enum's
//! braces) makes the values that depend on it unknown, with the reason, instead of guessing.
//!
//! Owns: tokenising and numbering. Never touches: which names matter (the callers decide,
//! e.g. [`crate::fault`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a header, at a line (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// The header.
    pub file: PathBuf,
    /// The line the problem is at (or, for a missing name, where it was expected); 0 when
    /// the problem is the whole file (it cannot be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.message),
            line => write!(f, "{}:{line}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for HeaderError {}

/// A preprocessor block an enumerator sits in, innermost last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The directive as written (`#ifdef CONFIG_KERNEL_MCS`; `#else` or `#elif ...` once the
    /// block has reached that branch).
    pub directive: String,
    /// Its line.
    pub line: usize,
}

/// One enumerator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enumerator {
    /// Its name.
    pub name: String,
    /// Its value, or why it cannot be known without a preprocessor.
    pub value: Result<i128, String>,
    /// Its line.
    pub line: usize,
    /// The enum's tag (`seL4_Fault_tag` in `enum seL4_Fault_tag { ... }`) or, for
    /// `typedef enum { ... } name;`, the typedef name.
    pub enum_name: Option<String>,
    /// The line of the enum's `enum` keyword.
    pub enum_line: usize,
    /// The preprocessor blocks around it.
    pub conditions: Vec<Condition>,
}

/// The enumerators of one header.
#[derive(Clone, Debug)]
pub struct Header {
    file: PathBuf,
    lines: usize,
    enumerators: Vec<Enumerator>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Number(String),
    Punct(char),
}

/// A result whose error is a line and a message.
type AtLine<T> = Result<T, (usize, String)>;

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    /// Index into the condition snapshots.
    cond: usize,
}

impl Header {
    /// Parses `text`, read from `file` (used in errors only).
    pub fn parse(file: impl Into<PathBuf>, text: &str) -> Result<Header, HeaderError> {
        let file = file.into();
        let err = |line: usize, message: String| HeaderError { file: file.clone(), line, message };
        let code = strip_comments(text).map_err(|(line, m)| err(line, m))?;
        let (tokens, snapshots) = tokenise(&code).map_err(|(line, m)| err(line, m))?;
        let enumerators = enumerators(&tokens, &snapshots).map_err(|(line, m)| err(line, m))?;
        Ok(Header { file, lines: text.lines().count().max(1), enumerators })
    }

    /// Reads and parses the header at `path`.
    pub fn load(path: &Path) -> Result<Header, HeaderError> {
        let text = std::fs::read_to_string(path).map_err(|e| HeaderError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Header::parse(path, &text)
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Every enumerator, in the order of the file.
    pub fn enumerators(&self) -> &[Enumerator] {
        &self.enumerators
    }

    /// An error about this header at `line`.
    pub fn error(&self, line: usize, message: impl Into<String>) -> HeaderError {
        HeaderError { file: self.file.clone(), line, message: message.into() }
    }

    /// The last line, where an error about something absent from the whole file points.
    pub fn last_line(&self) -> usize {
        self.lines
    }

    /// The enumerator `name`, which must be defined once, outside any preprocessor block
    /// except those in `allowed` (directives as written, e.g. `#ifndef __ASSEMBLER__`), with a
    /// known value. `missing_line` is where the error for an absent name points.
    pub fn unconditional(&self, name: &str, allowed: &[&str], missing_line: usize) -> Result<&Enumerator, HeaderError> {
        let mut found = self.enumerators.iter().filter(|e| e.name == name);
        let e = found.next().ok_or_else(|| self.error(missing_line, format!("no enumerator {name}")))?;
        if let Some(again) = found.next() {
            return Err(self.error(again.line, format!("{name} is defined twice (also at line {})", e.line)));
        }
        if let Some(c) = e.conditions.iter().find(|c| !allowed.contains(&c.directive.as_str())) {
            return Err(self.error(
                e.line,
                format!(
                    "{name} is inside `{}` (line {}): whether it exists depends on the configuration, which this reader does not evaluate",
                    c.directive, c.line
                ),
            ));
        }
        match &e.value {
            Ok(_) => Ok(e),
            Err(why) => Err(self.error(e.line, format!("the value of {name} is unknown: {why}"))),
        }
    }
}

/// `text` with every comment replaced by spaces (newlines kept, so lines still count).
fn strip_comments(text: &str) -> AtLine<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'/', Some(b'*')) => {
                let start = line;
                i += 2;
                out.extend_from_slice(b"  ");
                loop {
                    match (b.get(i), b.get(i + 1)) {
                        (None, _) => return Err((start, "unterminated /* comment".into())),
                        (Some(b'*'), Some(b'/')) => {
                            out.extend_from_slice(b"  ");
                            i += 2;
                            break;
                        }
                        (Some(b'\n'), _) => {
                            out.push(b'\n');
                            line += 1;
                            i += 1;
                        }
                        (Some(_), _) => {
                            out.push(b' ');
                            i += 1;
                        }
                    }
                }
            }
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            (q @ (b'"' | b'\''), _) => {
                // A literal: copied as is, so a `/*` inside it is not a comment.
                out.push(q);
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] != b'\n' {
                        out.push(b[i]);
                        i += 1;
                    }
                    out.push(b[i]);
                    i += 1;
                }
                if i < b.len() && b[i] == q {
                    out.push(q);
                    i += 1;
                }
            }
            (c, _) => {
                if c == b'\n' {
                    line += 1;
                }
                out.push(c);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced, and only by ASCII: the text is still UTF-8.
    String::from_utf8(out).map_err(|e| (1, format!("not UTF-8: {e}")))
}

/// The tokens outside preprocessor lines, and the condition stacks they were read under.
fn tokenise(code: &str) -> AtLine<(Vec<Token>, Vec<Vec<Condition>>)> {
    let mut snapshots: Vec<Vec<Condition>> = vec![Vec::new()];
    let mut stack: Vec<Condition> = Vec::new();
    let mut tokens = Vec::new();
    let mut lines = code.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, l)) = lines.next() {
        let trimmed = l.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            // A directive, with its continuation lines.
            let mut text = directive.trim().to_string();
            while text.ends_with('\\') {
                text.pop();
                match lines.next() {
                    Some((_, more)) => text.push_str(more.trim()),
                    None => break,
                }
            }
            let word: String = text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let rest = text[word.len()..].trim();
            match word.as_str() {
                "if" | "ifdef" | "ifndef" => stack.push(Condition { directive: format!("#{word} {rest}"), line: n }),
                "elif" | "else" => {
                    let top = stack.last_mut().ok_or((n, format!("#{word} without #if")))?;
                    top.directive = if rest.is_empty() { format!("#{word}") } else { format!("#{word} {rest}") };
                    top.line = n;
                }
                "endif" => {
                    stack.pop().ok_or((n, "#endif without #if".to_string()))?;
                }
                _ => continue,
            }
            snapshots.push(stack.clone());
            continue;
        }
        let cond = snapshots.len() - 1;
        let mut chars = l.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            let tok = if c.is_ascii_alphabetic() || c == '_' || c.is_ascii_digit() {
                let mut end = start + c.len_utf8();
                while let Some(&(i, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        end = i + 1;
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = l[start..end].to_string();
                if c.is_ascii_digit() { Tok::Number(word) } else { Tok::Ident(word) }
            } else if c.is_whitespace() {
                continue;
            } else if c == '"' || c == '\'' {
                // A string or character literal: nothing in it is a declaration.
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                continue;
            } else {
                Tok::Punct(c)
            };
            tokens.push(Token { tok, line: n, cond });
        }
    }
    if let Some(open) = stack.first() {
        return Err((open.line, format!("`{}` is never closed by #endif", open.directive)));
    }
    Ok((tokens, snapshots))
}

/// The value of a C integer literal (decimal, hex, octal; `u`/`l` suffixes).
fn literal(s: &str) -> Option<i128> {
    let digits = s.trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i128::from_str_radix(hex, 16).ok()
    } else if digits.len() > 1 && digits.starts_with('0') {
        i128::from_str_radix(&digits[1..], 8).ok()
    } else {
        digits.parse().ok()
    }
}

/// The value of an initialiser: a sum or difference of literals and earlier enumerators,
/// optionally negated or in parentheses.
fn evaluate(tokens: &[Token], known: &HashMap<String, Result<i128, String>>) -> Result<i128, String> {
    let text = || {
        tokens
            .iter()
            .map(|t| match &t.tok {
                Tok::Ident(s) | Tok::Number(s) => s.clone(),
                Tok::Punct(c) => c.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cannot = || format!("cannot evaluate `{}`", text());
    let mut total: i128 = 0;
    let mut sign: i128 = 1;
    let mut expect_term = true;
    let mut depth = 0usize;
    for t in tokens {
        match (&t.tok, expect_term) {
            (Tok::Punct('('), true) => depth += 1,
            (Tok::Punct(')'), false) if depth > 0 => depth -= 1,
            (Tok::Punct('-'), true) => sign = -sign,
            (Tok::Punct('+'), true) => {}
            (Tok::Number(n), true) => {
                total = total.checked_add(sign * literal(n).ok_or_else(cannot)?).ok_or_else(cannot)?;
                expect_term = false;
            }
            (Tok::Ident(name), true) => {
                let v = match known.get(name) {
                    Some(Ok(v)) => *v,
                    Some(Err(why)) => return Err(format!("it refers to {name}, whose value is unknown ({why})")),
                    None => return Err(format!("{} (no earlier enumerator {name})", cannot())),
                };
                total = total.checked_add(sign * v).ok_or_else(cannot)?;
                expect_term = false;
            }
            (Tok::Punct('+'), false) if depth == 0 => {
                sign = 1;
                expect_term = true;
            }
            (Tok::Punct('-'), false) if depth == 0 => {
                sign = -1;
                expect_term = true;
            }
            _ => return Err(cannot()),
        }
    }
    if expect_term || depth != 0 {
        return Err(cannot());
    }
    Ok(total)
}

/// Every enumerator of every `enum { ... }` in the token stream.
fn enumerators(tokens: &[Token], snapshots: &[Vec<Condition>]) -> AtLine<Vec<Enumerator>> {
    let mut out: Vec<Enumerator> = Vec::new();
    let mut known: HashMap<String, Result<i128, String>> = HashMap::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].tok != Tok::Ident("enum".into()) {
            i += 1;
            continue;
        }
        let enum_line = tokens[i].line;
        let typedef = i > 0 && tokens[i - 1].tok == Tok::Ident("typedef".into());
        let mut j = i + 1;
        let tag = match tokens.get(j).map(|t| &t.tok) {
            Some(Tok::Ident(t)) => {
                j += 1;
                Some(t.clone())
            }
            _ => None,
        };
        if tokens.get(j).map(|t| &t.tok) != Some(&Tok::Punct('{')) {
            // A use of an enum type, not a definition.
            i = j;
            continue;
        }
        let open = j;
        let close = (open + 1..tokens.len())
            .find(|&k| tokens[k].tok == Tok::Punct('}'))
            .ok_or((enum_line, "the enum's `{` is never closed".to_string()))?;
        let body = &tokens[open + 1..close];
        let conditional_body = body.iter().find(|t| t.cond != tokens[open].cond).map(|t| t.line);
        let enum_name = tag.or_else(|| match tokens.get(close + 1).map(|t| &t.tok) {
            Some(Tok::Ident(name)) if typedef => Some(name.clone()),
            _ => None,
        });
        // Items are separated by commas outside parentheses.
        let mut items: Vec<&[Token]> = Vec::new();
        let (mut start, mut depth) = (0, 0i32);
        for (k, t) in body.iter().enumerate() {
            match t.tok {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => depth -= 1,
                Tok::Punct(',') if depth == 0 => {
                    items.push(&body[start..k]);
                    start = k + 1;
                }
                _ => {}
            }
        }
        items.push(&body[start..]);
        let mut next: Result<i128, String> = Ok(0);
        for item in items.into_iter().filter(|it| !it.is_empty()) {
            let Tok::Ident(name) = &item[0].tok else {
                return Err((item[0].line, "an enumerator must start with a name".into()));
            };
            let line = item[0].line;
            let value = match item.get(1).map(|t| &t.tok) {
                None => next.clone(),
                Some(Tok::Punct('=')) => evaluate(&item[2..], &known),
                Some(Tok::Punct('(')) => {
                    // A macro that expands to enumerators: what follows is numbered from
                    // something this reader cannot see.
                    next = Err(format!("it follows the macro {name}(...) at line {line}, which is not expanded"));
                    continue;
                }
                Some(_) => return Err((line, format!("cannot read the enumerator {name}"))),
            };
            let value = match (conditional_body, value) {
                (Some(at), _) => Err(format!(
                    "its enum (line {enum_line}) has a preprocessor conditional inside its braces (line {at})"
                )),
                (None, v) => v,
            };
            next = value.clone().and_then(|v| v.checked_add(1).ok_or_else(|| format!("{name} + 1 overflows")));
            known.entry(name.clone()).or_insert_with(|| value.clone());
            out.push(Enumerator {
                name: name.clone(),
                value,
                line,
                enum_name: enum_name.clone(),
                enum_line,
                conditions: snapshots[item[0].cond].clone(),
            });
        }
        i = close + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Header {
        Header::parse("t.h", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn value(h: &Header, name: &str) -> Result<i128, String> {
        h.unconditional(name, &["#ifndef __ASSEMBLER__"], 1)
            .map(|e| e.value.clone().unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn implicit_explicit_and_referenced_values() {
        let h = parse(
            "typedef enum {\n  A,\n  B, /* two */\n  C = 7,\n  D,\n  E = C, // alias\n  F,\n  G = 0x10u,\n  H = -(2),\n  I = D + 1,\n} abc_t;\n",
        );
        let got: Vec<(&str, i128, usize)> =
            h.enumerators().iter().map(|e| (e.name.as_str(), e.value.clone().unwrap(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("A", 0, 2),
                ("B", 1, 3),
                ("C", 7, 4),
                ("D", 8, 5),
                ("E", 7, 6),
                ("F", 8, 7),
                ("G", 16, 8),
                ("H", -2, 9),
                ("I", 9, 10)
            ]
        );
        assert!(h.enumerators().iter().all(|e| e.enum_name.as_deref() == Some("abc_t") && e.enum_line == 1));
    }

    #[test]
    fn tagged_enums_comments_and_uses() {
        let h = parse(
            "/* enum fake { X }; */\nenum seL4_Fault_tag {\n    seL4_Fault_NullFault = 0,\n    seL4_Fault_VMFault = 5\n};\ntypedef enum seL4_Fault_tag seL4_Fault_tag_t;\nconst char *s = \"enum { Y }\";\n",
        );
        let names: Vec<&str> = h.enumerators().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["seL4_Fault_NullFault", "seL4_Fault_VMFault"]);
        assert_eq!(h.enumerators()[1].enum_name.as_deref(), Some("seL4_Fault_tag"));
        assert_eq!(value(&h, "seL4_Fault_VMFault"), Ok(5));
    }

    #[test]
    fn a_macro_enumerator_makes_what_follows_unknown() {
        let h = parse("typedef enum {\n  A,\n  B,\n  SEL4_FORCE_LONG_ENUM(m),\n  C,\n  D = 3,\n  E,\n} m;\n");
        assert_eq!(value(&h, "B"), Ok(1));
        let e = value(&h, "C").unwrap_err();
        assert!(e.starts_with("t.h:5: the value of C is unknown: it follows the macro SEL4_FORCE_LONG_ENUM"), "{e}");
        assert_eq!(value(&h, "E"), Ok(4));
    }

    #[test]
    fn conditions_are_recorded_and_refused_unless_allowed() {
        let text = "#pragma once\n#ifndef __ASSEMBLER__\ntypedef enum { A, B } ab;\n#ifdef CONFIG_KERNEL_MCS\ntypedef enum { T_X, T_Y } t;\n#else\ntypedef enum { N_X } n;\n#endif\n#endif\n";
        let h = parse(text);
        assert_eq!(value(&h, "B"), Ok(1));
        let e = value(&h, "T_Y").unwrap_err();
        assert_eq!(
            e,
            "t.h:5: T_Y is inside `#ifdef CONFIG_KERNEL_MCS` (line 4): whether it exists depends on the configuration, which this reader does not evaluate"
        );
        assert!(value(&h, "N_X").unwrap_err().contains("inside `#else` (line 6)"));
    }

    #[test]
    fn a_conditional_inside_the_braces_makes_the_enum_unknown() {
        let h = parse("enum e {\n  A,\n#ifdef X\n  B,\n#endif\n  C,\n};\n");
        let e = value(&h, "A").unwrap_err();
        assert!(e.contains("has a preprocessor conditional inside its braces (line 4)"), "{e}");
    }

    #[test]
    fn a_missing_or_doubled_name_is_named_with_file_and_line() {
        let h = parse("enum a { X };\n\nenum b { X = 2 };\n");
        assert_eq!(h.unconditional("X", &[], 9).unwrap_err().to_string(), "t.h:3: X is defined twice (also at line 1)");
        assert_eq!(h.unconditional("Y", &[], 9).unwrap_err().to_string(), "t.h:9: no enumerator Y");
    }

    #[test]
    fn an_unknown_initialiser_is_refused() {
        let h = parse("enum { A = sizeof(long), B, C = A * 2, D = nope };\n");
        assert!(value(&h, "A").unwrap_err().contains("cannot evaluate `sizeof ( long )`"));
        assert!(value(&h, "B").unwrap_err().contains("cannot evaluate"));
        assert!(value(&h, "C").unwrap_err().contains("it refers to A, whose value is unknown"));
        assert!(value(&h, "D").unwrap_err().contains("no earlier enumerator nope"));
    }

    #[test]
    fn malformed_headers_name_the_line() {
        let e = Header::parse("t.h", "int a;\n/* open\n\n").unwrap_err();
        assert_eq!(e.to_string(), "t.h:2: unterminated /* comment");
        let e = Header::parse("t.h", "\n#ifdef A\nenum { X };\n").unwrap_err();
        assert_eq!(e.to_string(), "t.h:2: `#ifdef A` is never closed by #endif");
        let e = Header::parse("t.h", "#endif\n").unwrap_err();
        assert_eq!(e.to_string(), "t.h:1: #endif without #if");
        let e = Header::parse("t.h", "\n\nenum { X, \n").unwrap_err();
        assert_eq!(e.to_string(), "t.h:3: the enum's `{` is never closed");
    }

    #[test]
    fn literals() {
        assert_eq!(literal("0"), Some(0));
        assert_eq!(literal("010"), Some(8));
        assert_eq!(literal("0x1fULL"), Some(31));
        assert_eq!(literal("12u"), Some(12));
        assert_eq!(literal("0x"), None);
        assert_eq!(literal("9z"), None);
    }
}
