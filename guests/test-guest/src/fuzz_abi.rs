//! What the fuzz mode shares with the world outside the guest: the record the test hands it
//! (its seed and length), its memory layout, and the numbers of capvisor's VMM and of PSCI it
//! aims at.
//!
//! The guest is built without capvisor's crates, so the numbers are written out here;
//! `capvisor/tests/fuzz_guest.rs` includes this file, writes the record from it, and checks
//! every VMM and PSCI number against `vm-runner`'s own, so a change there fails that test
//! instead of leaving the fuzz mode aiming at the wrong thing. Plain constants only: the host
//! test compiles this file too.

/// Guest-physical address of the parameter record: the VM's initial RAM disk
/// (`ramdisk_load_addr`), the last page of its 16 MiB of RAM.
pub const PARAMS_ADDR: u64 = 0x40ff_f000;
/// The record is four little-endian `u64`s: this magic (`b"capfuzz1"`), the seed, the
/// iterations (0: until the VM is stopped from outside) and flags ([`FLAG_DEBUG_REGISTERS`]).
/// Without the magic the guest uses [`DEFAULT_SEED`], [`DEFAULT_ITERATIONS`] and no flags.
pub const PARAMS_MAGIC: u64 = u64::from_le_bytes(*b"capfuzz1");
/// Flag: write the debug and trace registers (`MSR` with op0 2: `MDSCR_EL1`, breakpoints,
/// watchpoints, the OS lock) too, the first time `MDSCR_EL1.SS` on purpose. Off by default:
/// seL4 16.0.0 as capvisor configures it (no `HardwareDebugAPI`) neither traps nor switches
/// them for vCPUs, so a guest's software step (or `MDE` with a breakpoint) stays armed when
/// the root task runs, whose debug exception seL4 turns into a fault nobody handles: the
/// whole machine stops (see guests/test-guest/README.md).
pub const FLAG_DEBUG_REGISTERS: u64 = 1 << 0;
/// Seed without a record.
pub const DEFAULT_SEED: u64 = 1;
/// Iterations without a record.
pub const DEFAULT_ITERATIONS: u64 = 20_000;

/// The fuzz VM's RAM (`configs/test-guest-fuzz.toml`).
pub const RAM_BASE: u64 = 0x4000_0000;
/// Its size.
pub const RAM_BYTES: u64 = 0x100_0000;

/// The guest CSpace capvisor gives each vCPU (`vm-runner/src/setup.rs`): one CNode with a
/// slot per vCPU holding that vCPU's badged fault endpoint, behind this guard.
pub const GUEST_CSPACE_GUARD: u64 = 0x0063_6170_7669_736f;
/// Index bits of that CNode.
pub const GUEST_CNODE_SLOT_BITS: u32 = 3;

/// The CPtr that names vCPU `index`'s fault endpoint in a guest CSpace: an `HVC` with a
/// send-type seL4 call number in `x7` and this in `x0` sends a message the VMM receives as a
/// fault of that vCPU (a forged exit).
pub const fn fault_cptr(index: u64) -> u64 {
    (GUEST_CSPACE_GUARD << GUEST_CNODE_SLOT_BITS) | index
}

/// seL4 16.0.0's fault labels (`seL4_Fault_tag`), as the VMM decodes them.
pub mod label {
    /// `seL4_Fault_CapFault`.
    pub const CAP_FAULT: u64 = 1;
    /// `seL4_Fault_UnknownSyscall`.
    pub const UNKNOWN_SYSCALL: u64 = 2;
    /// `seL4_Fault_UserException`.
    pub const USER_EXCEPTION: u64 = 3;
    /// `seL4_Fault_VMFault`.
    pub const VM_FAULT: u64 = 5;
    /// `seL4_Fault_VGICMaintenance`.
    pub const VGIC_MAINTENANCE: u64 = 6;
    /// `seL4_Fault_VCPUFault`.
    pub const VCPU_FAULT: u64 = 7;
    /// `seL4_Fault_VPPIEvent`.
    pub const VPPI_EVENT: u64 = 8;
}

/// Message words a label's fault carries (`seL4_*_Length`; the VMM refuses fewer as
/// undecodable). A guest's send carries at most 4, its message registers `x2`-`x5`.
pub const fn fault_words(label: u64) -> u64 {
    match label {
        label::CAP_FAULT | label::VM_FAULT => 4,
        label::UNKNOWN_SYSCALL => 13,
        label::USER_EXCEPTION => 5,
        label::VGIC_MAINTENANCE | label::VCPU_FAULT | label::VPPI_EVENT => 1,
        _ => 0,
    }
}

/// PSCI 1.0 function IDs (the low 32 bits of `x0` select the function).
pub mod psci {
    /// `PSCI_VERSION`.
    pub const VERSION: u32 = 0x8400_0000;
    /// `CPU_SUSPEND`, SMC32 and SMC64.
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
    /// `MIGRATE_INFO_TYPE`.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// `SYSTEM_OFF`.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// `SYSTEM_RESET`.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// `PSCI_FEATURES`.
    pub const FEATURES: u32 = 0x8400_000a;
    /// `SYSTEM_SUSPEND`, SMC32 (PSCI 1.0, optional).
    pub const SYSTEM_SUSPEND_32: u32 = 0x8400_000e;
    /// `SYSTEM_SUSPEND`, SMC64.
    pub const SYSTEM_SUSPEND_64: u32 = 0xc400_000e;
    /// `SYSTEM_RESET2`, SMC32 (PSCI 1.1).
    pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
    /// `SYSTEM_RESET2`, SMC64.
    pub const SYSTEM_RESET2_64: u32 = 0xc400_0012;

    /// `NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: u64 = -1i64 as u64;
    /// `INVALID_PARAMETERS`.
    pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
    /// `ALREADY_ON`.
    pub const ALREADY_ON: u64 = -4i64 as u64;
    /// `INVALID_ADDRESS`.
    pub const INVALID_ADDRESS: u64 = -9i64 as u64;
    /// `PSCI_VERSION`'s answer from a PSCI 1.0 implementation.
    pub const VERSION_1_0: u64 = 0x1_0000;
    /// The affinity bits of an MPIDR (Aff3, Aff2, Aff1, Aff0) that `CPU_ON` compares.
    pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;
}
