//! A reader of the tags of one `tagged_union` in the kernel's bitfield specifications
//! (`.bf`), for a given configuration: what the kernel's bitfield generator emits as
//! `enum NAME_tag { NAME_Tag = value, ... }` in a generated header such as `types_gen.h`.
//!
//! The kernel's build runs a `.bf` file through the C preprocessor with its configuration
//! before the generator reads it. This reader does the part of that the fault labels need,
//! and refuses the rest instead of guessing: `#ifdef`/`#ifndef CONFIG_X` (true when `X` is a
//! true or string option of the configuration: `gen_config.h` defines those), `#else`,
//! `#endif`, `#include <sel4/config.h>` (the configuration itself, which the caller already
//! has) and `#include` of another `.bf` file (found through the caller's include folders).
//! Any `#if`/`#elif` expression, other directive or include in the text that is read is an
//! error with its file and line. `--` starts a comment, as in the generator.
//!
//! Owns: the `.bf` syntax of a tagged union's tags and the preprocessing above. Never
//! touches: which union matters (see [`crate::fault`]).

use std::path::PathBuf;

use crate::c_enum::HeaderError;
use crate::config::{KernelConfig, Value};

/// How deep `#include`s may nest.
const MAX_INCLUDE_DEPTH: usize = 8;

/// A file that [`read_tagged_union`] asks for by its include name (`sel4/arch/shared_types.bf`):
/// how it is named in messages and its text; `None` when no include folder has it.
pub type Loaded = Option<(PathBuf, String)>;

/// One tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// Its name (`VMFault`).
    pub name: String,
    /// Its value.
    pub value: u64,
    /// The file as included (`sel4/arch/shared_types.bf`).
    pub file: String,
    /// The file as named in messages.
    pub path: PathBuf,
    /// Its line.
    pub line: usize,
}

/// One tagged union, as the configuration sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedUnion {
    /// The file it is in, as included.
    pub file: String,
    /// The file as named in messages.
    pub path: PathBuf,
    /// The line of `tagged_union`.
    pub line: usize,
    /// Its tags, in the file's order.
    pub tags: Vec<Tag>,
}

/// A line that the preprocessing kept.
#[derive(Clone, Debug)]
struct Line {
    /// Index into the files read.
    file: usize,
    line: usize,
    text: String,
}

/// A conditional block being read.
struct Block {
    directive: String,
    line: usize,
    /// Whether the enclosing text is read.
    outer: bool,
    /// Whether the condition held (its first branch is taken).
    holds: bool,
    /// Whether `#else` was seen.
    in_else: bool,
}

impl Block {
    fn active(&self) -> bool {
        self.outer && (self.holds != self.in_else)
    }
}

struct Reader<'a> {
    config: &'a KernelConfig,
    load: &'a mut dyn FnMut(&str) -> Result<Loaded, HeaderError>,
    /// (include name, path) of every file read.
    files: Vec<(String, PathBuf)>,
    lines: Vec<Line>,
}

/// Whether `#ifdef name` holds for `config`.
fn defined(config: &KernelConfig, name: &str) -> Result<bool, String> {
    let option = name
        .strip_prefix("CONFIG_")
        .ok_or_else(|| format!("whether {name} is defined is not in the configuration (only CONFIG_ names are)"))?;
    Ok(matches!(config.get(option), Some(Value::Bool(true) | Value::Str(_))))
}

impl Reader<'_> {
    fn read(&mut self, name: &str, path: PathBuf, text: &str, depth: usize) -> Result<(), HeaderError> {
        let file = self.files.len();
        self.files.push((name.to_string(), path.clone()));
        let err = |line: usize, message: String| HeaderError { file: path.clone(), line, message };
        let mut stack: Vec<Block> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let active = stack.last().is_none_or(Block::active);
            let Some(directive) = raw.trim_start().strip_prefix('#') else {
                if active {
                    let code = raw.find("--").map_or(raw, |at| &raw[..at]);
                    self.lines.push(Line { file, line: n, text: code.to_string() });
                }
                continue;
            };
            let directive = directive.trim();
            let word: String = directive.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let rest = directive[word.len()..].trim();
            match word.as_str() {
                "ifdef" | "ifndef" => {
                    let holds = if active {
                        let is = defined(self.config, rest).map_err(|why| err(n, format!("#{word} {rest}: {why}")))?;
                        is == (word == "ifdef")
                    } else {
                        false
                    };
                    stack.push(Block {
                        directive: format!("#{word} {rest}"),
                        line: n,
                        outer: active,
                        holds,
                        in_else: false,
                    });
                }
                "if" | "elif" if active || (word == "elif" && stack.last().is_some_and(|b| b.outer)) => {
                    return Err(err(
                        n,
                        format!(
                            "`#{word} {rest}` is not evaluated here: only #ifdef and #ifndef of CONFIG_ options are"
                        ),
                    ));
                }
                "if" => stack.push(Block {
                    directive: format!("#if {rest}"),
                    line: n,
                    outer: false,
                    holds: false,
                    in_else: false,
                }),
                "elif" => {}
                "else" => {
                    let b = stack.last_mut().ok_or_else(|| err(n, "#else without #ifdef".into()))?;
                    if b.in_else {
                        return Err(err(n, format!("a second #else for `{}` (line {})", b.directive, b.line)));
                    }
                    b.in_else = true;
                }
                "endif" => {
                    stack.pop().ok_or_else(|| err(n, "#endif without #ifdef".into()))?;
                }
                _ if !active => {}
                "include" => self.include(rest, depth).map_err(|why| match why {
                    Included::Here(message) => err(n, message),
                    Included::Inside(e) => e,
                })?,
                _ => return Err(err(n, format!("the directive `#{directive}` is not read here"))),
            }
        }
        if let Some(open) = stack.first() {
            return Err(err(open.line, format!("`{}` is never closed by #endif", open.directive)));
        }
        Ok(())
    }

    fn include(&mut self, rest: &str, depth: usize) -> Result<(), Included> {
        let name = rest
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
            .ok_or_else(|| Included::Here(format!("cannot read `#include {rest}`")))?;
        if name == "sel4/config.h" {
            // The configuration, which this reader is given as gen_config.json.
            return Ok(());
        }
        if !name.ends_with(".bf") {
            return Err(Included::Here(format!(
                "#include <{name}>: only other .bf files and sel4/config.h are followed"
            )));
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(Included::Here(format!("#include <{name}> nests deeper than {MAX_INCLUDE_DEPTH} files")));
        }
        let (path, text) = (self.load)(name)
            .map_err(Included::Inside)?
            .ok_or_else(|| Included::Here(format!("#include <{name}>: no include folder has it")))?;
        self.read(name, path, &text, depth + 1).map_err(Included::Inside)
    }
}

/// What went wrong with an `#include`: at the directive, or inside the included file.
enum Included {
    Here(String),
    Inside(HeaderError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Number(String),
    Punct(char),
}

/// The value of a bitfield integer literal (decimal, `0x`, `0o`, `0b`, a leading `0` for
/// octal, an `l` suffix).
fn literal(s: &str) -> Option<u64> {
    let d = s.strip_suffix(['l', 'L']).unwrap_or(s);
    let radix = |p: &[&str]| p.iter().find_map(|p| d.strip_prefix(p));
    if let Some(h) = radix(&["0x", "0X"]) {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(b) = radix(&["0b", "0B"]) {
        u64::from_str_radix(b, 2).ok()
    } else if let Some(o) = radix(&["0o", "0O"]) {
        u64::from_str_radix(o, 8).ok()
    } else if d.len() > 1 && d.starts_with('0') {
        u64::from_str_radix(&d[1..], 8).ok()
    } else {
        d.parse().ok()
    }
}

/// The tags of `tagged_union UNION` in the `.bf` file `entry` (its include name), as the
/// configuration `config` sees them. `load` finds a file by include name.
pub fn read_tagged_union(
    entry: &str,
    union: &str,
    config: &KernelConfig,
    load: &mut dyn FnMut(&str) -> Result<Loaded, HeaderError>,
) -> Result<TaggedUnion, HeaderError> {
    let (path, text) = load(entry)?.ok_or_else(|| HeaderError {
        file: PathBuf::from(entry),
        line: 0,
        message: "no include folder has it".into(),
    })?;
    let last_line = text.lines().count().max(1);
    let mut r = Reader { config, load, files: Vec::new(), lines: Vec::new() };
    r.read(entry, path.clone(), &text, 0)?;

    let mut toks: Vec<(Tok, usize)> = Vec::new();
    for (li, l) in r.lines.iter().enumerate() {
        let mut chars = l.text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            if c.is_whitespace() {
                continue;
            }
            if c.is_ascii_alphanumeric() || c == '_' {
                let mut end = start + 1;
                while let Some(&(i, d)) = chars.peek() {
                    if !(d.is_ascii_alphanumeric() || d == '_') {
                        break;
                    }
                    end = i + 1;
                    chars.next();
                }
                let w = l.text[start..end].to_string();
                toks.push((if c.is_ascii_digit() { Tok::Number(w) } else { Tok::Ident(w) }, li));
            } else {
                toks.push((Tok::Punct(c), li));
            }
        }
    }
    let at = |li: usize| &r.lines[li];
    let err_at = |li: usize, message: String| {
        let l = at(li);
        HeaderError { file: r.files[l.file].1.clone(), line: l.line, message }
    };
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let mut found: Option<TaggedUnion> = None;
    let mut i = 0;
    while i < toks.len() {
        if !(ident(i) == Some("tagged_union") && ident(i + 1) == Some(union)) {
            i += 1;
            continue;
        }
        let start = toks[i].1;
        if let Some(first) = &found {
            return Err(err_at(
                start,
                format!("a second `tagged_union {union}` (the first is at {}:{})", first.path.display(), first.line),
            ));
        }
        let mut j = i + 3;
        match toks.get(j) {
            Some((Tok::Punct('{'), _)) => j += 1,
            Some((Tok::Punct('('), li)) => {
                return Err(err_at(
                    *li,
                    format!("tagged_union {union} has tag slices, which this reader does not read"),
                ));
            }
            _ => return Err(err_at(start, format!("cannot read `tagged_union {union}`: expected `NAME TAGFIELD {{`"))),
        }
        let mut tags: Vec<Tag> = Vec::new();
        loop {
            let Some((tok, li)) = toks.get(j) else {
                return Err(err_at(start, format!("the `{{` of tagged_union {union} is never closed")));
            };
            match tok {
                Tok::Punct('}') => break,
                Tok::Ident(w) if w == "mask" => match (toks.get(j + 1), toks.get(j + 2)) {
                    (Some((Tok::Number(_), _)), Some((Tok::Number(_), _))) => j += 3,
                    _ => return Err(err_at(*li, "cannot read `mask`: expected two numbers".into())),
                },
                Tok::Ident(w) if w == "tag" => {
                    let name = ident(j + 1).ok_or_else(|| err_at(*li, "`tag` without a name".into()))?;
                    let value = match toks.get(j + 2) {
                        Some((Tok::Number(n), _))
                            if matches!(toks.get(j + 3), Some((Tok::Ident(_) | Tok::Punct('}'), _))) =>
                        {
                            literal(n).ok_or_else(|| err_at(*li, format!("tag {name}: cannot read the number {n}")))?
                        }
                        _ => {
                            return Err(err_at(
                                *li,
                                format!(
                                    "tag {name}: only a single number is read as its value (not an expression or a list)"
                                ),
                            ));
                        }
                    };
                    let l = at(*li);
                    let (file, path) = r.files[l.file].clone();
                    tags.push(Tag { name: name.to_string(), value, file, path, line: l.line });
                    j += 3;
                }
                Tok::Ident(w) | Tok::Number(w) => {
                    return Err(err_at(*li, format!("cannot read `{w}` in tagged_union {union}")));
                }
                Tok::Punct(c) => return Err(err_at(*li, format!("cannot read `{c}` in tagged_union {union}"))),
            }
        }
        let l = at(start);
        let (file, path) = r.files[l.file].clone();
        found = Some(TaggedUnion { file, path, line: l.line, tags });
        i = j + 1;
    }
    found.ok_or_else(|| HeaderError {
        file: path,
        line: last_line,
        message: format!("no `tagged_union {union}` here or in the .bf files it includes, in this configuration"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &str = "--\n-- a comment: tagged_union seL4_Fault x {\n--\n\n#include <sel4/config.h>\n\nbase 64\n\nblock VMFault {\n    field IP 64\n}\n\n#ifdef CONFIG_HARDWARE_DEBUG_API\nblock DebugException {\n}\n#endif\n\n#include <sel4/arch/shared_types.bf>\n";
    const SHARED: &str = "-- shared\n\ntagged_union seL4_Fault seL4_FaultType {\n    -- generic faults\n    tag NullFault 0\n    tag CapFault 1\n#ifdef CONFIG_HARDWARE_DEBUG_API\n    tag DebugException 4\n#endif\n#ifdef CONFIG_KERNEL_MCS\n    tag Timeout 5\n    tag VMFault 6\n#ifdef CONFIG_ARM_HYPERVISOR_SUPPORT\n    tag VCPUFault 8\n#endif\n#else\n    tag VMFault 5 -- arch\n#ifdef CONFIG_ARM_HYPERVISOR_SUPPORT\n    tag VCPUFault 0x7\n#endif\n#endif\n}\n";

    fn config(on: &[&str]) -> KernelConfig {
        let opts = ["HARDWARE_DEBUG_API", "KERNEL_MCS", "ARM_HYPERVISOR_SUPPORT"];
        KernelConfig::from_values(opts.iter().map(|o| (o.to_string(), Value::Bool(on.contains(o)))))
    }

    fn read(types: &str, shared: &str, config: &KernelConfig) -> Result<TaggedUnion, HeaderError> {
        let mut load = |name: &str| -> Result<Loaded, HeaderError> {
            Ok(match name {
                "sel4/sel4_arch/types.bf" => Some((PathBuf::from("src/sel4_arch/types.bf"), types.to_string())),
                "sel4/arch/shared_types.bf" => Some((PathBuf::from("src/arch/shared_types.bf"), shared.to_string())),
                _ => None,
            })
        };
        read_tagged_union("sel4/sel4_arch/types.bf", "seL4_Fault", config, &mut load)
    }

    fn tags(u: &TaggedUnion) -> Vec<(&str, u64, usize)> {
        u.tags.iter().map(|t| (t.name.as_str(), t.value, t.line)).collect()
    }

    #[test]
    fn tags_follow_the_configuration() {
        let u = read(TYPES, SHARED, &config(&["ARM_HYPERVISOR_SUPPORT"])).unwrap();
        assert_eq!(tags(&u), [("NullFault", 0, 5), ("CapFault", 1, 6), ("VMFault", 5, 17), ("VCPUFault", 7, 19)]);
        assert_eq!((u.file.as_str(), u.line), ("sel4/arch/shared_types.bf", 3));
        assert_eq!(u.tags[2].path, PathBuf::from("src/arch/shared_types.bf"));
        let u = read(TYPES, SHARED, &config(&["KERNEL_MCS", "HARDWARE_DEBUG_API"])).unwrap();
        assert_eq!(
            tags(&u),
            [("NullFault", 0, 5), ("CapFault", 1, 6), ("DebugException", 4, 8), ("Timeout", 5, 11), ("VMFault", 6, 12)]
        );
        // A string option is defined too; an absent one is not.
        let c = KernelConfig::from_values([("KERNEL_MCS".to_string(), Value::Str("x".into()))]);
        assert_eq!(
            tags(&read(TYPES, SHARED, &c).unwrap()),
            [("NullFault", 0, 5), ("CapFault", 1, 6), ("Timeout", 5, 11), ("VMFault", 6, 12)]
        );
    }

    #[test]
    fn what_cannot_be_known_is_refused_with_file_and_line() {
        let c = config(&[]);
        let e =
            read(TYPES, &SHARED.replace("#ifdef CONFIG_KERNEL_MCS", "#if defined(CONFIG_KERNEL_MCS)"), &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "src/arch/shared_types.bf:10: `#if defined(CONFIG_KERNEL_MCS)` is not evaluated here: only #ifdef and #ifndef of CONFIG_ options are"
        );
        let e = read(TYPES, &SHARED.replace("tag CapFault 1", "tag CapFault 1 + 0"), &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "src/arch/shared_types.bf:6: tag CapFault: only a single number is read as its value (not an expression or a list)"
        );
        let e = read(TYPES, &SHARED.replace("#ifdef CONFIG_HARDWARE", "#ifdef __HARDWARE"), &c).unwrap_err();
        assert!(e.to_string().starts_with("src/arch/shared_types.bf:7: #ifdef __HARDWARE_DEBUG_API: whether"), "{e}");
        let e = read(&TYPES.replace("<sel4/config.h>", "<sel4/macros.h>"), SHARED, &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "src/sel4_arch/types.bf:5: #include <sel4/macros.h>: only other .bf files and sel4/config.h are followed"
        );
        let e = read(&TYPES.replace("arch/shared_types.bf", "arch/none.bf"), SHARED, &c).unwrap_err();
        assert_eq!(e.to_string(), "src/sel4_arch/types.bf:18: #include <sel4/arch/none.bf>: no include folder has it");
        let e = read(TYPES, &SHARED.replace("#endif\n}\n", "}\n"), &c).unwrap_err();
        assert_eq!(e.to_string(), "src/arch/shared_types.bf:10: `#ifdef CONFIG_KERNEL_MCS` is never closed by #endif");
        let e = read(TYPES, "-- nothing\n", &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "src/sel4_arch/types.bf:18: no `tagged_union seL4_Fault` here or in the .bf files it includes, in this configuration"
        );
        let e = read(TYPES, &SHARED.replace("seL4_FaultType {", "seL4_FaultType (a, b) {"), &c).unwrap_err();
        assert!(e.to_string().contains(":3: tagged_union seL4_Fault has tag slices"), "{e}");
        let e = read(TYPES, &format!("{SHARED}{SHARED}"), &c).unwrap_err();
        assert!(e.to_string().starts_with("src/arch/shared_types.bf:25: a second `tagged_union seL4_Fault`"), "{e}");
    }

    #[test]
    fn a_skipped_block_is_not_evaluated() {
        // Inside a false block, an #if the reader cannot evaluate does not matter.
        let shared =
            SHARED.replace("    tag DebugException 4\n", "#if FOO(1)\n    tag DebugException 4\n#elif BAR\n#endif\n");
        let u = read(TYPES, &shared, &config(&[])).unwrap();
        assert_eq!(u.tags.len(), 3);
    }

    #[test]
    fn literals() {
        assert_eq!(literal("0"), Some(0));
        assert_eq!(literal("12"), Some(12));
        assert_eq!(literal("0x1f"), Some(31));
        assert_eq!(literal("0b101"), Some(5));
        assert_eq!(literal("0o17"), Some(15));
        assert_eq!(literal("017"), Some(15));
        assert_eq!(literal("9l"), Some(9));
        assert_eq!(literal("0x"), None);
        assert_eq!(literal("9z"), None);
    }
}
