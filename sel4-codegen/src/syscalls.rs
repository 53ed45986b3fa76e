//! System call numbers from `api/syscall.xml`, numbered as seL4's `syscall_header_gen.py`
//! does: API calls from -1 downwards, then the debug calls continue the count, every entry
//! numbered whether or not its condition holds (the condition only decides whether it
//! exists).

use std::fmt::Write as _;

use crate::Error;
use crate::condition::eval_condition;
use crate::config::KernelConfig;
use crate::prefix::Prefix;

/// One system call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// Name as in the XML (`Call`, `DebugPutChar`, ...).
    pub name: String,
    /// Number passed in x7.
    pub number: i64,
    /// Whether this configuration has it.
    pub enabled: bool,
}

/// The system calls of one configuration.
#[derive(Clone, Debug)]
pub struct Syscalls {
    /// All of them, in numbering order.
    pub all: Vec<Syscall>,
}

impl Syscalls {
    /// Reads `api/syscall.xml` of the prefix for `config`.
    pub fn load(prefix: &Prefix, config: &KernelConfig) -> Result<Self, Error> {
        let file = prefix.include("api/syscall.xml");
        let text =
            std::fs::read_to_string(&file).map_err(|e| Error::Xml { file: file.clone(), message: e.to_string() })?;
        Self::parse(&text, config).map_err(|message| Error::Xml { file, message })
    }

    /// Parses the XML text.
    pub fn parse(text: &str, config: &KernelConfig) -> Result<Self, String> {
        let doc = roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
        let root = doc.root_element();
        let api_name = if config.flag("KERNEL_MCS") { "api-mcs" } else { "api-master" };
        let mut all = Vec::new();
        let mut n = -1i64;
        for section in [api_name, "debug"] {
            let el =
                root.children().find(|c| c.has_tag_name(section)).ok_or_else(|| format!("no <{section}> element"))?;
            for cfg in el.children().filter(|c| c.has_tag_name("config")) {
                let enabled = match cfg.children().find(|c| c.has_tag_name("condition")) {
                    Some(cond) => eval_condition(cond, config)
                        .map_err(|e| format!("line {}: {e}", doc.text_pos_at(cond.range().start).row))?,
                    None => true,
                };
                for s in cfg.children().filter(|c| c.has_tag_name("syscall")) {
                    let name = s.attribute("name").ok_or_else(|| {
                        format!("line {}: <syscall> without name", doc.text_pos_at(s.range().start).row)
                    })?;
                    all.push(Syscall { name: name.to_string(), number: n, enabled });
                    n -= 1;
                }
            }
        }
        Ok(Syscalls { all })
    }

    /// The number of an enabled system call.
    pub fn number(&self, name: &str) -> Option<i64> {
        self.all.iter().find(|s| s.name == name && s.enabled).map(|s| s.number)
    }

    /// `pub mod syscall` with one constant per enabled call, in SCREAMING_SNAKE_CASE.
    pub fn to_rust(&self) -> String {
        let mut out = String::from(
            "/// System call numbers (`seL4_Syscall_ID`) enabled in this configuration.\npub mod syscall {\n",
        );
        for s in self.all.iter().filter(|s| s.enabled) {
            writeln!(out, "    pub const {}: i64 = {};", screaming_snake(&s.name), s.number).unwrap();
        }
        out.push_str("}\n");
        out
    }
}

/// `DebugPutChar` -> `DEBUG_PUT_CHAR`, `NBSend` -> `NB_SEND`.
pub fn screaming_snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev_lower = chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase()) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases() {
        assert_eq!(screaming_snake("DebugPutChar"), "DEBUG_PUT_CHAR");
        assert_eq!(screaming_snake("NBSend"), "NB_SEND");
        assert_eq!(screaming_snake("ReplyRecv"), "REPLY_RECV");
        assert_eq!(screaming_snake("Call"), "CALL");
    }
}
