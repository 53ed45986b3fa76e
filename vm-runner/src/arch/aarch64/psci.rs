//! PSCI 1.0 for guests, over `HVC` and `SMC` alike (SMC Calling Convention function IDs in
//! `w0`, arguments in `x1`-`x3`, result in `x0`). A pure function of the call and a view of
//! the VM's vCPUs; the caller applies the [`Outcome`].
//!
//! Implemented: `PSCI_VERSION` (1.0), `PSCI_FEATURES`, `CPU_SUSPEND` (standby only, which
//! returns at once: allowed, since a standby state may be left on any wake-up event),
//! `CPU_OFF`, `CPU_ON`, `AFFINITY_INFO`, `MIGRATE_INFO_TYPE` (2: no trusted OS to migrate),
//! `SYSTEM_OFF`, `SYSTEM_RESET`. Anything else, PSCI or not (`SMCCC_VERSION`, vendor
//! calls), returns `NOT_SUPPORTED`, which is also the SMCCC "unknown function" value.

/// Function IDs.
pub mod fid {
    /// `PSCI_VERSION`.
    pub const VERSION: u32 = 0x8400_0000;
    /// `CPU_SUSPEND`, SMC32.
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// `CPU_SUSPEND`, SMC64.
    pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
    /// `CPU_OFF`.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// `CPU_ON`, SMC32.
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// `CPU_ON`, SMC64.
    pub const CPU_ON_64: u32 = 0xc400_0003;
    /// `AFFINITY_INFO`, SMC32.
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// `AFFINITY_INFO`, SMC64.
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    /// `MIGRATE`, SMC32 (not implemented).
    pub const MIGRATE_32: u32 = 0x8400_0005;
    /// `MIGRATE_INFO_TYPE`.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// `MIGRATE_INFO_UP_CPU`, SMC32 (not implemented).
    pub const MIGRATE_INFO_UP_CPU_32: u32 = 0x8400_0007;
    /// `SYSTEM_OFF`.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// `SYSTEM_RESET`.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// `PSCI_FEATURES`.
    pub const FEATURES: u32 = 0x8400_000a;
    /// `SMCCC_VERSION` (not implemented: SMCCC 1.0 is implied).
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
}

/// Return codes, as the 64-bit values written to `x0`.
pub mod ret {
    /// `SUCCESS`.
    pub const SUCCESS: u64 = 0;
    /// `NOT_SUPPORTED` (-1).
    pub const NOT_SUPPORTED: u64 = -1i64 as u64;
    /// `INVALID_PARAMETERS` (-2).
    pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
    /// `ALREADY_ON` (-4).
    pub const ALREADY_ON: u64 = -4i64 as u64;
    /// `INVALID_ADDRESS` (-9).
    pub const INVALID_ADDRESS: u64 = -9i64 as u64;
    /// `PSCI_VERSION`'s answer: 1.0.
    pub const VERSION_1_0: u64 = 0x0001_0000;
    /// `AFFINITY_INFO`: on.
    pub const AFFINITY_ON: u64 = 0;
    /// `AFFINITY_INFO`: off.
    pub const AFFINITY_OFF: u64 = 1;
    /// `MIGRATE_INFO_TYPE`: a trusted OS is not present or does not need migration.
    pub const MIGRATE_NOT_REQUIRED: u64 = 2;
}

/// The affinity fields of an MPIDR (Aff3, Aff2, Aff1, Aff0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Whether a vCPU is running, as PSCI sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Power {
    /// Off: never started, or `CPU_OFF`.
    Off,
    /// On.
    On,
}

/// What a PSCI call asks of the VMM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Return this value in `x0` and continue.
    Return(u64),
    /// Start vCPU `target` at `entry` with `x0 = context`, then return `SUCCESS`.
    CpuOn {
        /// Index of the vCPU.
        target: usize,
        /// Entry point (guest-physical: the vCPU starts with its MMU off).
        entry: u64,
        /// Value for its `x0`.
        context: u64,
    },
    /// The caller powers itself off; nothing returns.
    CpuOff,
    /// Power the VM off.
    SystemOff,
    /// Reset the VM.
    SystemReset,
}

/// Handles one call. `x` is `x0`-`x3`; `mpidrs[i]`/`power[i]` describe vCPU `i`;
/// `entry_ok` says whether a `CPU_ON` entry point is in guest RAM.
pub fn call(x: [u64; 4], mpidrs: &[u64], power: &[Power], entry_ok: impl Fn(u64) -> bool) -> Outcome {
    let f = x[0] as u32;
    // SMC32 calls take 32-bit arguments; the upper halves of the registers mean nothing.
    let arg = |i: usize| {
        let v = x.get(i).copied().unwrap_or(0);
        if f & 0x4000_0000 == 0 { v & 0xffff_ffff } else { v }
    };
    match f {
        fid::VERSION => Outcome::Return(ret::VERSION_1_0),
        fid::FEATURES => Outcome::Return(if implemented(arg(1) as u32) { ret::SUCCESS } else { ret::NOT_SUPPORTED }),
        fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => {
            // power_state bit 16: 0 standby/retention, 1 power down. capvisor advertises no
            // power-down states.
            if arg(1) & (1 << 16) == 0 {
                Outcome::Return(ret::SUCCESS)
            } else {
                Outcome::Return(ret::INVALID_PARAMETERS)
            }
        }
        fid::CPU_OFF => Outcome::CpuOff,
        fid::CPU_ON_32 | fid::CPU_ON_64 => {
            let (target, entry, context) = (arg(1) & MPIDR_AFFINITY_MASK, arg(2), arg(3));
            let Some(t) = mpidrs.iter().position(|m| m & MPIDR_AFFINITY_MASK == target) else {
                return Outcome::Return(ret::INVALID_PARAMETERS);
            };
            if power.get(t) == Some(&Power::On) {
                return Outcome::Return(ret::ALREADY_ON);
            }
            if entry % 4 != 0 || !entry_ok(entry) {
                return Outcome::Return(ret::INVALID_ADDRESS);
            }
            Outcome::CpuOn { target: t, entry, context }
        }
        fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => {
            let level = arg(2);
            // Lowest affinity level N ignores Aff0..Aff(N-1): Aff0 is bits 7:0, Aff1 15:8,
            // Aff2 23:16, Aff3 39:32.
            let ignore: u64 = match level {
                0 => 0,
                1 => 0xff,
                2 => 0xffff,
                3 => 0xff_ffff,
                _ => return Outcome::Return(ret::INVALID_PARAMETERS),
            };
            let mask = MPIDR_AFFINITY_MASK & !ignore;
            let want = arg(1) & mask;
            let mut matched = false;
            for (i, m) in mpidrs.iter().enumerate() {
                if m & mask == want {
                    matched = true;
                    if power.get(i) == Some(&Power::On) {
                        return Outcome::Return(ret::AFFINITY_ON);
                    }
                }
            }
            Outcome::Return(if matched { ret::AFFINITY_OFF } else { ret::INVALID_PARAMETERS })
        }
        fid::MIGRATE_INFO_TYPE => Outcome::Return(ret::MIGRATE_NOT_REQUIRED),
        fid::SYSTEM_OFF => Outcome::SystemOff,
        fid::SYSTEM_RESET => Outcome::SystemReset,
        _ => Outcome::Return(ret::NOT_SUPPORTED),
    }
}

/// Whether `PSCI_FEATURES` reports a function as implemented.
fn implemented(f: u32) -> bool {
    matches!(
        f,
        fid::VERSION
            | fid::FEATURES
            | fid::CPU_SUSPEND_32
            | fid::CPU_SUSPEND_64
            | fid::CPU_OFF
            | fid::CPU_ON_32
            | fid::CPU_ON_64
            | fid::AFFINITY_INFO_32
            | fid::AFFINITY_INFO_64
            | fid::MIGRATE_INFO_TYPE
            | fid::SYSTEM_OFF
            | fid::SYSTEM_RESET
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MPIDRS: [u64; 3] = [0x0, 0x1, 0x100];
    const POWER: [Power; 3] = [Power::On, Power::Off, Power::Off];

    fn c(x: [u64; 4]) -> Outcome {
        call(x, &MPIDRS, &POWER, |e| (0x4000_0000..0x5000_0000).contains(&e))
    }

    #[test]
    fn version_features_and_unknown_functions() {
        assert_eq!(c([fid::VERSION.into(), 0, 0, 0]), Outcome::Return(0x1_0000));
        // w0 only: garbage in the upper half of x0 does not change the function.
        assert_eq!(c([0xdead_0000_0000_0000 | u64::from(fid::VERSION), 0, 0, 0]), Outcome::Return(0x1_0000));
        for f in [fid::CPU_ON_64, fid::CPU_OFF, fid::SYSTEM_RESET, fid::FEATURES, fid::CPU_SUSPEND_32] {
            assert_eq!(c([fid::FEATURES.into(), f.into(), 0, 0]), Outcome::Return(ret::SUCCESS), "{f:#x}");
        }
        for f in [fid::MIGRATE_32, fid::MIGRATE_INFO_UP_CPU_32, fid::SMCCC_VERSION, 0x8400_001f, 0] {
            assert_eq!(c([fid::FEATURES.into(), f.into(), 0, 0]), Outcome::Return(ret::NOT_SUPPORTED), "{f:#x}");
        }
        for f in [fid::SMCCC_VERSION, fid::MIGRATE_32, 0xc200_0000, 0x8400_000b, 0xffff_ffff] {
            assert_eq!(c([f.into(), 1, 2, 3]), Outcome::Return(ret::NOT_SUPPORTED), "{f:#x}");
        }
        assert_eq!(c([fid::MIGRATE_INFO_TYPE.into(), 0, 0, 0]), Outcome::Return(2));
    }

    #[test]
    fn cpu_on_finds_the_target_by_affinity_and_checks_it() {
        assert_eq!(
            c([fid::CPU_ON_64.into(), 0x100, 0x4000_1000, 0xabc]),
            Outcome::CpuOn { target: 2, entry: 0x4000_1000, context: 0xabc }
        );
        // Non-affinity MPIDR bits (U, MT) are ignored.
        assert_eq!(
            c([fid::CPU_ON_64.into(), 0x8000_0001, 0x4000_1000, 0]),
            Outcome::CpuOn { target: 1, entry: 0x4000_1000, context: 0 }
        );
        assert_eq!(c([fid::CPU_ON_64.into(), 0x0, 0x4000_1000, 0]), Outcome::Return(ret::ALREADY_ON));
        assert_eq!(c([fid::CPU_ON_64.into(), 0x2, 0x4000_1000, 0]), Outcome::Return(ret::INVALID_PARAMETERS));
        assert_eq!(c([fid::CPU_ON_64.into(), 0x1, 0x9000_0000, 0]), Outcome::Return(ret::INVALID_ADDRESS));
        assert_eq!(c([fid::CPU_ON_64.into(), 0x1, 0x4000_1002, 0]), Outcome::Return(ret::INVALID_ADDRESS));
        // SMC32: arguments are 32-bit.
        assert_eq!(
            c([fid::CPU_ON_32.into(), 0xffff_ffff_0000_0001, 0xffff_ffff_4000_2000, 0x1_0000_0007]),
            Outcome::CpuOn { target: 1, entry: 0x4000_2000, context: 7 }
        );
    }

    #[test]
    fn affinity_info_by_level() {
        assert_eq!(c([fid::AFFINITY_INFO_64.into(), 0, 0, 0]), Outcome::Return(ret::AFFINITY_ON));
        assert_eq!(c([fid::AFFINITY_INFO_64.into(), 1, 0, 0]), Outcome::Return(ret::AFFINITY_OFF));
        assert_eq!(c([fid::AFFINITY_INFO_64.into(), 0x100, 0, 0]), Outcome::Return(ret::AFFINITY_OFF));
        assert_eq!(c([fid::AFFINITY_INFO_64.into(), 0x5, 0, 0]), Outcome::Return(ret::INVALID_PARAMETERS));
        // Level 1: cluster 0 (vCPUs 0 and 1) has one on; cluster 1 has none.
        assert_eq!(c([fid::AFFINITY_INFO_64.into(), 0x1, 1, 0]), Outcome::Return(ret::AFFINITY_ON));
        assert_eq!(c([fid::AFFINITY_INFO_32.into(), 0x1ff, 1, 0]), Outcome::Return(ret::AFFINITY_OFF));
        assert_eq!(c([fid::AFFINITY_INFO_64.into(), 0, 4, 0]), Outcome::Return(ret::INVALID_PARAMETERS));
    }

    #[test]
    fn power_calls() {
        assert_eq!(c([fid::CPU_OFF.into(), 0, 0, 0]), Outcome::CpuOff);
        assert_eq!(c([fid::SYSTEM_OFF.into(), 0, 0, 0]), Outcome::SystemOff);
        assert_eq!(c([fid::SYSTEM_RESET.into(), 0, 0, 0]), Outcome::SystemReset);
        assert_eq!(c([fid::CPU_SUSPEND_64.into(), 0, 0, 0]), Outcome::Return(ret::SUCCESS));
        assert_eq!(c([fid::CPU_SUSPEND_64.into(), 1 << 16, 0x4000_0000, 0]), Outcome::Return(ret::INVALID_PARAMETERS));
    }
}
