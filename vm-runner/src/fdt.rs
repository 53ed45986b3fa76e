//! The guest's device tree, generated from its configuration.
//!
//! Owns: turning a checked [`VmConfig`] into a flattened device tree (DTB) that describes
//! exactly the machine capvisor gives the guest: RAM, the vCPUs (`enable-method = "psci"`,
//! `reg` = the MPIDR each reports), PSCI 1.0 over `HVC`, the interrupt controller at its
//! guest addresses (a GICv2 distributor and CPU interface, or a GICv3 distributor and
//! redistributor region), the architected timer, each emulated PL011 with its
//! clock, the passthrough devices it knows how to describe, and `/chosen` (command line,
//! console, initrd range). A configuration with `kernel.dtb_path` brings its own tree
//! instead ([`DtbSource::File`]); only `dtb_load_addr` without a path asks for this one.
//!
//! Written with `vm-fdt` (no_std + alloc, so the root task can run it too, on the decoded
//! configuration, when the initrd's length is known). Never touches: guest memory (the
//! caller copies the bytes to `dtb_load_addr`) or the kernel.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use vm_config::{EmulatedKind, GicVersion, GuestRange, PassthroughDevice, VmConfig};
use vm_fdt::FdtWriter;

/// The clock QEMU virt's PL011 runs from (the `apb_pclk` fixed clock).
pub const UART_CLOCK_HZ: u32 = 24_000_000;
/// Bytes of one virtio-mmio transport's registers.
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;

const PHANDLE_GIC: u32 = 1;
const PHANDLE_CLOCK: u32 = 2;

/// `interrupts` cell 0: shared peripheral interrupt.
const GIC_SPI: u32 = 0;
/// `interrupts` cell 0: private peripheral interrupt.
const GIC_PPI: u32 = 1;
/// `interrupts` cell 2 trigger types (`IRQ_TYPE_*` of the GIC binding).
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
/// The architected timer's PPIs, as the binding numbers them (INTID - 16): secure
/// physical, non-secure physical, virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The GIC's maintenance interrupt, as the binding numbers PPIs (INTID 25).
pub const MAINTENANCE_PPI: u32 = 9;

/// Where the guest's device tree comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DtbSource<'c> {
    /// `kernel.dtb_path`: the user's file.
    File(&'c str),
    /// `kernel.dtb_load_addr` without a path: [`generate`].
    Generate,
    /// No device tree.
    None,
}

impl<'c> DtbSource<'c> {
    /// What `config` asks for.
    pub fn of(config: &'c VmConfig) -> Self {
        match &config.dtb {
            Some(d) if !d.path.is_empty() => DtbSource::File(&d.path),
            Some(_) => DtbSource::Generate,
            None => DtbSource::None,
        }
    }
}

/// Why a device tree cannot be generated.
#[derive(PartialEq, Eq, Debug)]
pub enum FdtError {
    /// The VM has no emulated interrupt controller to describe.
    NoInterruptController,
    /// A GICv2 VM without `capvisor.gic_cpu_interface`: the guest would have no GIC CPU
    /// interface.
    NoCpuInterface,
    /// A GICv3 distributor without its redistributor region (emu_type 0x20).
    NoRedistributors,
    /// A passthrough device whose kind the generator cannot tell from its name (it knows
    /// `virtio_mmio@ADDR`); give the VM a `dtb_path` to describe it.
    UnknownPassthrough(String),
    /// A passthrough device named only by a host device-tree path, with no region.
    PassthroughWithoutRegion(String),
    /// The writer refused (a string with NUL, a value too large).
    Writer(vm_fdt::Error),
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtError::NoInterruptController => {
                f.write_str("no emulated interrupt controller (emu_type 0x1 or 0x21) to put in the device tree")
            }
            FdtError::NoRedistributors => {
                f.write_str("a GICv3 distributor without redistributors (emu_type 0x20) to put in the device tree")
            }
            FdtError::NoCpuInterface => f.write_str("no capvisor.gic_cpu_interface to put in the device tree"),
            FdtError::UnknownPassthrough(n) => write!(
                f,
                "passthrough device {n:?}: cannot describe it (known: virtio_mmio@ADDR); give kernel.dtb_path"
            ),
            FdtError::PassthroughWithoutRegion(n) => {
                write!(f, "passthrough device {n:?} has no region to describe; give kernel.dtb_path")
            }
            FdtError::Writer(e) => write!(f, "device tree writer: {e}"),
        }
    }
}

impl core::error::Error for FdtError {}

impl From<vm_fdt::Error> for FdtError {
    fn from(e: vm_fdt::Error) -> Self {
        FdtError::Writer(e)
    }
}

/// `reg` cells for `#address-cells = 2, #size-cells = 2`.
fn reg(ranges: &[GuestRange]) -> Vec<u64> {
    ranges.iter().flat_map(|r| [r.base.0, r.size_bytes]).collect()
}

/// A passthrough device the generator can describe: node name, compatible, registers and
/// GIC `interrupts` cells.
struct Described {
    node: String,
    compatible: &'static str,
    regs: GuestRange,
    irq: Option<u32>,
}

/// The unit address of a node name (`virtio_mmio@a003e00` → `0xa003e00`).
fn unit_address(name: &str) -> Option<u64> {
    let (_, hex) = name.rsplit_once('@')?;
    u64::from_str_radix(hex, 16).ok()
}

fn describe(d: &PassthroughDevice) -> Result<Described, FdtError> {
    let region = d.region.ok_or_else(|| FdtError::PassthroughWithoutRegion(d.name.clone()))?;
    let node_name = d.name.trim_start_matches('/');
    if !(node_name.starts_with("virtio_mmio") || node_name.starts_with("virtio-mmio")) {
        return Err(FdtError::UnknownPassthrough(d.name.clone()));
    }
    // The mapped window is whole pages; the transport is where the unit address says (QEMU
    // virt packs eight 0x200-byte transports into a page), else at the window's base.
    let window = region.guest;
    let base = unit_address(node_name).filter(|a| window.contains_span(*a, VIRTIO_MMIO_SIZE)).unwrap_or(window.base.0);
    let size = VIRTIO_MMIO_SIZE.min(window.end_saturating() - base);
    Ok(Described {
        node: format!("virtio_mmio@{base:x}"),
        compatible: "virtio,mmio",
        regs: GuestRange::new(base, size),
        irq: (d.irq != 0).then_some(d.irq),
    })
}

/// GIC `interrupts` cells for interrupt ID `intid` (an SPI: 32 and up).
fn spi_cells(intid: u32, trigger: u32) -> [u32; 3] {
    [GIC_SPI, intid.saturating_sub(32), trigger]
}

/// The device tree for `config`, with `initrd` (where the initrd was loaded, if any) in
/// `/chosen`.
pub fn generate(config: &VmConfig, initrd: Option<GuestRange>) -> Result<Vec<u8>, FdtError> {
    let version = config.gic_version();
    let find = |kind| config.emulated.iter().find(|d| d.kind == kind).map(|d| d.range);
    let gic_regs = match version {
        GicVersion::V2 => {
            let gicd = find(EmulatedKind::InterruptController).ok_or(FdtError::NoInterruptController)?;
            let gicc = config.capvisor.gic_cpu_interface.ok_or(FdtError::NoCpuInterface)?;
            [gicd, gicc.guest]
        }
        GicVersion::V3 => {
            let gicd = find(EmulatedKind::GicV3Distributor).ok_or(FdtError::NoInterruptController)?;
            [gicd, find(EmulatedKind::GicV3Redistributor).ok_or(FdtError::NoRedistributors)?]
        }
    };
    let passthrough: Vec<Described> = config.passthrough.iter().map(describe).collect::<Result<_, _>>()?;
    let uarts: Vec<_> = config.emulated.iter().filter(|d| d.kind == EmulatedKind::Console).collect();
    let rtcs: Vec<_> = config.emulated.iter().filter(|d| d.kind == EmulatedKind::Rtc).collect();
    let flash: Vec<GuestRange> =
        config.emulated.iter().filter(|d| d.kind == EmulatedKind::CfiFlash).map(|d| d.range).collect();

    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_string("compatible", "linux,dummy-virt")?;
    w.property_string("model", "capvisor")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let chosen = w.begin_node("chosen")?;
    if let Some(cmdline) = &config.cmdline {
        w.property_string("bootargs", cmdline)?;
    }
    if let Some(u) = uarts.first() {
        w.property_string("stdout-path", &format!("/pl011@{:x}", u.range.base.0))?;
    }
    if let Some(rd) = initrd {
        w.property_u64("linux,initrd-start", rd.base.0)?;
        w.property_u64("linux,initrd-end", rd.end_saturating())?;
    }
    w.end_node(chosen)?;

    // Memory the guest cannot write (a firmware's flash image) is not RAM to it.
    for m in config.memory.iter().filter(|m| m.flags.contains(vm_config::MemFlags::WRITE)) {
        let n = w.begin_node(&format!("memory@{:x}", m.range.base.0))?;
        w.property_string("device_type", "memory")?;
        w.property_array_u64("reg", &reg(&[m.range]))?;
        w.end_node(n)?;
    }

    let cpus = w.begin_node("cpus")?;
    let mpidrs: Vec<u64> = (0..usize::from(config.cpu_num)).map(|i| config.mpidr(i)).collect();
    let wide = mpidrs.iter().any(|m| *m > u64::from(u32::MAX));
    w.property_u32("#address-cells", if wide { 2 } else { 1 })?;
    w.property_u32("#size-cells", 0)?;
    for mpidr in &mpidrs {
        let c = w.begin_node(&format!("cpu@{mpidr:x}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string("compatible", "arm,armv8")?;
        w.property_string("enable-method", "psci")?;
        if wide {
            w.property_u64("reg", *mpidr)?;
        } else {
            w.property_u32("reg", *mpidr as u32)?;
        }
        w.end_node(c)?;
    }
    w.end_node(cpus)?;

    let psci = w.begin_node("psci")?;
    w.property_string_list("compatible", vec![String::from("arm,psci-1.0"), String::from("arm,psci-0.2")])?;
    w.property_string("method", "hvc")?;
    w.end_node(psci)?;

    let gic = w.begin_node(&format!("interrupt-controller@{:x}", gic_regs[0].base.0))?;
    w.property_string(
        "compatible",
        match version {
            GicVersion::V2 => "arm,cortex-a15-gic",
            GicVersion::V3 => "arm,gic-v3",
        },
    )?;
    w.property_null("interrupt-controller")?;
    w.property_u32("#interrupt-cells", 3)?;
    w.property_u32("#address-cells", 0)?;
    if version == GicVersion::V3 {
        // One region of redistributors, QEMU's layout; the stride is the architectural
        // default (two 64 KiB frames), so no `redistributor-stride`.
        w.property_u32("#redistributor-regions", 1)?;
        w.property_array_u32("interrupts", &[GIC_PPI, MAINTENANCE_PPI, IRQ_LEVEL_HIGH])?;
    }
    w.property_array_u64("reg", &reg(&gic_regs))?;
    w.property_phandle(PHANDLE_GIC)?;
    w.end_node(gic)?;

    // GICv2 PPIs name the CPUs they go to in bits 8-15 of the flags cell; GICv3's binding
    // has no such mask (affinity routing names CPUs, not a bit each).
    let cpu_mask = match version {
        GicVersion::V2 => ((1u32 << config.cpu_num.min(8)) - 1) << 8,
        GicVersion::V3 => 0,
    };
    let timer = w.begin_node("timer")?;
    w.property_string("compatible", "arm,armv8-timer")?;
    let cells: Vec<u32> = TIMER_PPIS.iter().flat_map(|p| [GIC_PPI, *p, cpu_mask | IRQ_LEVEL_HIGH]).collect();
    w.property_array_u32("interrupts", &cells)?;
    w.property_null("always-on")?;
    w.end_node(timer)?;

    if !uarts.is_empty() || !rtcs.is_empty() {
        let clk = w.begin_node("apb-pclk")?;
        w.property_string("compatible", "fixed-clock")?;
        w.property_u32("#clock-cells", 0)?;
        w.property_u32("clock-frequency", UART_CLOCK_HZ)?;
        w.property_string("clock-output-names", "clk24mhz")?;
        w.property_phandle(PHANDLE_CLOCK)?;
        w.end_node(clk)?;
    }
    for u in &uarts {
        let n = w.begin_node(&format!("pl011@{:x}", u.range.base.0))?;
        w.property_string_list("compatible", vec![String::from("arm,pl011"), String::from("arm,primecell")])?;
        w.property_array_u64("reg", &reg(&[u.range]))?;
        if u.irq != 0 {
            w.property_array_u32("interrupts", &spi_cells(u.irq, IRQ_LEVEL_HIGH))?;
        }
        w.property_array_u32("clocks", &[PHANDLE_CLOCK, PHANDLE_CLOCK])?;
        w.property_string_list("clock-names", vec![String::from("uartclk"), String::from("apb_pclk")])?;
        w.end_node(n)?;
    }

    for r in &rtcs {
        let n = w.begin_node(&format!("pl031@{:x}", r.range.base.0))?;
        w.property_string_list("compatible", vec![String::from("arm,pl031"), String::from("arm,primecell")])?;
        w.property_array_u64("reg", &reg(&[r.range]))?;
        if r.irq != 0 {
            w.property_array_u32("interrupts", &spi_cells(r.irq, IRQ_LEVEL_HIGH))?;
        }
        w.property_u32("clocks", PHANDLE_CLOCK)?;
        w.property_string("clock-names", "apb_pclk")?;
        w.end_node(n)?;
    }

    // One node for every bank, as QEMU virt describes its two: firmware finds its variable
    // store among the banks (EDK2 skips the bank it runs from).
    if let Some(first) = flash.first() {
        let n = w.begin_node(&format!("flash@{:x}", first.base.0))?;
        w.property_string("compatible", "cfi-flash")?;
        w.property_array_u64("reg", &reg(&flash))?;
        w.property_u32("bank-width", crate::devices::cfi_flash::BANK_WIDTH as u32)?;
        w.end_node(n)?;
    }

    for d in &passthrough {
        let n = w.begin_node(&d.node)?;
        w.property_string("compatible", d.compatible)?;
        w.property_array_u64("reg", &reg(&[d.regs]))?;
        if let Some(irq) = d.irq {
            w.property_array_u32("interrupts", &spi_cells(irq, IRQ_EDGE_RISING))?;
        }
        // Guest-physical equals host-physical for passthrough RAM, and QEMU's transports
        // snoop the caches: DMA needs no cache maintenance.
        w.property_null("dma-coherent")?;
        w.end_node(n)?;
    }

    w.end_node(root)?;
    Ok(w.finish()?)
}

#[cfg(test)]
#[path = "fdt_tests.rs"]
mod tests;
