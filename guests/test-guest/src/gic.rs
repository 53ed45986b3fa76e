//! The guest's view of its interrupt controller, GICv2 or GICv3, chosen at run time from the
//! distributor's `GICD_PIDR2` (architecture revision 3 or 4: GICv3; anything else, which
//! includes a GICv2 distributor that reads the offset as zero: GICv2), so one binary serves
//! `configs/test-guest.toml` (GICv2) and `configs/test-guest-gicv3.toml` (GICv3).
//!
//! GICv2: the distributor and the memory-mapped CPU interface (GICC: the host's GICV frames),
//! Group 0. GICv3: the distributor with affinity routing, this vCPU's redistributor (woken
//! through `GICR_WAKER`, SGIs and PPIs configured in its SGI frame) and the system-register
//! CPU interface (`ICC_*_EL1`), Group 1; SGIs through `ICC_SGI1R_EL1`, which traps to the VMM.

use core::arch::asm;

use crate::{GICC, GICD, Shared, mmio_read, mmio_write};

/// The redistributor region of QEMU virt (and of configs/test-guest-gicv3.toml).
const GICR: u64 = 0x080a_0000;
const GICR_STRIDE: u64 = 0x2_0000;
const GICR_SGI: u64 = 0x1_0000;

/// 0: not probed yet; 2 or 3: the version.
static VERSION: Shared = Shared::new();

/// Whether the interrupt controller is a GICv3 (probed once).
pub fn is_v3() -> bool {
    if VERSION.get() == 0 {
        let arch = (mmio_read(GICD + 0xffe8) >> 4) & 0xf;
        VERSION.set(if arch == 3 || arch == 4 { 3 } else { 2 });
    }
    VERSION.get() == 3
}

macro_rules! icc_write {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: a GIC CPU interface register of this vCPU; it affects only this program's
        // interrupts.
        unsafe { asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nostack)) };
    }};
}

macro_rules! icc_read {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: as `icc_write`; reading IAR acknowledges the interrupt, which the caller
        // ends with `eoi`.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nostack)) };
        v
    }};
}

/// This vCPU's redistributor: the one whose `GICR_TYPER` affinity is this vCPU's MPIDR's.
fn redistributor() -> Option<u64> {
    let mpidr = sysreg_read!("mpidr_el1");
    let aff = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
    for n in 0..8 {
        let frame = GICR + n * GICR_STRIDE;
        let lo = mmio_read(frame + 0x8);
        if u64::from(mmio_read(frame + 0xc)) == aff {
            return Some(frame);
        }
        if lo & (1 << 4) != 0 {
            break;
        }
    }
    None
}

/// The distributor on, for the group this guest uses (vCPU 0, once).
pub fn enable_distributor() {
    if is_v3() {
        // EnableGrp1 and ARE (read-as-one under capvisor, written as Linux does).
        mmio_write(GICD, (1 << 4) | 2);
    } else {
        mmio_write(GICD, 1);
    }
}

/// This vCPU's CPU interface on (all priorities), and its SGIs and PPIs in `ids` (a bit per
/// interrupt ID 0-31) enabled. Returns false if a GICv3 redistributor cannot be found or
/// does not wake, or the system-register interface cannot be enabled.
pub fn enable_cpu(ids: u32) -> bool {
    if !is_v3() {
        mmio_write(GICD + 0x100, ids);
        mmio_write(GICC + 0x04, 0xff);
        mmio_write(GICC, 1);
        return true;
    }
    let Some(rd) = redistributor() else { return false };
    // Wake the redistributor: clear ProcessorSleep, wait for ChildrenAsleep to clear.
    mmio_write(rd + 0x14, 0);
    let mut tries = 0;
    while mmio_read(rd + 0x14) & (1 << 2) != 0 {
        tries += 1;
        if tries > 1000 {
            return false;
        }
    }
    mmio_write(rd + GICR_SGI + 0x080, u32::MAX);
    mmio_write(rd + GICR_SGI + 0x100, ids);
    // ICC_SRE_EL1.SRE: read as one (set at EL2), or answered by the VMM where the access
    // traps.
    icc_write!("s3_0_c12_c12_5", 0x7);
    if icc_read!("s3_0_c12_c12_5") & 1 == 0 {
        return false;
    }
    icc_write!("s3_0_c4_c6_0", 0xff); // ICC_PMR_EL1
    icc_write!("s3_0_c12_c12_7", 1); // ICC_IGRPEN1_EL1
    true
}

/// Acknowledges the highest-priority pending interrupt: its IAR value (1023: none).
pub fn ack() -> u32 {
    if is_v3() { icc_read!("s3_0_c12_c12_0") as u32 & 0xff_ffff } else { mmio_read(GICC + 0x0c) }
}

/// Ends the interrupt `ack` returned.
pub fn eoi(iar: u32) {
    if is_v3() {
        icc_write!("s3_0_c12_c12_1", u64::from(iar));
    } else {
        mmio_write(GICC + 0x10, iar);
    }
}

/// Sends SGI `id` to the vCPU whose MPIDR affinity is `target` (Aff0 below 16, Aff1-3 0).
pub fn send_sgi(id: u32, target: u64) {
    if is_v3() {
        icc_write!("s3_0_c12_c11_5", (u64::from(id) << 24) | (1 << (target & 0xf)));
    } else {
        // GICD_SGIR: target list filter, the CPU interface numbered as the vCPU index.
        mmio_write(GICD + 0xf00, (1 << (16 + (target & 7))) | id);
    }
}
