//! The kernel configuration as built, from `gen_config.json`, and the check that it is one
//! capvisor supports.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::prefix::Prefix;

/// One configuration value as `gen_config.json` records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A boolean option.
    Bool(bool),
    /// A string option (numbers are strings in the file).
    Str(String),
}

/// Why a configuration is unusable. Each names the file or option and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The file is not valid JSON or not an object of strings and booleans.
    Malformed {
        /// The file.
        file: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// A required option is not in the file.
    MissingOption {
        /// The file.
        file: PathBuf,
        /// The option.
        option: &'static str,
    },
    /// A required option has the wrong value.
    Unsupported {
        /// The option.
        option: &'static str,
        /// What the kernel has.
        found: String,
        /// What capvisor needs.
        need: &'static str,
        /// How to get it (the kernel's CMake setting).
        fix: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Malformed { file, message } => {
                write!(f, "{}: not a seL4 gen_config.json: {message}", file.display())
            }
            ConfigError::MissingOption { file, option } => write!(
                f,
                "{}: option {option} is missing: install a seL4 16.0.0 kernel whose build recorded it",
                file.display()
            ),
            ConfigError::Unsupported { option, found, need, fix } => write!(
                f,
                "kernel configured with {option}={found}, capvisor needs {need}: rebuild the kernel with {fix}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The merged kernel and libsel4 configuration.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    values: BTreeMap<String, Value>,
    kernel_file: PathBuf,
}

/// The options capvisor requires and why: `(option, required value, kernel CMake setting)`.
pub const REQUIREMENTS: [(&str, bool, &str); 4] = [
    ("ARCH_AARCH64", true, "KernelSel4Arch aarch64 (an AArch64 platform)"),
    ("ARM_HYPERVISOR_SUPPORT", true, "KernelArmHypervisorSupport ON (the kernel at EL2, VCPU objects)"),
    ("KERNEL_MCS", false, "KernelIsMCS OFF (capvisor targets the non-MCS ABI)"),
    ("EXPORT_PCNT_USER", true, "KernelArmExportPCNTUser ON (the timer server reads the physical counter)"),
];

fn load_file(path: PathBuf, into: &mut BTreeMap<String, Value>) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::Malformed { file: path.clone(), message: e.to_string() })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| ConfigError::Malformed {
        file: path.clone(),
        message: format!("line {}, column {}: {e}", e.line(), e.column()),
    })?;
    let obj = json
        .as_object()
        .ok_or_else(|| ConfigError::Malformed { file: path.clone(), message: "top level is not an object".into() })?;
    for (k, v) in obj {
        let v = match v {
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            other => {
                return Err(ConfigError::Malformed {
                    file: path.clone(),
                    message: format!("option {k} has value {other}, expected a string or boolean"),
                });
            }
        };
        into.insert(k.clone(), v);
    }
    Ok(())
}

impl KernelConfig {
    /// Reads `kernel/gen_config.json` and `sel4/gen_config.json` of the prefix.
    pub fn load(prefix: &Prefix) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        let kernel_file = prefix.include("kernel/gen_config.json");
        load_file(kernel_file.clone(), &mut values)?;
        load_file(prefix.include("sel4/gen_config.json"), &mut values)?;
        Ok(KernelConfig { values, kernel_file })
    }

    /// A configuration from in-memory values (tests).
    pub fn from_values(values: impl IntoIterator<Item = (String, Value)>) -> Self {
        KernelConfig { values: values.into_iter().collect(), kernel_file: PathBuf::from("<memory>") }
    }

    /// The raw value of an option.
    pub fn get(&self, option: &str) -> Option<&Value> {
        self.values.get(option)
    }

    /// A boolean option; absent counts as false, as in the kernel's `#ifdef CONFIG_...`.
    pub fn flag(&self, option: &str) -> bool {
        matches!(self.values.get(option), Some(Value::Bool(true)))
    }

    /// A required boolean option.
    pub fn require_flag(&self, option: &'static str) -> Result<bool, ConfigError> {
        match self.values.get(option) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Str(s)) => Err(ConfigError::Malformed {
                file: self.kernel_file.clone(),
                message: format!("option {option} is \"{s}\", expected true or false"),
            }),
            None => Err(ConfigError::MissingOption { file: self.kernel_file.clone(), option }),
        }
    }

    /// A required numeric option.
    pub fn require_u64(&self, option: &'static str) -> Result<u64, ConfigError> {
        match self.values.get(option) {
            Some(Value::Str(s)) => s.parse().map_err(|_| ConfigError::Malformed {
                file: self.kernel_file.clone(),
                message: format!("option {option} is \"{s}\", expected a number"),
            }),
            Some(Value::Bool(b)) => Err(ConfigError::Malformed {
                file: self.kernel_file.clone(),
                message: format!("option {option} is {b}, expected a number"),
            }),
            None => Err(ConfigError::MissingOption { file: self.kernel_file.clone(), option }),
        }
    }

    /// Checks every entry of [`REQUIREMENTS`] plus the numeric options the bindings use;
    /// the first failure is returned.
    pub fn check_capvisor_requirements(&self) -> Result<(), ConfigError> {
        for (option, need, fix) in REQUIREMENTS {
            let found = self.require_flag(option)?;
            if found != need {
                return Err(ConfigError::Unsupported {
                    option,
                    found: found.to_string(),
                    need: if need { "true" } else { "false" },
                    fix,
                });
            }
        }
        for option in ["ROOT_CNODE_SIZE_BITS", "RETYPE_FAN_OUT_LIMIT", "MAX_NUM_BOOTINFO_UNTYPED_CAPS", "MAX_NUM_NODES"]
        {
            self.require_u64(option)?;
        }
        Ok(())
    }

    /// Every option as a Rust constant in `pub mod config`: booleans as `bool`, numbers as
    /// `u64`, other strings as `&str`.
    pub fn to_rust(&self) -> String {
        let mut out =
            String::from("/// The kernel and libsel4 configuration, from gen_config.json.\npub mod config {\n");
        for (k, v) in &self.values {
            let ident: String =
                k.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
            let ident = if ident.starts_with(|c: char| c.is_ascii_digit()) { format!("_{ident}") } else { ident };
            let line = match v {
                Value::Bool(b) => format!("    pub const {ident}: bool = {b};\n"),
                Value::Str(s) => match s.parse::<u64>() {
                    Ok(n) => format!("    pub const {ident}: u64 = {n};\n"),
                    Err(_) => format!("    pub const {ident}: &str = {s:?};\n"),
                },
            };
            out.push_str(&line);
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Vec<(String, Value)> {
        let mut v: Vec<(String, Value)> =
            REQUIREMENTS.iter().map(|(o, need, _)| (o.to_string(), Value::Bool(*need))).collect();
        for (k, n) in [
            ("ROOT_CNODE_SIZE_BITS", "16"),
            ("RETYPE_FAN_OUT_LIMIT", "256"),
            ("MAX_NUM_BOOTINFO_UNTYPED_CAPS", "230"),
            ("MAX_NUM_NODES", "1"),
        ] {
            v.push((k.into(), Value::Str(n.into())));
        }
        v
    }

    #[test]
    fn a_supported_configuration_passes() {
        KernelConfig::from_values(good()).check_capvisor_requirements().unwrap();
    }

    #[test]
    fn each_requirement_is_enforced_with_a_message_naming_it() {
        for (option, need, _) in REQUIREMENTS {
            let vals = good().into_iter().map(|(k, v)| if k == option { (k, Value::Bool(!need)) } else { (k, v) });
            let err = KernelConfig::from_values(vals).check_capvisor_requirements().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(option), "{msg}");
            assert!(msg.contains("rebuild the kernel with"), "{msg}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn a_missing_option_is_named() {
        let vals = good().into_iter().filter(|(k, _)| k != "KERNEL_MCS");
        let err = KernelConfig::from_values(vals).check_capvisor_requirements().unwrap_err();
        assert_eq!(err, ConfigError::MissingOption { file: "<memory>".into(), option: "KERNEL_MCS" });
        assert!(err.to_string().contains("KERNEL_MCS is missing"));
    }

    #[test]
    fn rust_output_types_values() {
        let c = KernelConfig::from_values([
            ("A".to_string(), Value::Bool(true)),
            ("B".to_string(), Value::Str("62500000".into())),
            ("C".to_string(), Value::Str("qemu-arm-virt".into())),
        ]);
        let r = c.to_rust();
        assert!(r.contains("pub const A: bool = true;"));
        assert!(r.contains("pub const B: u64 = 62500000;"));
        assert!(r.contains("pub const C: &str = \"qemu-arm-virt\";"));
    }
}
