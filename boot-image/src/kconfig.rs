//! The kernel configuration a root task was built for, in a canonical text form that the
//! root task carries in its ELF (section [`SECTION`]) and `capvisor image` compares with
//! the kernel at `SEL4_PREFIX`, naming each option that differs.
//!
//! Owns: reading `gen_config.json` into `KEY=VALUE` lines, and the comparison. Never
//! touches: the kernel's own checks of its configuration (sel4-codegen does those).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;

/// The ELF section holding the canonical configuration text.
pub const SECTION: &str = ".capvisor.kconfig";
/// First line of the text, naming the format.
pub const HEADER: &str = "capvisor-kconfig v1";

/// The configuration files, relative to the prefix, in the order they are merged.
pub const FILES: [&str; 2] = ["libsel4/include/kernel/gen_config.json", "libsel4/include/sel4/gen_config.json"];

/// Why a configuration cannot be read.
#[derive(Debug)]
pub struct KconfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for KconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for KconfigError {}

/// A configuration: option name to value text (`true`, `false`, or the string).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Kconfig(pub BTreeMap<String, String>);

impl Kconfig {
    /// Reads [`FILES`] under `prefix`.
    pub fn from_prefix(prefix: &Path) -> Result<Self, KconfigError> {
        let mut map = BTreeMap::new();
        for rel in FILES {
            let file = prefix.join(rel);
            let err = |message: String| KconfigError { file: file.clone(), message };
            let text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| err(std::format!("line {}: {e}", e.line())))?;
            let obj = json.as_object().ok_or_else(|| err("top level is not an object".into()))?;
            for (k, v) in obj {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                map.insert(k.clone(), v);
            }
        }
        Ok(Kconfig(map))
    }

    /// The canonical text: [`HEADER`], then `KEY=VALUE` lines sorted by key.
    pub fn to_text(&self) -> String {
        let mut s = String::from(HEADER);
        s.push('\n');
        for (k, v) in &self.0 {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        }
        s
    }

    /// Parses [`Kconfig::to_text`] output; `None` if the header is missing.
    pub fn from_text(text: &str) -> Option<Self> {
        let mut lines = text.trim_end_matches('\0').lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut map = BTreeMap::new();
        for l in lines {
            let (k, v) = l.split_once('=')?;
            map.insert(k.to_string(), v.to_string());
        }
        Some(Kconfig(map))
    }

    /// Options whose values differ: `(option, value here, value there)`, with `None` for
    /// an option one side lacks.
    pub fn diff(&self, other: &Kconfig) -> Vec<(String, Option<String>, Option<String>)> {
        let mut keys: Vec<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| self.0.get(*k) != other.0.get(*k))
            .map(|k| (k.clone(), self.0.get(k).cloned(), other.0.get(k).cloned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_diff() {
        let dir = std::env::temp_dir().join(std::format!("kconfig-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("libsel4/include/kernel")).unwrap();
        std::fs::create_dir_all(dir.join("libsel4/include/sel4")).unwrap();
        std::fs::write(dir.join(FILES[0]), r#"{"KERNEL_MCS": false, "PLAT": "qemu-arm-virt"}"#).unwrap();
        std::fs::write(dir.join(FILES[1]), r#"{"LIB_SEL4_X": "1"}"#).unwrap();
        let c = Kconfig::from_prefix(&dir).unwrap();
        let text = c.to_text();
        assert_eq!(text, "capvisor-kconfig v1\nKERNEL_MCS=false\nLIB_SEL4_X=1\nPLAT=qemu-arm-virt\n");
        assert_eq!(Kconfig::from_text(&text), Some(c.clone()));
        let mut other = c.clone();
        other.0.insert("KERNEL_MCS".into(), "true".into());
        other.0.remove("LIB_SEL4_X");
        assert_eq!(
            c.diff(&other),
            std::vec![
                ("KERNEL_MCS".into(), Some("false".into()), Some("true".into())),
                ("LIB_SEL4_X".into(), Some("1".into()), None)
            ]
        );
        std::fs::write(dir.join(FILES[1]), "{").unwrap();
        let e = Kconfig::from_prefix(&dir).unwrap_err();
        assert!(e.to_string().contains("sel4/gen_config.json: line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(Kconfig::from_text("something else\n"), None);
    }
}
