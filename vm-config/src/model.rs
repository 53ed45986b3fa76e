//! The compact form of a configuration: what the root task needs to build and run VMs, and
//! nothing about TOML. Built by the host parser, checked by [`crate::check`], carried to the
//! target by [`crate::codec`].

use alloc::string::String;
use alloc::vec::Vec;

use sel4::PhysAddr;

use crate::addr::{GuestPhysAddr, GuestRange};

/// Every VM of one capvisor system, in the order they are declared.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SystemConfig {
    /// The VMs.
    pub vms: Vec<VmConfig>,
}

/// One VM.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VmConfig {
    /// `base.id`: the VM's number, unique in the system.
    pub id: u32,
    /// `base.name`: 1 to [`VmConfig::MAX_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`; prefixes the
    /// VM's console lines.
    pub name: String,
    /// `base.vm_type` as axvisor numbers it (0 host, 1 RTOS, 2 Linux); carried, not used.
    pub vm_type: u8,
    /// `base.cpu_num`: number of vCPUs, 1 to [`VmConfig::MAX_CPUS`].
    pub cpu_num: u8,
    /// `base.phys_cpu_ids`: the MPIDR affinity each vCPU reports, or empty for `0..cpu_num`;
    /// on a multicore kernel also the physical core each vCPU is pinned to
    /// ([`VmConfig::pinned_core`]).
    pub phys_cpu_ids: Vec<u64>,
    /// `kernel.entry_point`: where vCPU 0 starts.
    pub entry_point: GuestPhysAddr,
    /// `kernel.kernel_path` and `kernel.kernel_load_addr`.
    pub kernel: Image,
    /// `kernel.dtb_path` and `kernel.dtb_load_addr`, if the VM gets a device tree.
    pub dtb: Option<Image>,
    /// `kernel.ramdisk_path` and `kernel.ramdisk_load_addr`.
    pub ramdisk: Option<Image>,
    /// `kernel.cmdline`.
    pub cmdline: Option<String>,
    /// `kernel.memory_regions`: guest RAM.
    pub memory: Vec<MemRegion>,
    /// `devices.interrupt_mode`.
    pub interrupt_mode: InterruptMode,
    /// `devices.emu_devices`: devices capvisor emulates.
    pub emulated: Vec<EmulatedDevice>,
    /// `devices.passthrough_devices`.
    pub passthrough: Vec<PassthroughDevice>,
    /// `devices.passthrough_addresses`: identity-mapped device ranges.
    pub passthrough_addresses: Vec<GuestRange>,
    /// `devices.excluded_devices`: device-tree paths kept from the guest.
    pub excluded_devices: Vec<String>,
    /// The `[capvisor]` table.
    pub capvisor: CapvisorOptions,
    /// `capvisor.flash_images`: the image each emulated CFI flash bank starts with (a bank
    /// without one starts erased).
    pub flash_images: Vec<FlashImage>,
}

/// A flash bank's starting contents (`capvisor.flash_images` entry `[device, path]`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FlashImage {
    /// The `emu_devices` name of the [`EmulatedKind::CfiFlash`] bank.
    pub device: String,
    /// The image file, as written (the image builder resolves it).
    pub path: String,
}

impl VmConfig {
    /// Longest VM name in bytes.
    pub const MAX_NAME_LEN: usize = 32;
    /// Most vCPUs per VM: a GICv2 distributor addresses 8 CPU interfaces (capvisor's GICv3
    /// keeps the same bound: its model tracks targets as a byte).
    pub const MAX_CPUS: u8 = 8;

    /// A minimal VM (one vCPU, no devices) for tests and examples; it passes [`crate::check`]
    /// when `memory` contains `entry` and `kernel_load`.
    pub fn minimal(id: u32, name: &str, memory: GuestRange, entry: u64) -> Self {
        VmConfig {
            id,
            name: String::from(name),
            vm_type: 1,
            cpu_num: 1,
            phys_cpu_ids: Vec::new(),
            entry_point: GuestPhysAddr(entry),
            kernel: Image { path: String::from("kernel.bin"), load_addr: GuestPhysAddr(entry) },
            dtb: None,
            ramdisk: None,
            cmdline: None,
            memory: alloc::vec![MemRegion {
                range: memory,
                flags: MemFlags::READ | MemFlags::WRITE | MemFlags::EXECUTE,
                map: MapType::Alloc,
            }],
            interrupt_mode: InterruptMode::Emulated,
            emulated: Vec::new(),
            passthrough: Vec::new(),
            passthrough_addresses: Vec::new(),
            excluded_devices: Vec::new(),
            capvisor: CapvisorOptions::default(),
            flash_images: Vec::new(),
        }
    }

    /// The read-only CFI flash bank whose base is `kernel_load_addr`, when there is one: the
    /// kernel image is then firmware, that bank's contents, run in place (as QEMU's `-bios`).
    pub fn firmware_bank(&self) -> Option<&EmulatedDevice> {
        self.emulated
            .iter()
            .find(|d| d.kind == EmulatedKind::CfiFlash && !d.writable() && d.range.base == self.kernel.load_addr)
    }

    /// The MPIDR affinity of vCPU `index` (PSCI `CPU_ON` targets use it).
    pub fn mpidr(&self, index: usize) -> u64 {
        self.phys_cpu_ids.get(index).copied().unwrap_or(index as u64)
    }

    /// The physical core vCPU `index` is pinned to on a kernel running on `cores` cores:
    /// none with one core (every thread runs there, and such a kernel has no
    /// `TCB_SetAffinity`), else the core its `phys_cpu_ids` entry names (by index: on QEMU
    /// virt core k has MPIDR k, and capvisor's loader numbers cores in device-tree order),
    /// which must exist: `Err` with the core named when it does not.
    pub fn pinned_core(&self, index: usize, cores: u64) -> Result<Option<u64>, u64> {
        if cores <= 1 {
            return Ok(None);
        }
        let core = self.mpidr(index);
        if core < cores { Ok(Some(core)) } else { Err(core) }
    }

    /// The GIC architecture the guest sees: GICv3 when its emulated devices include a GICv3
    /// distributor or redistributor region, else GICv2.
    pub fn gic_version(&self) -> GicVersion {
        let v3 = self
            .emulated
            .iter()
            .any(|d| matches!(d.kind, EmulatedKind::GicV3Distributor | EmulatedKind::GicV3Redistributor));
        if v3 { GicVersion::V3 } else { GicVersion::V2 }
    }
}

/// Bytes of one vCPU's GICv3 redistributor (RD_base and SGI_base, 64 KiB each): a
/// redistributor region is `cpu_num` times this.
pub const GICR_BYTES_PER_CPU: u64 = 0x2_0000;

/// The GIC architecture version of a VM's interrupt controller, or of a platform's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GicVersion {
    /// GICv2: a memory-mapped CPU interface (the guest's GICC backed by the host's GICV).
    V2,
    /// GICv3: the system-register CPU interface, redistributors, affinity routing.
    V3,
}

impl core::fmt::Display for GicVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GicVersion::V2 => "GICv2",
            GicVersion::V3 => "GICv3",
        })
    }
}

/// A guest image: a file on the host, placed at a guest-physical address.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Image {
    /// Path as written in the configuration (the image builder resolves it).
    pub path: String,
    /// Guest-physical load address.
    pub load_addr: GuestPhysAddr,
}

/// A guest RAM region.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemRegion {
    /// Guest-physical range.
    pub range: GuestRange,
    /// Access rights (axvisor's `MappingFlags` bits).
    pub flags: MemFlags,
    /// How it is backed.
    pub map: MapType,
}

/// Access flags of a memory region, with axvisor's bit numbering (`MappingFlags`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct MemFlags(pub u8);

impl MemFlags {
    /// Readable.
    pub const READ: MemFlags = MemFlags(1 << 0);
    /// Writable.
    pub const WRITE: MemFlags = MemFlags(1 << 1);
    /// Executable.
    pub const EXECUTE: MemFlags = MemFlags(1 << 2);
    /// User accessible (meaningless at stage 2; accepted and ignored).
    pub const USER: MemFlags = MemFlags(1 << 3);
    /// Device memory.
    pub const DEVICE: MemFlags = MemFlags(1 << 4);
    /// Uncached.
    pub const UNCACHED: MemFlags = MemFlags(1 << 5);
    /// Every defined bit.
    pub const ALL: MemFlags = MemFlags(0x3f);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: MemFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for MemFlags {
    type Output = MemFlags;
    fn bitor(self, rhs: MemFlags) -> MemFlags {
        MemFlags(self.0 | rhs.0)
    }
}

/// How a memory region is backed (axvisor's `map_type` numbers).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum MapType {
    /// 0, `MAP_ALLOC`: any free RAM (vm-runner takes the range the kernel clears least for).
    Alloc = 0,
    /// 1, `MAP_IDENTICAL`: the host RAM at the same physical address.
    Identical = 1,
    /// 2, `MAP_RESERVED`: host memory kept from the host's own use, at the same address.
    Reserved = 2,
}

impl MapType {
    /// The type with axvisor's number `n`.
    pub const fn from_number(n: u64) -> Option<Self> {
        match n {
            0 => Some(MapType::Alloc),
            1 => Some(MapType::Identical),
            2 => Some(MapType::Reserved),
            _ => None,
        }
    }
}

/// `devices.interrupt_mode`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum InterruptMode {
    /// `"no_irq"`: the guest gets no interrupts.
    NoIrq = 0,
    /// `"emu"`: interrupts go through the emulated distributor.
    Emulated = 1,
    /// `"passthrough"`: in axvisor, the guest owns the GIC. Under seL4 the kernel owns the GIC,
    /// so capvisor treats it as `Emulated` with the passthrough devices' interrupts forwarded.
    Passthrough = 2,
}

/// An emulated device (`devices.emu_devices` entry).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EmulatedDevice {
    /// Name, for messages.
    pub name: String,
    /// Guest-physical MMIO range.
    pub range: GuestRange,
    /// Interrupt ID it raises (0 for none).
    pub irq: u32,
    /// What it is.
    pub kind: EmulatedKind,
    /// Device-specific words (`cfg_list`), carried for the device model.
    pub cfg: Vec<u64>,
}

impl EmulatedDevice {
    /// A [`EmulatedKind::CfiFlash`] bank the guest may program and erase (`cfg_list = [1]`).
    pub fn writable(&self) -> bool {
        self.cfg.first() == Some(&1)
    }
}

/// The emulated device types capvisor implements (axvisor's `EmulatedDeviceType` numbers).
/// axvisor's other types (virtio, IVC, the GICv3 ITS) are rejected by the checks rather than
/// silently dropped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum EmulatedKind {
    /// 0x0, `Dummy`: reads as zero, writes ignored.
    Dummy = 0x0,
    /// 0x1, `InterruptController`: a GICv2 distributor.
    InterruptController = 0x1,
    /// 0x2, `Console`: a PL011 UART.
    Console = 0x2,
    /// 0x20, axvisor's `GPPTRedistributor`: the GICv3 redistributor region, one 128 KiB
    /// redistributor per vCPU in vCPU order ([`GICR_BYTES_PER_CPU`]). axvisor passes part of
    /// the host's GIC through; under seL4 the kernel owns the GIC, so capvisor emulates the
    /// redistributors whole, at the same addresses. `cfg_list` as axvisor's
    /// (`[cpu_num, stride, pcpu]`) or empty: when given, the first must be `cpu_num` and the
    /// second 0x20000; the physical CPU is not used.
    GicV3Redistributor = 0x20,
    /// 0x21, axvisor's `GPPTDistributor`: a GICv3 distributor (64 KiB), emulated whole as the
    /// redistributors are. The guest's CPU interface is the system-register one.
    GicV3Distributor = 0x21,
    /// 0xC0, capvisor's own number (axvisor has no flash type): a CFI NOR flash bank with
    /// Intel's command set, as QEMU virt's two 64 MiB banks. `cfg_list = [1]` makes it
    /// writable for the run; without it the bank is read-only. Its image comes from
    /// `[capvisor] flash_images`.
    CfiFlash = 0xC0,
    /// 0xC1, capvisor's own number: a PL031 real-time clock.
    Rtc = 0xC1,
}

impl EmulatedKind {
    /// The kind with axvisor's number `n`, if capvisor implements it.
    pub const fn from_number(n: u64) -> Option<Self> {
        match n {
            0x0 => Some(EmulatedKind::Dummy),
            0x1 => Some(EmulatedKind::InterruptController),
            0x2 => Some(EmulatedKind::Console),
            0x20 => Some(EmulatedKind::GicV3Redistributor),
            0x21 => Some(EmulatedKind::GicV3Distributor),
            0xC0 => Some(EmulatedKind::CfiFlash),
            0xC1 => Some(EmulatedKind::Rtc),
            _ => None,
        }
    }

    /// axvisor's name for a device type number, for messages about types capvisor lacks.
    pub const fn axvisor_name(n: u64) -> &'static str {
        match n {
            0x0 => "meta device",
            0x1 => "interrupt controller",
            0x2 => "console",
            0xC0 => "capvisor cfi flash",
            0xC1 => "capvisor pl031 rtc",
            0xA => "ivc channel",
            0x20 => "GICv3 redistributors (axvisor: gic partial passthrough redistributor)",
            0x21 => "GICv3 distributor (axvisor: gic partial passthrough distributor)",
            0x22 => "gic partial passthrough its",
            0x30 => "plic partial passthrough global",
            0xE1 => "virtio block",
            0xE2 => "virtio net",
            0xE3 => "virtio console",
            _ => "unknown",
        }
    }

    /// The smallest MMIO window the device model needs.
    pub const fn min_size_bytes(self) -> u64 {
        match self {
            EmulatedKind::Dummy => 1,
            EmulatedKind::InterruptController | EmulatedKind::Console | EmulatedKind::Rtc => 0x1000,
            EmulatedKind::GicV3Distributor => 0x1_0000,
            EmulatedKind::GicV3Redistributor => GICR_BYTES_PER_CPU,
            // One erase block of QEMU virt's flash.
            EmulatedKind::CfiFlash => 0x4_0000,
        }
    }
}

/// A passthrough device (`devices.passthrough_devices` entry): either an explicit region
/// (`[name, base_gpa, base_hpa, length, irq_id]`) or only a device-tree selector (`["/path"]`),
/// which is resolved against the host device tree by the image builder or the root task.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PassthroughDevice {
    /// Name or device-tree path.
    pub name: String,
    /// The MMIO window, when given.
    pub region: Option<PassthroughRegion>,
    /// The interrupt ID forwarded to the guest (0 for none).
    pub irq: u32,
}

/// The MMIO window of a passthrough device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PassthroughRegion {
    /// Where the guest sees it.
    pub guest: GuestRange,
    /// Where it is in host physical memory.
    pub host: PhysAddr,
}

/// The `[capvisor]` table: what capvisor needs beyond axvisor's format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CapvisorOptions {
    /// `unhandled_mmio`: what a guest access to an address with no RAM and no device gets.
    pub unhandled_mmio: UnhandledMmio,
    /// `gic_irq_lines`: interrupt IDs the emulated distributor implements (a multiple of 32,
    /// 32 to 1024; GICD_TYPER reports it).
    pub gic_irq_lines: u16,
    /// `vcpu_priority`: seL4 priority of the VM's vCPU threads (below the VMM's).
    pub vcpu_priority: u8,
    /// `gic_cpu_interface = [guest_base, host_base, size]`: where the guest sees its GIC CPU
    /// interface (GICC), backed by the host's GIC *virtual* CPU interface frames (GICV), which
    /// the hardware banks per running vCPU. Kept apart from `passthrough_devices` because
    /// every VM maps the same GICV frames, which for any other device would be a conflict.
    pub gic_cpu_interface: Option<PassthroughRegion>,
    /// `populate_ram`: whether guest RAM is mapped into the guest before it starts or each
    /// frame as the guest first touches it.
    pub populate_ram: PopulateRam,
    /// `on_reset`: what PSCI `SYSTEM_RESET` from the guest does.
    pub on_reset: OnReset,
    /// `reboot_limit`: how many times the VM may reboot (at least 1); the `SYSTEM_RESET` after
    /// the last one stops it instead, so a guest that resets at once on every boot (a crash
    /// loop) cannot run for ever. `None`: no limit. Only meaningful with [`OnReset::Reboot`].
    pub reboot_limit: Option<u32>,
}

impl Default for CapvisorOptions {
    fn default() -> Self {
        CapvisorOptions {
            unhandled_mmio: UnhandledMmio::Stop,
            gic_irq_lines: 128,
            vcpu_priority: 100,
            gic_cpu_interface: None,
            populate_ram: PopulateRam::Eager,
            on_reset: OnReset::Reboot,
            reboot_limit: None,
        }
    }
}

/// What PSCI `SYSTEM_RESET` from the guest does to its VM.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[repr(u8)]
pub enum OnReset {
    /// `"reboot"`: the VM is torn down (vCPUs, mappings, memory) and built again from the
    /// bundle, as at boot, and runs again; the other VMs run on.
    #[default]
    Reboot = 0,
    /// `"stop"`: the VM stops, as after `SYSTEM_OFF` (its end is reported as a reset).
    Stop = 1,
}

/// When guest RAM enters the guest's stage-2 address space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum PopulateRam {
    /// `"eager"`: every frame is mapped before the VM starts. Memory that seL4 did not zero
    /// (`MAP_RESERVED` RAM outside the kernel's memory) is handed over as found.
    Eager = 0,
    /// `"on_touch"`: the frames holding the guest's images are mapped before the VM starts;
    /// every other frame when the guest first touches it (a stage-2 fault), zeroed first by
    /// capvisor if seL4 did not zero it. Memory the guest never touches is never written:
    /// under QEMU that spares both the zeroing and the host's first-touch cost, so a VM with
    /// RAM the kernel does not manage starts without clearing it. Not for VMs with
    /// passthrough devices: a device's DMA into a frame the guest has not touched yet would
    /// be zeroed away at the first touch.
    OnTouch = 1,
}

/// What an access to unbacked guest-physical memory does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum UnhandledMmio {
    /// `"stop"`: stop the VM and report it.
    Stop = 0,
    /// `"abort"`: inject a synchronous external abort into the guest, as hardware would.
    InjectAbort = 1,
}
