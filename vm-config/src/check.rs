//! The rules every configuration satisfies, in one place.
//!
//! The host parser runs these after building a [`VmConfig`] and maps each [`Problem`]'s
//! [`Field`] back to a file position; the root task runs them again after decoding the
//! embedded bytes, so that a configuration that did not come through the host tool is held to
//! the same rules. The checks never stop at the first problem: a user fixes all of them at once.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::addr::GuestRange;
use crate::model::{
    EmulatedKind, GICR_BYTES_PER_CPU, GicVersion, InterruptMode, MapType, MemFlags, OnReset, PopulateRam, SystemConfig,
    VmConfig,
};

/// Page size of stage-2 mappings: regions are multiples of it.
pub const PAGE_SIZE: u64 = 0x1000;
/// Bytes of a GICv2 CPU interface (`GICC_CTLR` at 0 to `GICC_DIR` at 0x1000), the size of
/// the host GICV window `capvisor.gic_cpu_interface` maps.
pub const GIC_CPU_INTERFACE_BYTES: u64 = 0x2000;
/// Interrupt IDs 1020 to 1023 are special in the GIC architecture.
pub const MAX_IRQ_LINES: u16 = 1024;

/// Which part of a configuration a problem is about.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Field {
    /// A key of `[base]`, `[kernel]`, `[devices]` or `[capvisor]`, as a dotted path
    /// (`"base.cpu_num"`).
    Key(&'static str),
    /// `kernel.memory_regions[index]`, or one of its elements.
    Memory(usize, Part),
    /// `devices.emu_devices[index]`.
    Emulated(usize, Part),
    /// `devices.passthrough_devices[index]`.
    Passthrough(usize, Part),
    /// `devices.passthrough_addresses[index]`.
    PassthroughAddress(usize, Part),
    /// `base.phys_cpu_ids[index]`.
    PhysCpuId(usize),
}

/// An element of an array entry (axvisor writes regions and devices as arrays).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Part {
    /// The entry as a whole.
    Whole,
    /// The element at this index.
    Element(usize),
}

impl Part {
    fn fmt_with(&self, f: &mut fmt::Formatter<'_>, names: &[&str]) -> fmt::Result {
        match self {
            Part::Whole => Ok(()),
            Part::Element(i) => match names.get(*i) {
                Some(n) => write!(f, ".{n}"),
                None => write!(f, "[{i}]"),
            },
        }
    }
}

/// Element names of a memory region entry, as axvisor documents them.
pub const MEMORY_ELEMENTS: [&str; 4] = ["gpa", "size", "flags", "map_type"];
/// Element names of an emulated device entry.
pub const EMULATED_ELEMENTS: [&str; 6] = ["name", "base_gpa", "length", "irq_id", "emu_type", "cfg_list"];
/// Element names of a passthrough device entry.
pub const PASSTHROUGH_ELEMENTS: [&str; 5] = ["name", "base_gpa", "base_hpa", "length", "irq_id"];
/// Element names of a passthrough address entry.
pub const PASSTHROUGH_ADDRESS_ELEMENTS: [&str; 2] = ["base_gpa", "length"];

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Key(k) => f.write_str(k),
            Field::Memory(i, p) => {
                write!(f, "kernel.memory_regions[{i}]")?;
                p.fmt_with(f, &MEMORY_ELEMENTS)
            }
            Field::Emulated(i, p) => {
                write!(f, "devices.emu_devices[{i}]")?;
                p.fmt_with(f, &EMULATED_ELEMENTS)
            }
            Field::Passthrough(i, p) => {
                write!(f, "devices.passthrough_devices[{i}]")?;
                p.fmt_with(f, &PASSTHROUGH_ELEMENTS)
            }
            Field::PassthroughAddress(i, p) => {
                write!(f, "devices.passthrough_addresses[{i}]")?;
                p.fmt_with(f, &PASSTHROUGH_ADDRESS_ELEMENTS)
            }
            Field::PhysCpuId(i) => write!(f, "base.phys_cpu_ids[{i}]"),
        }
    }
}

/// What is wrong.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ProblemKind {
    /// `cpu_num` is 0.
    NoCpus,
    /// `capvisor.gic_cpu_interface` is not one GICv2 CPU interface.
    GicCpuInterfaceSize(u64),
    /// More vCPUs than a GICv2 distributor addresses.
    TooManyCpus(u64),
    /// `phys_cpu_ids` has a different length than `cpu_num`.
    PhysCpuIdsLength {
        /// `cpu_num`.
        expected: u64,
        /// Entries given.
        found: u64,
    },
    /// Two vCPUs report the same MPIDR.
    DuplicatePhysCpuId(u64),
    /// The name is empty, too long, or has characters outside `[A-Za-z0-9_.-]`.
    BadName(String),
    /// `vm_type` is not 0, 1 or 2.
    UnknownVmType(u64),
    /// No memory regions.
    NoMemory,
    /// A region or device of size 0.
    ZeroSize,
    /// An address or size that must be page aligned is not.
    Misaligned {
        /// The offending value.
        value: u64,
        /// The required alignment.
        align: u64,
    },
    /// `base + size` does not fit in 64 bits.
    RangeOverflows,
    /// A range overlaps another one (named in the message).
    Overlaps {
        /// The range.
        range: GuestRange,
        /// The other field.
        other: Field,
        /// Its range.
        other_range: GuestRange,
    },
    /// `map_type` is not 0, 1 or 2.
    UnknownMapType(u64),
    /// `flags` has bits outside axvisor's `MappingFlags`.
    UnknownFlags(u64),
    /// RAM that is neither readable nor writable is useless and almost certainly a typo.
    MemoryNotReadable,
    /// An address that must be in guest RAM is not.
    OutsideMemory(u64),
    /// The entry point is not 4-byte aligned (AArch64 instructions are).
    EntryMisaligned(u64),
    /// An emulated device type capvisor does not implement.
    UnsupportedDevice(u64),
    /// A CFI flash bank whose size is not a power of two of at least one 256 KiB erase
    /// block (the size its CFI query reports is a power of two).
    FlashSize(u64),
    /// A `flash_images` entry names no emulated CFI flash bank.
    NotAFlash(String),
    /// Two `flash_images` entries for one bank.
    DuplicateFlashImage(String),
    /// An emulated device's window is smaller than its model needs.
    DeviceTooSmall {
        /// Required size.
        min: u64,
    },
    /// An interrupt ID beyond the distributor's lines, or a special ID.
    IrqOutOfRange {
        /// The ID.
        irq: u64,
        /// Lines implemented.
        lines: u64,
    },
    /// Two devices raise the same interrupt ID.
    DuplicateIrq {
        /// The ID.
        irq: u64,
        /// The device that already raises it.
        other: Field,
    },
    /// More than one emulated interrupt controller (a GICv2 or GICv3 distributor), or more
    /// than one GICv3 redistributor region.
    DuplicateInterruptController,
    /// A GICv3 distributor without a redistributor region, or the other way round.
    GicV3Incomplete {
        /// The kind present.
        has: EmulatedKind,
    },
    /// A GICv3 redistributor region that is not one redistributor per vCPU.
    RedistributorSize {
        /// Its size.
        size: u64,
        /// `cpu_num`.
        cpus: u64,
    },
    /// A redistributor region's `cfg_list` (`[cpu_num, stride, pcpu]`) disagrees with the VM.
    RedistributorCfg {
        /// Which element.
        what: &'static str,
        /// What it says.
        found: u64,
        /// What it must say.
        expected: u64,
    },
    /// `capvisor.gic_cpu_interface` in a GICv3 VM, which has no memory-mapped CPU interface.
    GicCpuInterfaceWithV3,
    /// `gic_irq_lines` is not a multiple of 32 in `32..=1024`.
    BadIrqLines(u64),
    /// `vcpu_priority` would not leave the VMM above its vCPUs.
    BadPriority(u64),
    /// A device has an interrupt but `interrupt_mode` is `"no_irq"`.
    IrqButNoIrqMode,
    /// Two VMs share an id or a name.
    DuplicateVm(String),
    /// A host-physical range is given to two VMs (identity-mapped RAM or passthrough).
    HostRangeShared {
        /// The other VM's name.
        other_vm: String,
    },
    /// `populate_ram = "on_touch"` in a VM with passthrough devices, whose DMA could land
    /// in RAM that capvisor zeroes when the guest first touches it.
    OnTouchWithPassthrough,
    /// `reboot_limit = 0`: a limit allows at least one reboot.
    ZeroRebootLimit,
    /// `reboot_limit` with `on_reset = "stop"`: the VM never reboots, so the limit would be
    /// silently ignored.
    RebootLimitWithStop,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::NoCpus => f.write_str("a VM needs at least one vCPU (cpu_num = 0)"),
            ProblemKind::GicCpuInterfaceSize(n) => {
                write!(f, "size {n:#x}: a GICv2 CPU interface (the host's GICV) is {GIC_CPU_INTERFACE_BYTES:#x} bytes")
            }
            ProblemKind::TooManyCpus(n) => {
                write!(f, "{n} vCPUs; a GICv2 distributor addresses at most {}", VmConfig::MAX_CPUS)
            }
            ProblemKind::PhysCpuIdsLength { expected, found } => {
                write!(f, "{found} entries, but cpu_num is {expected}: give one per vCPU")
            }
            ProblemKind::DuplicatePhysCpuId(id) => write!(f, "MPIDR {id:#x} is given to two vCPUs"),
            ProblemKind::BadName(why) => write!(f, "bad VM name: {why}"),
            ProblemKind::UnknownVmType(t) => write!(f, "unknown vm_type {t} (0 host, 1 RTOS, 2 Linux)"),
            ProblemKind::NoMemory => f.write_str("no memory regions: a VM needs RAM"),
            ProblemKind::ZeroSize => f.write_str("size is 0"),
            ProblemKind::Misaligned { value, align } => write!(f, "{value:#x} is not a multiple of {align:#x}"),
            ProblemKind::RangeOverflows => f.write_str("base + size overflows 64 bits"),
            ProblemKind::Overlaps { range, other, other_range } => {
                write!(f, "{range} overlaps {other} {other_range}")
            }
            ProblemKind::UnknownMapType(t) => {
                write!(f, "unknown map type {t} (0 = MAP_ALLOC, 1 = MAP_IDENTICAL, 2 = MAP_RESERVED)")
            }
            ProblemKind::UnknownFlags(v) => {
                write!(f, "flags {v:#x} has bits outside READ|WRITE|EXECUTE|USER|DEVICE|UNCACHED (0x3f)")
            }
            ProblemKind::MemoryNotReadable => f.write_str("memory that is not readable (flags lack READ = 0x1)"),
            ProblemKind::OutsideMemory(a) => write!(f, "{a:#x} is not inside any memory region"),
            ProblemKind::EntryMisaligned(a) => write!(f, "entry point {a:#x} is not 4-byte aligned"),
            ProblemKind::UnsupportedDevice(t) => write!(
                f,
                "emulated device type {t:#x} ({}) is not implemented by capvisor (supported: 0x0 meta, 0x1 GICv2 distributor, 0x2 PL011 console, 0x20 GICv3 redistributors, 0x21 GICv3 distributor, 0xc0 CFI flash, 0xc1 PL031 RTC: capvisor's numbers)",
                EmulatedKind::axvisor_name(*t)
            ),
            ProblemKind::FlashSize(n) => {
                write!(
                    f,
                    "a CFI flash bank of {n:#x} bytes: the size must be a power of two, at least 0x40000 (one erase block)"
                )
            }
            ProblemKind::NotAFlash(d) => {
                write!(f, "{d:?} is not an emulated CFI flash bank (emu_type 0xc0) of this VM")
            }
            ProblemKind::DuplicateFlashImage(d) => write!(f, "a second image for flash bank {d:?}"),
            ProblemKind::DeviceTooSmall { min } => {
                write!(f, "window is smaller than the {min:#x} bytes the model needs")
            }
            ProblemKind::IrqOutOfRange { irq, lines } => {
                write!(f, "interrupt {irq} is not a device interrupt of a distributor with {lines} lines (16..{lines})")
            }
            ProblemKind::DuplicateIrq { irq, other } => write!(f, "interrupt {irq} is already raised by {other}"),
            ProblemKind::DuplicateInterruptController => f.write_str("a second emulated interrupt controller"),
            ProblemKind::GicV3Incomplete { has } => match has {
                EmulatedKind::GicV3Redistributor => {
                    f.write_str("GICv3 redistributors (emu_type 0x20) without a GICv3 distributor (emu_type 0x21)")
                }
                _ => f.write_str("a GICv3 distributor (emu_type 0x21) needs a redistributor region (emu_type 0x20)"),
            },
            ProblemKind::RedistributorSize { size, cpus } => write!(
                f,
                "{size:#x} bytes: a GICv3 redistributor region holds one {GICR_BYTES_PER_CPU:#x}-byte redistributor per vCPU, {:#x} for {cpus}",
                GICR_BYTES_PER_CPU.saturating_mul(*cpus)
            ),
            ProblemKind::RedistributorCfg { what, found, expected } => {
                write!(f, "{what} is {found:#x}, must be {expected:#x} (cfg_list = [cpu_num, stride, pcpu], or empty)")
            }
            ProblemKind::GicCpuInterfaceWithV3 => f.write_str(
                "a GICv3 guest uses the system-register CPU interface: there is no GICV to map; drop gic_cpu_interface",
            ),
            ProblemKind::BadIrqLines(n) => write!(f, "{n} is not a multiple of 32 between 32 and 1024"),
            ProblemKind::BadPriority(p) => write!(f, "priority {p} must be below 254 so the VMM runs above its vCPUs"),
            ProblemKind::IrqButNoIrqMode => {
                f.write_str("the device has an interrupt but devices.interrupt_mode is \"no_irq\"")
            }
            ProblemKind::DuplicateVm(what) => write!(f, "{what} is used by two VMs"),
            ProblemKind::HostRangeShared { other_vm } => {
                write!(f, "the same host-physical memory is also given to VM {other_vm}")
            }
            ProblemKind::OnTouchWithPassthrough => f.write_str(
                "\"on_touch\" with passthrough devices: a device's DMA into RAM the guest has not touched yet \
                 would be zeroed away when the guest first touches it; use \"eager\"",
            ),
            ProblemKind::ZeroRebootLimit => f.write_str(
                "a reboot limit of 0: it allows at least 1 reboot; for none, use on_reset = \"stop\" instead",
            ),
            ProblemKind::RebootLimitWithStop => {
                f.write_str("a reboot limit with on_reset = \"stop\": the VM never reboots; drop one of them")
            }
        }
    }
}

impl core::error::Error for Problem {}

/// One thing wrong with a configuration: where, and what.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Problem {
    /// Index of the VM in the system (0 for a single VM).
    pub vm: usize,
    /// Where.
    pub field: Field,
    /// What.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind)
    }
}

fn check_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(String::from("it is empty"));
    }
    if name.len() > VmConfig::MAX_NAME_LEN {
        return Some(format!("{} bytes, at most {}", name.len(), VmConfig::MAX_NAME_LEN));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Some(format!("{c:?} is not one of [A-Za-z0-9_.-]"));
    }
    None
}

/// Checks one VM; every problem found, in field order.
pub fn check_vm(vm: &VmConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |field: Field, kind: ProblemKind| out.push(Problem { vm: 0, field, kind });

    // [base]
    if let Some(why) = check_name(&vm.name) {
        push(Field::Key("base.name"), ProblemKind::BadName(why));
    }
    if vm.vm_type > 2 {
        push(Field::Key("base.vm_type"), ProblemKind::UnknownVmType(vm.vm_type.into()));
    }
    if vm.cpu_num == 0 {
        push(Field::Key("base.cpu_num"), ProblemKind::NoCpus);
    } else if vm.cpu_num > VmConfig::MAX_CPUS {
        push(Field::Key("base.cpu_num"), ProblemKind::TooManyCpus(vm.cpu_num.into()));
    }
    if !vm.phys_cpu_ids.is_empty() {
        if vm.phys_cpu_ids.len() != usize::from(vm.cpu_num) {
            push(
                Field::Key("base.phys_cpu_ids"),
                ProblemKind::PhysCpuIdsLength { expected: vm.cpu_num.into(), found: vm.phys_cpu_ids.len() as u64 },
            );
        }
        for (i, id) in vm.phys_cpu_ids.iter().enumerate() {
            if vm.phys_cpu_ids[..i].contains(id) {
                push(Field::PhysCpuId(i), ProblemKind::DuplicatePhysCpuId(*id));
            }
        }
    }

    // [kernel] memory regions
    if vm.memory.is_empty() {
        push(Field::Key("kernel.memory_regions"), ProblemKind::NoMemory);
    }
    for (i, r) in vm.memory.iter().enumerate() {
        check_range(&r.range, 0, 1, true, |p, k| push(Field::Memory(i, p), k));
        if r.flags.0 & !MemFlags::ALL.0 != 0 {
            push(Field::Memory(i, Part::Element(2)), ProblemKind::UnknownFlags(r.flags.0.into()));
        } else if !r.flags.contains(MemFlags::READ) {
            push(Field::Memory(i, Part::Element(2)), ProblemKind::MemoryNotReadable);
        }
        for (j, earlier) in vm.memory[..i].iter().enumerate() {
            if r.range.overlaps(&earlier.range) {
                push(
                    Field::Memory(i, Part::Whole),
                    ProblemKind::Overlaps {
                        range: r.range,
                        other: Field::Memory(j, Part::Whole),
                        other_range: earlier.range,
                    },
                );
            }
        }
    }
    let in_memory = |addr: u64| vm.memory.iter().any(|r| r.range.contains(addr));
    // Firmware runs in place from its flash bank: the kernel loaded at a read-only bank's
    // base is that bank's image, entered there.
    let firmware = vm.firmware_bank().map(|d| d.range);
    let in_firmware = |addr: u64| firmware.is_some_and(|r| r.contains(addr));
    if !vm.memory.is_empty() {
        if !in_memory(vm.entry_point.0) && !in_firmware(vm.entry_point.0) {
            push(Field::Key("kernel.entry_point"), ProblemKind::OutsideMemory(vm.entry_point.0));
        }
        if !in_memory(vm.kernel.load_addr.0) && firmware.is_none() {
            push(Field::Key("kernel.kernel_load_addr"), ProblemKind::OutsideMemory(vm.kernel.load_addr.0));
        }
        if let Some(d) = &vm.dtb
            && !in_memory(d.load_addr.0)
        {
            push(Field::Key("kernel.dtb_load_addr"), ProblemKind::OutsideMemory(d.load_addr.0));
        }
        if let Some(d) = &vm.ramdisk
            && !in_memory(d.load_addr.0)
        {
            push(Field::Key("kernel.ramdisk_load_addr"), ProblemKind::OutsideMemory(d.load_addr.0));
        }
    }
    if !vm.entry_point.0.is_multiple_of(4) {
        push(Field::Key("kernel.entry_point"), ProblemKind::EntryMisaligned(vm.entry_point.0));
    }

    // [capvisor]
    let lines = vm.capvisor.gic_irq_lines;
    let lines_ok = (32..=MAX_IRQ_LINES).contains(&lines) && lines.is_multiple_of(32);
    if !lines_ok {
        push(Field::Key("capvisor.gic_irq_lines"), ProblemKind::BadIrqLines(lines.into()));
    }
    if vm.capvisor.vcpu_priority >= 254 {
        push(Field::Key("capvisor.vcpu_priority"), ProblemKind::BadPriority(vm.capvisor.vcpu_priority.into()));
    }
    match (vm.capvisor.reboot_limit, vm.capvisor.on_reset) {
        (Some(0), _) => push(Field::Key("capvisor.reboot_limit"), ProblemKind::ZeroRebootLimit),
        (Some(_), OnReset::Stop) => push(Field::Key("capvisor.reboot_limit"), ProblemKind::RebootLimitWithStop),
        _ => {}
    }

    // [devices]: every device window, for overlap checks against RAM and each other.
    let mut windows: Vec<(Field, GuestRange)> = Vec::new();
    let mut irqs: Vec<(u32, Field)> = Vec::new();
    let mut controllers = 0;
    let mut redistributors = 0;
    let mode = vm.interrupt_mode;
    let mut check_irq = |irq: u32, field: Field, out: &mut dyn FnMut(Field, ProblemKind)| {
        if irq == 0 {
            return;
        }
        // SGIs (0-15) are not device interrupts; 1020-1023 are special; beyond the
        // distributor's lines nothing can deliver it.
        let limit = if lines_ok { u32::from(lines).min(1020) } else { 1020 };
        if irq < 16 || irq >= limit {
            out(field, ProblemKind::IrqOutOfRange { irq: irq.into(), lines: lines.into() });
        } else if mode == InterruptMode::NoIrq {
            out(field, ProblemKind::IrqButNoIrqMode);
        } else if let Some((_, other)) = irqs.iter().find(|(i, _)| *i == irq) {
            out(field, ProblemKind::DuplicateIrq { irq: irq.into(), other: other.clone() });
        } else {
            irqs.push((irq, field));
        }
    };
    for (i, d) in vm.emulated.iter().enumerate() {
        let field = |p| Field::Emulated(i, p);
        check_range(&d.range, 1, 2, false, |p, k| push(field(p), k));
        if matches!(d.kind, EmulatedKind::InterruptController | EmulatedKind::GicV3Distributor) {
            controllers += 1;
            if controllers > 1 {
                push(field(Part::Element(4)), ProblemKind::DuplicateInterruptController);
            }
        }
        if d.kind == EmulatedKind::GicV3Redistributor {
            redistributors += 1;
            if redistributors > 1 {
                push(field(Part::Element(4)), ProblemKind::DuplicateInterruptController);
            }
            let cpus = u64::from(vm.cpu_num);
            if d.range.size_bytes != GICR_BYTES_PER_CPU.saturating_mul(cpus) {
                push(field(Part::Element(2)), ProblemKind::RedistributorSize { size: d.range.size_bytes, cpus });
            }
            let expect = [("cfg_list[0] (cpu_num)", cpus), ("cfg_list[1] (stride)", GICR_BYTES_PER_CPU)];
            for ((what, expected), found) in expect.into_iter().zip(d.cfg.iter().copied()) {
                if found != expected {
                    push(field(Part::Element(5)), ProblemKind::RedistributorCfg { what, found, expected });
                }
            }
        }
        if d.range.size_bytes != 0 && d.range.size_bytes < d.kind.min_size_bytes() {
            push(field(Part::Element(2)), ProblemKind::DeviceTooSmall { min: d.kind.min_size_bytes() });
        }
        if d.kind == EmulatedKind::CfiFlash
            && (!d.range.size_bytes.is_power_of_two() || d.range.size_bytes < EmulatedKind::CfiFlash.min_size_bytes())
        {
            push(field(Part::Element(2)), ProblemKind::FlashSize(d.range.size_bytes));
        }
        check_irq(d.irq, field(Part::Element(3)), &mut push);
        windows.push((field(Part::Whole), d.range));
    }
    for (i, f) in vm.flash_images.iter().enumerate() {
        let key = Field::Key("capvisor.flash_images");
        if !vm.emulated.iter().any(|d| d.kind == EmulatedKind::CfiFlash && d.name == f.device) {
            push(key, ProblemKind::NotAFlash(f.device.clone()));
        } else if vm.flash_images[..i].iter().any(|g| g.device == f.device) {
            push(key, ProblemKind::DuplicateFlashImage(f.device.clone()));
        }
    }
    for (i, d) in vm.passthrough.iter().enumerate() {
        let field = |p| Field::Passthrough(i, p);
        if let Some(r) = &d.region {
            check_range(&r.guest, 1, 3, true, |p, k| push(field(p), k));
            if !r.host.is_aligned(12) {
                push(field(Part::Element(2)), ProblemKind::Misaligned { value: r.host.0, align: PAGE_SIZE });
            }
            if r.host.checked_add(r.guest.size_bytes).is_none() {
                push(field(Part::Element(2)), ProblemKind::RangeOverflows);
            }
            windows.push((field(Part::Whole), r.guest));
        }
        // In axvisor's "passthrough" interrupt mode a passthrough device's interrupts come
        // from the host device tree and its irq_id is not used (axvisor's own configs give
        // several devices the same placeholder there), so it is checked only in the other
        // modes.
        if mode != InterruptMode::Passthrough {
            check_irq(d.irq, field(Part::Element(4)), &mut push);
        }
    }
    for (i, r) in vm.passthrough_addresses.iter().enumerate() {
        let field = |p| Field::PassthroughAddress(i, p);
        check_range(r, 0, 1, true, |p, k| push(field(p), k));
        windows.push((field(Part::Whole), *r));
    }
    let has = |k: EmulatedKind| vm.emulated.iter().position(|d| d.kind == k);
    match (has(EmulatedKind::GicV3Distributor), has(EmulatedKind::GicV3Redistributor)) {
        (Some(i), None) => push(
            Field::Emulated(i, Part::Element(4)),
            ProblemKind::GicV3Incomplete { has: EmulatedKind::GicV3Distributor },
        ),
        (None, Some(i)) => push(
            Field::Emulated(i, Part::Element(4)),
            ProblemKind::GicV3Incomplete { has: EmulatedKind::GicV3Redistributor },
        ),
        _ => {}
    }
    if vm.gic_version() == GicVersion::V3 && vm.capvisor.gic_cpu_interface.is_some() {
        push(Field::Key("capvisor.gic_cpu_interface"), ProblemKind::GicCpuInterfaceWithV3);
    }
    if let Some(r) = &vm.capvisor.gic_cpu_interface {
        let field = Field::Key("capvisor.gic_cpu_interface");
        check_range(&r.guest, 0, 2, true, |_, k| push(field.clone(), k));
        if !r.host.is_aligned(12) {
            push(field.clone(), ProblemKind::Misaligned { value: r.host.0, align: PAGE_SIZE });
        }
        if r.guest.size_bytes != GIC_CPU_INTERFACE_BYTES {
            push(field.clone(), ProblemKind::GicCpuInterfaceSize(r.guest.size_bytes));
        }
        windows.push((field, r.guest));
    }
    if vm.capvisor.populate_ram == PopulateRam::OnTouch
        && (vm.passthrough.iter().any(|d| d.region.is_some()) || !vm.passthrough_addresses.is_empty())
    {
        push(Field::Key("capvisor.populate_ram"), ProblemKind::OnTouchWithPassthrough);
    }
    for (i, (field, w)) in windows.iter().enumerate() {
        for (j, m) in vm.memory.iter().enumerate() {
            if w.overlaps(&m.range) {
                push(
                    field.clone(),
                    ProblemKind::Overlaps { range: *w, other: Field::Memory(j, Part::Whole), other_range: m.range },
                );
            }
        }
        for (other, ow) in &windows[..i] {
            if w.overlaps(ow) {
                push(field.clone(), ProblemKind::Overlaps { range: *w, other: other.clone(), other_range: *ow });
            }
        }
    }
    out
}

/// Size, alignment and overflow of one range whose base and size are the entry's elements
/// `base_el` and `size_el`. `paged` asks for page-aligned base and size (RAM and mapped
/// windows; emulated windows may be any size since they are never mapped).
fn check_range(r: &GuestRange, base_el: usize, size_el: usize, paged: bool, mut push: impl FnMut(Part, ProblemKind)) {
    if r.size_bytes == 0 {
        push(Part::Element(size_el), ProblemKind::ZeroSize);
        return;
    }
    if r.end().is_none() {
        push(Part::Whole, ProblemKind::RangeOverflows);
        return;
    }
    if paged && !r.base.0.is_multiple_of(PAGE_SIZE) {
        push(Part::Element(base_el), ProblemKind::Misaligned { value: r.base.0, align: PAGE_SIZE });
    }
    if paged && !r.size_bytes.is_multiple_of(PAGE_SIZE) {
        push(Part::Element(size_el), ProblemKind::Misaligned { value: r.size_bytes, align: PAGE_SIZE });
    }
}

/// Checks a whole system: each VM, then what VMs must not share.
pub fn check_system(sys: &SystemConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, vm) in sys.vms.iter().enumerate() {
        out.extend(check_vm(vm).into_iter().map(|p| Problem { vm: i, ..p }));
    }
    for (i, vm) in sys.vms.iter().enumerate() {
        for earlier in &sys.vms[..i] {
            if earlier.id == vm.id {
                out.push(Problem {
                    vm: i,
                    field: Field::Key("base.id"),
                    kind: ProblemKind::DuplicateVm(format!("id {}", vm.id)),
                });
            }
            if earlier.name == vm.name {
                out.push(Problem {
                    vm: i,
                    field: Field::Key("base.name"),
                    kind: ProblemKind::DuplicateVm(format!("name {:?}", vm.name)),
                });
            }
            for (field, host) in host_ranges(vm) {
                if host_ranges(earlier).iter().any(|(_, h)| h.overlaps(&host)) {
                    out.push(Problem {
                        vm: i,
                        field,
                        kind: ProblemKind::HostRangeShared { other_vm: earlier.name.clone() },
                    });
                }
            }
        }
    }
    out
}

/// The host-physical ranges a VM claims exclusively, as guest ranges over host addresses:
/// identity-mapped and reserved RAM, and passthrough windows.
fn host_ranges(vm: &VmConfig) -> Vec<(Field, GuestRange)> {
    let mut v = Vec::new();
    for (i, m) in vm.memory.iter().enumerate() {
        if m.map != MapType::Alloc {
            v.push((Field::Memory(i, Part::Whole), m.range));
        }
    }
    for (i, d) in vm.passthrough.iter().enumerate() {
        if let Some(r) = &d.region {
            v.push((Field::Passthrough(i, Part::Element(2)), GuestRange::new(r.host.0, r.guest.size_bytes)));
        }
    }
    for (i, r) in vm.passthrough_addresses.iter().enumerate() {
        v.push((Field::PassthroughAddress(i, Part::Whole), *r));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EmulatedDevice, PassthroughDevice, PassthroughRegion};
    use alloc::string::ToString;
    use alloc::vec;
    use sel4::PhysAddr;

    fn vm() -> VmConfig {
        VmConfig::minimal(1, "t", GuestRange::new(0x4000_0000, 0x10_0000), 0x4000_0000)
    }

    fn kinds(vm: &VmConfig) -> Vec<(String, ProblemKind)> {
        check_vm(vm).into_iter().map(|p| (p.field.to_string(), p.kind)).collect()
    }

    #[test]
    fn minimal_vm_is_clean() {
        assert_eq!(kinds(&vm()), vec![]);
    }

    #[test]
    fn ranges_that_wrap_are_refused_before_any_overlap_arithmetic() {
        let mut v = vm();
        v.memory[0].range = GuestRange::new(u64::MAX - 0xfff, 0x2000);
        v.entry_point = crate::GuestPhysAddr(u64::MAX - 0xfff);
        v.kernel.load_addr = v.entry_point;
        assert!(kinds(&v).contains(&("kernel.memory_regions[0]".into(), ProblemKind::RangeOverflows)));
        let mut v = vm();
        v.passthrough = vec![PassthroughDevice {
            name: "x".into(),
            region: Some(PassthroughRegion {
                guest: GuestRange::new(0x1000, 0x2000),
                host: PhysAddr(u64::MAX - 0xfff),
            }),
            irq: 0,
        }];
        assert_eq!(kinds(&v), vec![("devices.passthrough_devices[0].base_hpa".into(), ProblemKind::RangeOverflows)]);
    }

    #[test]
    fn special_interrupt_ids_and_zero_sized_devices_are_refused() {
        let mut v = vm();
        v.capvisor.gic_irq_lines = 1024;
        v.emulated = vec![
            EmulatedDevice {
                name: "d".into(),
                range: GuestRange::new(0x0900_0000, 0x1000),
                irq: 1020,
                kind: crate::EmulatedKind::Console,
                cfg: vec![],
            },
            EmulatedDevice {
                name: "z".into(),
                range: GuestRange::new(0x0a00_0000, 0),
                irq: 0,
                kind: crate::EmulatedKind::Dummy,
                cfg: vec![],
            },
        ];
        assert_eq!(
            kinds(&v),
            vec![
                ("devices.emu_devices[0].irq_id".into(), ProblemKind::IrqOutOfRange { irq: 1020, lines: 1024 }),
                ("devices.emu_devices[1].length".into(), ProblemKind::ZeroSize),
            ]
        );
    }

    #[test]
    fn a_gic_cpu_interface_is_one_gicv2_cpu_interface() {
        let mut v = vm();
        v.capvisor.gic_cpu_interface = Some(PassthroughRegion {
            guest: GuestRange::new(0x0801_0000, 0x2e_0000_0000),
            host: PhysAddr(0x0804_0000),
        });
        assert_eq!(
            kinds(&v).first(),
            Some(&(String::from("capvisor.gic_cpu_interface"), ProblemKind::GicCpuInterfaceSize(0x2e_0000_0000)))
        );
        v.capvisor.gic_cpu_interface =
            Some(PassthroughRegion { guest: GuestRange::new(0x0801_0000, 0x2000), host: PhysAddr(0x0804_0000) });
        assert_eq!(kinds(&v), vec![]);
    }

    #[test]
    fn field_paths_read_like_the_toml() {
        assert_eq!(Field::Memory(2, Part::Element(3)).to_string(), "kernel.memory_regions[2].map_type");
        assert_eq!(Field::Passthrough(0, Part::Element(2)).to_string(), "devices.passthrough_devices[0].base_hpa");
        assert_eq!(Field::Emulated(1, Part::Whole).to_string(), "devices.emu_devices[1]");
        assert_eq!(Field::Emulated(1, Part::Element(9)).to_string(), "devices.emu_devices[1][9]");
    }

    fn gic(name: &str, base: u64, size: u64, kind: EmulatedKind, cfg: Vec<u64>) -> EmulatedDevice {
        EmulatedDevice { name: name.into(), range: GuestRange::new(base, size), irq: 0, kind, cfg }
    }

    /// Two vCPUs with a GICv3 at QEMU virt's addresses.
    fn v3() -> VmConfig {
        let mut v = vm();
        v.cpu_num = 2;
        v.emulated = vec![
            gic("gicd", 0x0800_0000, 0x1_0000, EmulatedKind::GicV3Distributor, vec![]),
            gic("gicr", 0x080a_0000, 0x4_0000, EmulatedKind::GicV3Redistributor, vec![2, 0x2_0000, 0]),
        ];
        v
    }

    #[test]
    fn a_gicv3_is_a_distributor_and_one_redistributor_per_vcpu() {
        assert_eq!(kinds(&v3()), vec![]);
        assert_eq!(v3().gic_version(), GicVersion::V3);
        assert_eq!(vm().gic_version(), GicVersion::V2);
        let mut v = v3();
        v.emulated[1].range.size_bytes = 0x2_0000;
        assert_eq!(
            kinds(&v),
            vec![("devices.emu_devices[1].length".into(), ProblemKind::RedistributorSize { size: 0x2_0000, cpus: 2 })]
        );
        assert!(ProblemKind::RedistributorSize { size: 0x2_0000, cpus: 2 }.to_string().contains("0x40000 for 2"));
        let mut v = v3();
        v.emulated[1].cfg = vec![4, 0x1_0000];
        let got = kinds(&v);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(f, _)| f == "devices.emu_devices[1].cfg_list"));
        assert!(matches!(got[0].1, ProblemKind::RedistributorCfg { found: 4, expected: 2, .. }));
        assert!(matches!(got[1].1, ProblemKind::RedistributorCfg { found: 0x1_0000, expected: 0x2_0000, .. }));
        let mut v = v3();
        v.emulated[1].cfg = vec![];
        assert_eq!(kinds(&v), vec![], "an empty cfg_list is fine");
    }

    #[test]
    fn a_gicv3_must_be_whole_alone_and_without_a_gicc() {
        let mut v = v3();
        v.emulated.pop();
        assert_eq!(
            kinds(&v),
            vec![(
                "devices.emu_devices[0].emu_type".into(),
                ProblemKind::GicV3Incomplete { has: EmulatedKind::GicV3Distributor }
            )]
        );
        let mut v = v3();
        v.emulated.remove(0);
        assert_eq!(
            kinds(&v),
            vec![(
                "devices.emu_devices[0].emu_type".into(),
                ProblemKind::GicV3Incomplete { has: EmulatedKind::GicV3Redistributor }
            )]
        );
        let mut v = v3();
        v.emulated.push(gic("gicd2", 0x0900_0000, 0x1_0000, EmulatedKind::InterruptController, vec![]));
        assert_eq!(
            kinds(&v),
            vec![("devices.emu_devices[2].emu_type".into(), ProblemKind::DuplicateInterruptController)]
        );
        let mut v = v3();
        v.emulated.push(gic("gicr2", 0x0a00_0000, 0x4_0000, EmulatedKind::GicV3Redistributor, vec![]));
        assert_eq!(
            kinds(&v),
            vec![("devices.emu_devices[2].emu_type".into(), ProblemKind::DuplicateInterruptController)]
        );
        let mut v = v3();
        v.capvisor.gic_cpu_interface = Some(PassthroughRegion {
            guest: GuestRange::new(0x0801_0000, GIC_CPU_INTERFACE_BYTES),
            host: PhysAddr(0x0804_0000),
        });
        assert_eq!(kinds(&v), vec![("capvisor.gic_cpu_interface".into(), ProblemKind::GicCpuInterfaceWithV3)]);
        let mut v = v3();
        v.emulated[0].range.size_bytes = 0x1000;
        assert_eq!(
            kinds(&v),
            vec![("devices.emu_devices[0].length".into(), ProblemKind::DeviceTooSmall { min: 0x1_0000 })]
        );
    }
}
