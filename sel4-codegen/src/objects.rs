//! Object type numbers and object sizes for an AArch64 configuration.
//!
//! These live in libsel4's C headers (`objecttype.h`, `constants.h`), not in the interface
//! XML, and depend on configuration options. The rules below follow seL4 16.0.0's headers
//! option by option; `tests/installed_headers.rs` checks them against the installed headers of a
//! real kernel prefix with the cross C compiler.

use std::fmt::Write as _;

use crate::config::{ConfigError, KernelConfig};

/// Object type numbers and log2 sizes for one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLayout {
    /// `(name, number)` for every object type this configuration has, in numbering order.
    pub types: Vec<(&'static str, u64)>,
    /// `(name, bits)` for every size constant.
    pub bits: Vec<(&'static str, u32)>,
}

impl ObjectLayout {
    /// The layout for `config`; only AArch64 is supported.
    pub fn for_config(config: &KernelConfig) -> Result<Self, ConfigError> {
        if !config.flag("ARCH_AARCH64") {
            return Err(ConfigError::Unsupported {
                option: "ARCH_AARCH64",
                found: "false".into(),
                need: "true",
                fix: "KernelSel4Arch aarch64",
            });
        }
        let mcs = config.flag("KERNEL_MCS");
        let hyp = config.flag("ARM_HYPERVISOR_SUPPORT");

        // libsel4/include/sel4/objecttype.h
        let mut names: Vec<&'static str> = vec!["UNTYPED", "TCB", "ENDPOINT", "NOTIFICATION", "CAP_TABLE"];
        if mcs {
            names.extend(["SCHED_CONTEXT", "REPLY"]);
        }
        // sel4_arch_include/aarch64/.../objecttype.h
        names.extend(["HUGE_PAGE", "VSPACE"]);
        // arch_include/arm/.../objecttype.h
        names.extend(["SMALL_PAGE", "LARGE_PAGE", "PAGE_TABLE"]);
        if hyp {
            names.push("VCPU");
        }
        if config.flag("TK1_SMMU") {
            names.push("IO_PAGE_TABLE");
        }
        let count = names.len() as u64;
        let mut types: Vec<(&'static str, u64)> = names.into_iter().zip(0..).collect();
        types.push(("COUNT", count));

        // sel4_arch_include/aarch64/.../constants.h
        let big_tcb = config.flag("HARDWARE_DEBUG_API")
            || config.flag("ARM_HYP_ENABLE_VCPU_CP14_SAVE_AND_RESTORE")
            || (hyp && config.flag("ENABLE_SMP_SUPPORT") && config.flag("BENCHMARK_TRACK_UTILISATION") && !mcs);
        let concatenated_root = hyp && config.flag("ARM_PA_SIZE_BITS_40");
        let vspace_index = if concatenated_root { 10 } else { 9 };
        let bits = vec![
            ("PAGE", 12),
            ("LARGE_PAGE", 21),
            ("HUGE_PAGE", 30),
            ("SLOT", 5),
            ("TCB", if big_tcb { 12 } else { 11 }),
            ("ENDPOINT", 4),
            ("NOTIFICATION", if mcs { 6 } else { 5 }),
            ("PAGE_TABLE", 12),
            ("PAGE_TABLE_INDEX", 9),
            ("VSPACE", vspace_index + 3),
            ("VSPACE_INDEX", vspace_index),
            ("VCPU", 12),
            ("ASID_POOL", 12),
            ("MIN_UNTYPED", 4),
            ("MAX_UNTYPED", 47),
        ];
        Ok(ObjectLayout { types, bits })
    }

    /// The number of a type, by name.
    pub fn type_number(&self, name: &str) -> Option<u64> {
        self.types.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// A size, by name.
    pub fn size_bits(&self, name: &str) -> Option<u32> {
        self.bits.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// `pub mod object_type` and `pub mod object_bits`. Types this configuration lacks get
    /// `u64::MAX`, so code naming them compiles but the kernel (and the model) reject them.
    pub fn to_rust(&self) -> String {
        let mut out = String::from(
            "/// Kernel object type numbers (`seL4_ObjectType`) for this configuration.\npub mod object_type {\n",
        );
        for name in [
            "UNTYPED",
            "TCB",
            "ENDPOINT",
            "NOTIFICATION",
            "CAP_TABLE",
            "HUGE_PAGE",
            "VSPACE",
            "SMALL_PAGE",
            "LARGE_PAGE",
            "PAGE_TABLE",
            "VCPU",
            "COUNT",
        ] {
            let v = self.type_number(name).unwrap_or(u64::MAX);
            writeln!(out, "    pub const {name}: u64 = {v};").unwrap();
        }
        out.push_str("}\n/// log2 object sizes (`seL4_*Bits`) for this configuration.\npub mod object_bits {\n");
        for (name, v) in &self.bits {
            writeln!(out, "    pub const {name}: u32 = {v};").unwrap();
        }
        out.push_str("}\n");
        out
    }
}
