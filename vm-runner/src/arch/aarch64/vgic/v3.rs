//! The GICv3 front end: the distributor (GICD, 64 KiB) with affinity routing always on
//! (`ARE` reads as one and cannot be cleared, one security state: `DS` reads as one),
//! one redistributor per vCPU (RD_base and SGI_base, 64 KiB each, [`REDIST_STRIDE`] apart,
//! in vCPU order), and the SGI registers of the system-register CPU interface, which trap to
//! EL2 (`HCR_EL2.IMO` is set for a seL4 VCPU) and reach the VMM as VCPU faults.
//!
//! With affinity routing the distributor's registers for interrupt IDs 0-31 read as zero
//! and ignore writes: SGIs and PPIs are configured in each vCPU's SGI_base frame, which lays
//! the per-interrupt registers out as the distributor's word 0. SPIs go where
//! `GICD_IROUTER` says: the vCPU with that affinity, or the lowest vCPU for IRM
//! (1 of N); an affinity that names no vCPU leaves the SPI pending and undelivered, as a
//! GIC does for a route to no PE.
//!
//! Owns only the register decode; the state is [`Vgic`]'s.

use super::{Vgic, reg, sized_read, sized_write};

/// MPIDR's affinity fields: Aff3 (bits 39:32), Aff2, Aff1, Aff0 (bits 23:0).
pub const AFFINITY_MASK: u64 = 0xff_00ff_ffff;
/// Bytes of the distributor's window.
pub const GICD_BYTES: u64 = 0x1_0000;
/// Bytes of one vCPU's redistributor (RD_base then SGI_base).
pub const REDIST_STRIDE: u64 = vm_config::GICR_BYTES_PER_CPU;
/// Offset of SGI_base in a redistributor.
pub const SGI_BASE: u64 = 0x1_0000;

/// Distributor registers of GICv3 beyond [`reg`]'s shared ones.
pub mod gicd {
    /// Second type register (no extended SPIs, no virtual LPIs: zero).
    pub const TYPER2: u64 = 0x00c;
    /// Routing of SPI n: a 64-bit register at `IROUTER + 8 * n`.
    pub const IROUTER: u64 = 0x6000;
    /// `GICD_CTLR.ARE` (affinity routing; `ARE_NS` in a two-security-state view).
    pub const CTLR_ARE: u32 = 1 << 4;
    /// `GICD_CTLR.DS`: one security state.
    pub const CTLR_DS: u32 = 1 << 6;
    /// `GICD_IROUTER.Interrupt_Routing_Mode`: any one participating PE.
    pub const IROUTER_IRM: u64 = 1 << 31;
}

/// Redistributor registers.
pub mod gicr {
    /// Control (no LPIs: zero).
    pub const CTLR: u64 = 0x0000;
    /// Implementer identification.
    pub const IIDR: u64 = 0x0004;
    /// Type (64 bits): affinity, processor number, `Last`.
    pub const TYPER: u64 = 0x0008;
    /// Power management: `ProcessorSleep` (bit 1) and `ChildrenAsleep` (bit 2).
    pub const WAKER: u64 = 0x0014;
    /// `GICR_WAKER.ProcessorSleep`.
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    /// `GICR_WAKER.ChildrenAsleep`.
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
    /// `GICR_TYPER.Last`: the last redistributor of the region.
    pub const TYPER_LAST: u64 = 1 << 4;
}

/// PIDR4-7, PIDR0-3, CIDR0-3 (0xffd0-0xfffc of GICD and of RD_base) of a GICv3
/// (architecture revision 3 in PIDR2).
const ID_REGS_V3: [u8; 12] = [0x04, 0, 0, 0, 0x92, 0xb4, 0x3b, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// Offset of the first ID register in a 64 KiB frame.
const ID_REGS_AT: u64 = 0xffd0;

fn id_register(word: u64) -> Option<u32> {
    let i = usize::try_from(word.checked_sub(ID_REGS_AT)? / 4).ok()?;
    ID_REGS_V3.get(i).map(|b| u32::from(*b))
}

/// Which SGI-generating system register a trapped `MSR` wrote.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SgiRegister {
    /// `ICC_SGI0R_EL1`: a Group 0 SGI.
    Sgi0,
    /// `ICC_SGI1R_EL1`: a Group 1 SGI.
    Sgi1,
    /// `ICC_ASGI1R_EL1`: a Group 1 SGI for the other security state; the guest has only one.
    Asgi1,
}

/// The vCPUs (a bit each) an `ICC_SGI*R_EL1` value `v` written by vCPU `sender` names,
/// among vCPUs with affinities `affinity`: with IRM (bit 40) every vCPU but the sender;
/// else those whose Aff3.Aff2.Aff1 match and whose Aff0 is `RS * 16` plus a bit set in
/// TargetList. Affinities that name no vCPU name nothing.
pub fn sgi_targets(v: u64, sender: usize, affinity: &[u64]) -> u8 {
    let field = |shift: u32| (v >> shift) & 0xff;
    let irm = v & (1 << 40) != 0;
    let upper = (field(48) << 32) | (field(32) << 16) | (field(16) << 8);
    let range_selector = (v >> 44) & 0xf;
    let list = v & 0xffff;
    let mut out = 0u8;
    for (i, aff) in affinity.iter().enumerate().take(8) {
        let hit = if irm {
            i != sender
        } else {
            let aff0 = aff & 0xff;
            aff & !0xff == upper && aff0 >> 4 == range_selector && list & (1 << (aff0 & 0xf)) != 0
        };
        if hit {
            out |= 1 << i;
        }
    }
    out
}

impl Vgic {
    /// The vCPUs (a bit each) an SPI routed by `router` may go to.
    pub(super) fn route(&self, router: u64) -> u8 {
        if router & gicd::IROUTER_IRM != 0 {
            return self.cpu_mask();
        }
        let want = router & AFFINITY_MASK;
        self.affinity.iter().position(|a| *a == want).map_or(0, |i| 1 << i)
    }

    pub(super) fn read32_gicd_v3(&self, word: u64) -> u32 {
        if let Some(v) = self.read_irq_reg(0, word, super::SPI_BASE..self.lines) {
            return v;
        }
        let lines = u64::from(self.lines);
        match word {
            reg::CTLR => (self.ctlr & 3) | gicd::CTLR_ARE | gicd::CTLR_DS,
            // ITLinesNumber, CPUNumber, IDbits = 9 (10-bit INTIDs), A3V (Aff3 routable).
            reg::TYPER => u32::from(self.lines / 32 - 1) | ((self.cpus() as u32 - 1) << 5) | (9 << 19) | (1 << 24),
            reg::IIDR => super::IIDR_VALUE,
            w if (gicd::IROUTER + 8 * 32..gicd::IROUTER + 8 * lines).contains(&w) => {
                let id = ((w - gicd::IROUTER) / 8) as u16;
                let router = self.irq(0, id).map_or(0, |i| i.router);
                if w & 4 == 0 { router as u32 } else { (router >> 32) as u32 }
            }
            w => id_register(w).unwrap_or(0),
        }
    }

    pub(super) fn write32_gicd_v3(&mut self, word: u64, v: u32, mask: u32) {
        if self.write_irq_reg(0, word, v, mask, super::SPI_BASE..self.lines, false) {
            return;
        }
        let lines = u64::from(self.lines);
        match word {
            reg::CTLR => self.ctlr = (self.ctlr & !mask) | (v & mask & 3),
            w if (gicd::IROUTER + 8 * 32..gicd::IROUTER + 8 * lines).contains(&w) => {
                let id = ((w - gicd::IROUTER) / 8) as u16;
                let shift = if w & 4 == 0 { 0 } else { 32 };
                let Some(old) = self.irq(0, id).map(|i| i.router) else { return };
                let lanes = u64::from(mask) << shift;
                let router = ((old & !lanes) | ((u64::from(v) << shift) & lanes)) & (AFFINITY_MASK | gicd::IROUTER_IRM);
                let targets = self.route(router);
                if let Some(irq) = self.irq_mut(0, id) {
                    irq.router = router;
                    irq.targets = targets;
                }
            }
            _ => {}
        }
    }

    /// A guest read of `size` bytes at `offset` of the redistributor region (vCPU `n`'s
    /// redistributor at `n * REDIST_STRIDE`). Total: offsets past the last one, and unknown
    /// registers, read as 0.
    pub fn read_redist(&self, offset: u64, size: u8) -> u64 {
        sized_read(offset, size, |w| self.read32_gicr(w))
    }

    /// A guest write to the redistributor region. Total, as [`Vgic::read_redist`]; call
    /// [`Vgic::fill`] for the frame's vCPU afterwards.
    pub fn write_redist(&mut self, offset: u64, size: u8, value: u64) {
        sized_write(offset, size, value, |w, v, mask| self.write32_gicr(w, v, mask))
    }

    /// The vCPU whose redistributor holds `offset` of the region, and the offset in it.
    pub fn redist_frame(&self, offset: u64) -> Option<(usize, u64)> {
        let n = usize::try_from(offset / REDIST_STRIDE).ok().filter(|n| *n < self.cpus())?;
        Some((n, offset % REDIST_STRIDE))
    }

    fn read32_gicr(&self, word: u64) -> u32 {
        let Some((n, off)) = self.redist_frame(word) else { return 0 };
        if off >= SGI_BASE {
            return self.read_irq_reg(n, off - SGI_BASE, 0..super::SPI_BASE).unwrap_or(0);
        }
        match off {
            gicr::IIDR => super::IIDR_VALUE,
            w if w == gicr::TYPER || w == gicr::TYPER + 4 => {
                let typer = self.redist_typer(n);
                if w == gicr::TYPER { typer as u32 } else { (typer >> 32) as u32 }
            }
            gicr::WAKER => {
                if self.awake.get(n).copied().unwrap_or(false) {
                    0
                } else {
                    gicr::WAKER_PROCESSOR_SLEEP | gicr::WAKER_CHILDREN_ASLEEP
                }
            }
            w => id_register(w).unwrap_or(0),
        }
    }

    fn write32_gicr(&mut self, word: u64, v: u32, mask: u32) {
        let Some((n, off)) = self.redist_frame(word) else { return };
        if off >= SGI_BASE {
            self.write_irq_reg(n, off - SGI_BASE, v, mask, 0..super::SPI_BASE, true);
            return;
        }
        if off == gicr::WAKER
            && mask & gicr::WAKER_PROCESSOR_SLEEP != 0
            && let Some(a) = self.awake.get_mut(n)
        {
            *a = v & gicr::WAKER_PROCESSOR_SLEEP == 0;
        }
    }

    /// GICR_TYPER of vCPU `n`'s redistributor: its affinity in bits 63:32 (Aff3.Aff2.Aff1.Aff0),
    /// its processor number in 23:8, `Last` on the last one; no LPIs.
    pub fn redist_typer(&self, n: usize) -> u64 {
        let a = self.affinity.get(n).copied().unwrap_or(0);
        let value = ((a >> 32) & 0xff) << 24 | (a & 0xff_ffff);
        let last = if n + 1 == self.cpus() { gicr::TYPER_LAST } else { 0 };
        value << 32 | ((n as u64 & 0xffff) << 8) | last
    }

    /// Whether vCPU `n`'s redistributor is awake (`GICR_WAKER.ProcessorSleep` cleared).
    pub fn redist_awake(&self, n: usize) -> bool {
        self.awake.get(n).copied().unwrap_or(false)
    }

    /// A trapped write of `value` to SGI register `which` by vCPU `sender`: the SGI is made
    /// pending on its targets. Returns the targets (a bit per vCPU) to fill; `ICC_ASGI1R_EL1`
    /// names the other security state, which this guest does not have: nothing.
    pub fn write_sgi(&mut self, sender: usize, which: SgiRegister, value: u64) -> u8 {
        let group1 = match which {
            SgiRegister::Sgi0 => false,
            SgiRegister::Sgi1 => true,
            SgiRegister::Asgi1 => return 0,
        };
        let targets = sgi_targets(value, sender, &self.affinity);
        let id = ((value >> 24) & 0xf) as u16;
        self.pend_sgi(id, targets, Some(group1));
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GicVersion, Injection, VTIMER_PPI};
    use super::*;

    const W: u8 = 4;
    const SGI: u64 = SGI_BASE;

    /// Three vCPUs at affinities 0.0.0.0, 0.0.0.1 and 1.0.2.0 (Aff3 1, Aff1 2).
    fn gic() -> Vgic {
        Vgic::new_v3(128, &[0, 1, (1 << 32) | 0x200], 4)
    }

    fn sgi1r(aff3: u64, aff2: u64, aff1: u64, rs: u64, list: u64, intid: u64, irm: bool) -> u64 {
        (aff3 << 48) | (u64::from(irm) << 40) | (rs << 44) | (aff2 << 32) | (intid << 24) | (aff1 << 16) | list
    }

    #[test]
    fn distributor_identifies_as_v3_with_affinity_routing() {
        let mut g = gic();
        assert_eq!(g.version(), GicVersion::V3);
        assert_eq!(g.read(0, 0xffe8, W), 0x3b, "PIDR2: GICv3");
        let typer = g.read(0, reg::TYPER, W);
        assert_eq!(typer & 0x1f, 3, "128 lines");
        assert_eq!((typer >> 19) & 0x1f, 9, "10-bit INTIDs");
        assert_eq!(g.read(0, reg::CTLR, W), u64::from(gicd::CTLR_ARE | gicd::CTLR_DS));
        g.write(0, reg::CTLR, W, 0);
        assert_eq!(g.read(0, reg::CTLR, W), u64::from(gicd::CTLR_ARE | gicd::CTLR_DS), "ARE cannot be cleared");
        g.write(0, reg::CTLR, W, 0x13);
        assert_eq!(g.read(0, reg::CTLR, W) & 3, 3);
        assert_eq!(g.read(0, gicd::TYPER2, W), 0);
    }

    #[test]
    fn distributor_word_zero_is_raz_wi_and_spis_are_shared() {
        let mut g = gic();
        g.write(1, reg::ISENABLER, W, u64::from(u32::MAX));
        assert_eq!(g.read(1, reg::ISENABLER, W), 0, "SGI/PPI enables live in the redistributor");
        assert!(!g.is_enabled(1, VTIMER_PPI));
        g.write(0, reg::IPRIORITYR + 24, W, 0xa0a0_a0a0);
        assert_eq!(g.read(0, reg::IPRIORITYR + 24, W), 0);
        g.write(2, reg::ISENABLER + 4, W, 0b101);
        assert_eq!(g.read(0, reg::ISENABLER + 4, W), 0b101);
        g.write(0, reg::ITARGETSR + 40, W, 0xff);
        assert_eq!(g.read(0, reg::ITARGETSR + 40, W), 0, "ITARGETSR is RAZ/WI with ARE");
    }

    #[test]
    fn irouter_routes_spis_by_affinity() {
        let mut g = gic();
        g.write(0, reg::CTLR, W, 2);
        g.write(0, reg::IGROUPR + 4, W, u64::from(u32::MAX));
        g.write(0, reg::ISENABLER + 4, W, 1 << 8);
        let at = |id: u64| gicd::IROUTER + 8 * id;
        assert_eq!(g.read(0, at(40), 8), 0, "reset: affinity 0");
        assert_eq!(g.raise_spi(40), Some(0));
        let _ = g.fill(0);
        // Aff3 1, Aff1 2: vCPU 2, written as two 32-bit halves.
        g.write(0, at(41), W, 0x200);
        g.write(0, at(41) + 4, W, 1);
        assert_eq!(g.read(0, at(41), 8), (1 << 32) | 0x200);
        g.write(0, reg::ISENABLER + 4, W, 1 << 9);
        assert_eq!(g.raise_spi(41), Some(2));
        assert_eq!(g.fill(2), [Injection { vcpu: 2, lr: 0, virq: 41, priority: 0, group: 1 }]);
        // A 64-bit write naming no vCPU: pending, delivered nowhere.
        g.write(0, at(42), 8, 0x0000_0000_0007_0000);
        g.write(0, reg::ISENABLER + 4, W, 1 << 10);
        assert_eq!(g.raise_spi(42), None);
        assert!((0..3).all(|v| g.fill(v).is_empty()) && g.is_pending(0, 42));
        // IRM: the lowest vCPU; reserved bits are not kept.
        g.write(0, at(42), 8, u64::MAX);
        assert_eq!(g.read(0, at(42), 8), AFFINITY_MASK | gicd::IROUTER_IRM);
        assert_eq!(g.fill(0).first().map(|i| i.virq), Some(42));
        assert_eq!(g.read(0, at(20), 8), 0, "no IROUTER for IDs below 32");
        assert_eq!(g.read(0, at(128), 8), 0, "nor beyond the lines");
    }

    #[test]
    fn redistributors_report_affinity_order_and_last() {
        let g = gic();
        assert_eq!(g.read_redist(gicr::TYPER, 8), 0);
        assert_eq!(g.read_redist(REDIST_STRIDE + gicr::TYPER, 8), (1 << 32) | (1 << 8));
        let t2 = g.read_redist(2 * REDIST_STRIDE + gicr::TYPER, 8);
        assert_eq!(t2 >> 32, (1 << 24) | 0x200, "Aff3 in bits 63:56, Aff1 in 47:40");
        assert_eq!(t2 & 0xffff_ffff, (2 << 8) | gicr::TYPER_LAST);
        assert_eq!(g.read_redist(2 * REDIST_STRIDE + gicr::TYPER + 4, W), t2 >> 32, "upper half alone");
        assert_eq!(g.read_redist(2 * REDIST_STRIDE + 0xffe8, W), 0x3b);
        assert_eq!(g.read_redist(3 * REDIST_STRIDE + gicr::TYPER, 8), 0, "past the last redistributor");
    }

    #[test]
    fn waker_wakes_one_redistributor() {
        let mut g = gic();
        let sleep = u64::from(gicr::WAKER_PROCESSOR_SLEEP | gicr::WAKER_CHILDREN_ASLEEP);
        assert_eq!(g.read_redist(REDIST_STRIDE + gicr::WAKER, W), sleep);
        g.write_redist(REDIST_STRIDE + gicr::WAKER, W, 0);
        assert_eq!(g.read_redist(REDIST_STRIDE + gicr::WAKER, W), 0);
        assert!(g.redist_awake(1) && !g.redist_awake(0));
        g.write_redist(REDIST_STRIDE + gicr::WAKER, W, 2);
        assert!(!g.redist_awake(1));
    }

    #[test]
    fn sgi_frame_configures_banked_interrupts_of_its_vcpu() {
        let mut g = gic();
        g.write(0, reg::CTLR, W, 3);
        let f1 = REDIST_STRIDE + SGI;
        g.write_redist(f1 + reg::ISENABLER, W, 1 << VTIMER_PPI);
        assert!(g.is_enabled(1, VTIMER_PPI) && !g.is_enabled(0, VTIMER_PPI));
        assert_eq!(g.read_redist(f1 + reg::ISENABLER, W), 1 << VTIMER_PPI);
        g.write_redist(f1 + reg::IPRIORITYR + 24, W, 0x0000_a000);
        assert_eq!(g.read_redist(f1 + reg::IPRIORITYR + 24, W), 0xa000);
        assert_eq!(g.read_redist(f1 + reg::ICFGR, W), 0xaaaa_aaaa, "SGIs edge");
        g.write_redist(f1 + reg::ICFGR, W, 0);
        assert_eq!(g.read_redist(f1 + reg::ICFGR, W), 0xaaaa_aaaa, "and read-only");
        g.write_redist(f1 + reg::ICFGR + 4, W, 0b10 << 22);
        assert_eq!(g.read_redist(f1 + reg::ICFGR + 4, W), 0b10 << 22, "PPI 27 edge");
        // The SGI frame's pending registers reach SGIs.
        g.write_redist(f1 + reg::ISENABLER, W, 1 << 3);
        g.write_redist(f1 + reg::ISPENDR, W, 1 << 3);
        assert_eq!(g.read_redist(f1 + reg::ISPENDR, W), 1 << 3);
        assert_eq!(g.fill(1).first().map(|i| i.virq), Some(3));
        // Past the banked IDs, the frame has nothing.
        assert_eq!(g.read_redist(f1 + reg::ISENABLER + 4, W), 0);
        g.write_redist(f1 + reg::ISENABLER + 4, W, 1);
        assert!(!g.is_enabled(0, 32));
    }

    #[test]
    fn sgi1r_targets_by_affinity_range_and_irm() {
        let aff = [0, 1, (1 << 32) | 0x200, 0x11];
        assert_eq!(sgi_targets(sgi1r(0, 0, 0, 0, 0b11, 1, false), 0, &aff), 0b0011);
        assert_eq!(sgi_targets(sgi1r(1, 0, 2, 0, 0b1, 1, false), 0, &aff), 0b0100, "Aff3.Aff2.Aff1 must match");
        assert_eq!(sgi_targets(sgi1r(0, 0, 0, 1, 1 << 1, 1, false), 0, &aff), 0b1000, "RS 1: Aff0 16 + bit");
        assert_eq!(sgi_targets(sgi1r(0, 0, 0, 0, 1 << 1 | 1 << 0, 1, true), 1, &aff), 0b1101, "IRM: all but self");
        assert_eq!(sgi_targets(sgi1r(0, 5, 0, 0, 0xffff, 1, false), 0, &aff), 0, "no vCPU at that affinity");
        assert_eq!(sgi_targets(u64::MAX, 9, &aff), 0b1111, "IRM from a sender that is no vCPU");
    }

    #[test]
    fn sgis_are_raised_in_the_targets_group_and_filled() {
        let mut g = Vgic::new_v3(64, &[0, 1], 4);
        g.write(0, reg::CTLR, W, 3);
        for n in 0..2 {
            g.write_redist(n * REDIST_STRIDE + SGI + reg::IGROUPR, W, u64::from(u32::MAX));
            g.write_redist(n * REDIST_STRIDE + SGI + reg::ISENABLER, W, 0xffff);
        }
        assert_eq!(g.write_sgi(0, SgiRegister::Sgi1, sgi1r(0, 0, 0, 0, 0b10, 5, false)), 0b10);
        assert_eq!(g.fill(1), [Injection { vcpu: 1, lr: 0, virq: 5, priority: 0, group: 1 }]);
        assert_eq!(g.fill(0), []);
        // SGI0R raises only where the SGI is in group 0.
        g.write_sgi(1, SgiRegister::Sgi0, sgi1r(0, 0, 0, 0, 0b01, 6, false));
        assert!(!g.is_pending(0, 6));
        assert_eq!(g.write_sgi(1, SgiRegister::Asgi1, sgi1r(0, 0, 0, 0, 0b01, 6, false)), 0);
        assert!(!g.is_pending(0, 6));
    }

    #[test]
    fn every_offset_and_width_is_total() {
        let mut g = Vgic::new_v3(1024, &[0, 1, 2, 3, 4, 5, 6, 7, 8], 64);
        assert_eq!(g.cpus(), 8);
        for off in (0..0x1_0000u64).step_by(3).chain(0xff00..0x1_0100) {
            for size in [1u8, 2, 4, 8] {
                let _ = g.read(7, off, size);
                g.write(7, off, size, u64::MAX);
                g.write(9, off, size, 0x5555_5555_5555_5555);
            }
        }
        for off in (0..9 * REDIST_STRIDE).step_by(7) {
            for size in [1u8, 2, 4, 8] {
                let _ = g.read_redist(off, size);
                g.write_redist(off, size, u64::MAX);
            }
        }
        for v in 0..9 {
            let _ = g.fill(v);
            let _ = g.write_sgi(v, SgiRegister::Sgi1, u64::MAX);
        }
        let _ = g.read_redist(u64::MAX, 8);
        g.write_redist(u64::MAX - 2, 8, 1);
        let _ = g.read(0, u64::MAX, 8);
        assert_eq!(Vgic::new_v3(64, &[], 4).cpus(), 1, "no affinities: one vCPU");
    }
}
