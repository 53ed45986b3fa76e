//! The GICv2 distributor's registers (GICD, 4 KiB): the per-interrupt registers of the
//! common core, plus CTLR, TYPER, ITARGETSR, SGIR and the SGI pending bytes, with SGIs and
//! PPIs banked per reading vCPU at word 0 of each bank.
//!
//! Owns only the register decode of a GICv2 distributor; the state is [`Vgic`]'s.

use super::{ID_REGS_V2, Vgic};

/// Distributor register offsets (GICv2; GICv3's distributor shares the per-interrupt ones).
pub mod reg {
    /// Control.
    pub const CTLR: u64 = 0x000;
    /// Type.
    pub const TYPER: u64 = 0x004;
    /// Implementer identification.
    pub const IIDR: u64 = 0x008;
    /// Group registers.
    pub const IGROUPR: u64 = 0x080;
    /// Set-enable.
    pub const ISENABLER: u64 = 0x100;
    /// Clear-enable.
    pub const ICENABLER: u64 = 0x180;
    /// Set-pending.
    pub const ISPENDR: u64 = 0x200;
    /// Clear-pending.
    pub const ICPENDR: u64 = 0x280;
    /// Set-active.
    pub const ISACTIVER: u64 = 0x300;
    /// Clear-active.
    pub const ICACTIVER: u64 = 0x380;
    /// Priorities, a byte per interrupt.
    pub const IPRIORITYR: u64 = 0x400;
    /// Targets, a byte per interrupt.
    pub const ITARGETSR: u64 = 0x800;
    /// Configuration, two bits per interrupt.
    pub const ICFGR: u64 = 0xc00;
    /// Software-generated interrupts.
    pub const SGIR: u64 = 0xf00;
    /// SGI clear-pending, a byte per SGI.
    pub const CPENDSGIR: u64 = 0xf10;
    /// SGI set-pending, a byte per SGI.
    pub const SPENDSGIR: u64 = 0xf20;
    /// Peripheral ID 4, first of the ID registers.
    pub const PIDR4: u64 = 0xfd0;
}

impl Vgic {
    pub(super) fn read32_v2(&self, vcpu: usize, word: u64) -> u32 {
        let lines = u64::from(self.lines);
        if let Some(v) = self.read_irq_reg(vcpu, word, 0..self.lines) {
            return v;
        }
        match word {
            reg::CTLR => self.ctlr,
            reg::TYPER => u32::from(self.lines / 32 - 1) | ((self.cpus() as u32 - 1) << 5),
            reg::IIDR => super::IIDR_VALUE,
            w if (reg::ITARGETSR..reg::ITARGETSR + 32).contains(&w) => {
                // SGI and PPI targets read as the reading CPU.
                u32::from_ne_bytes([1u8 << (vcpu & 7); 4])
            }
            w if (reg::ITARGETSR + 32..reg::ITARGETSR + lines).contains(&w) => {
                self.bytes(vcpu, Self::first_id(w, reg::ITARGETSR, 4), |i| i.targets)
            }
            w if (reg::SPENDSGIR..reg::SPENDSGIR + 16).contains(&w)
                || (reg::CPENDSGIR..reg::CPENDSGIR + 16).contains(&w) =>
            {
                // One byte per SGI of source CPUs; sources are not tracked, pending reads as
                // from CPU 0.
                let first = ((w & 0xf) as u16) & !3;
                self.bytes(vcpu, first, |i| u8::from(i.pending || i.in_lr))
            }
            w if (reg::PIDR4..0x1000).contains(&w) => {
                ID_REGS_V2.get(((w - reg::PIDR4) / 4) as usize).copied().map_or(0, u32::from)
            }
            _ => 0,
        }
    }

    pub(super) fn write32_v2(&mut self, vcpu: usize, word: u64, v: u32, mask: u32) {
        let lines = u64::from(self.lines);
        if self.write_irq_reg(vcpu, word, v, mask, 0..self.lines, false) {
            return;
        }
        match word {
            reg::CTLR => self.ctlr = (self.ctlr & !mask) | (v & mask & 3),
            w if (reg::ITARGETSR + 32..reg::ITARGETSR + lines).contains(&w) => {
                let first = Self::first_id(w, reg::ITARGETSR, 4);
                let cpus = self.cpu_mask();
                self.set_bytes(vcpu, first, v, mask, |i, b| i.targets = b & cpus)
            }
            reg::SGIR => self.sgir(vcpu, v),
            w if (reg::SPENDSGIR..reg::SPENDSGIR + 16).contains(&w) => {
                let first = ((w & 0xf) as u16) & !3;
                self.set_bytes(vcpu, first, v, mask, |i, b| i.pending |= b != 0)
            }
            w if (reg::CPENDSGIR..reg::CPENDSGIR + 16).contains(&w) => {
                let first = ((w & 0xf) as u16) & !3;
                self.set_bytes(vcpu, first, v, mask, |i, b| i.pending &= b == 0)
            }
            _ => {}
        }
    }

    /// A write to GICD_SGIR by `vcpu`.
    fn sgir(&mut self, vcpu: usize, v: u32) {
        let id = (v & 0xf) as u16;
        let all = self.cpu_mask();
        let me = 1u8 << (vcpu & 7);
        let targets = match (v >> 24) & 3 {
            0 => ((v >> 16) & 0xff) as u8 & all,
            1 => all & !me,
            2 => me & all,
            _ => 0,
        };
        self.pend_sgi(id, targets, None);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{IIDR_VALUE, Injection, SPI_BASE, VTIMER_PPI};
    use super::*;
    use alloc::vec;

    const W: u8 = 4;

    /// A distributor as Linux leaves it: enabled, the given interrupts enabled, SPIs to CPU 0.
    fn enabled(lines: u16, cpus: u8, lrs: u8, ids: &[u16]) -> Vgic {
        let mut g = Vgic::new(lines, cpus, lrs);
        g.write(0, reg::CTLR, W, 1);
        for &id in ids {
            for v in 0..usize::from(cpus) {
                g.write(v, reg::ISENABLER + u64::from(id / 32) * 4, W, 1 << (id % 32));
            }
            if id >= SPI_BASE {
                g.write(0, reg::ITARGETSR + u64::from(id), 1, 1);
            }
        }
        g
    }

    #[test]
    fn typer_iidr_and_ids_describe_the_distributor() {
        let g = Vgic::new(128, 2, 4);
        assert_eq!(g.read(0, reg::TYPER, W), 3 | (1 << 5));
        assert_eq!(g.read(0, reg::IIDR, W), u64::from(IIDR_VALUE));
        assert_eq!(g.read(0, 0xfe8, W), 0x2b, "PIDR2: GICv2");
        assert_eq!(g.read(0, 0xff0, W), 0x0d);
        assert_eq!(g.read(0, 0xffc, W), 0xb1);
        assert_eq!(Vgic::new(1020, 8, 4).read(0, reg::TYPER, W), 30 | (7 << 5), "1020 lines round down to 992");
    }

    #[test]
    fn enables_are_set_and_clear_registers_with_banked_word_zero() {
        let mut g = Vgic::new(64, 2, 4);
        g.write(1, reg::ISENABLER, W, 1 << 27);
        assert_eq!(g.read(1, reg::ISENABLER, W), 1 << 27);
        assert_eq!(g.read(0, reg::ISENABLER, W), 0, "PPIs are banked per vCPU");
        g.write(0, reg::ISENABLER + 4, W, 0b1010);
        g.write(0, reg::ISENABLER + 4, W, 0b0001);
        assert_eq!(g.read(1, reg::ISENABLER + 4, W), 0b1011, "SPIs are shared; set-enable only sets");
        g.write(1, reg::ICENABLER + 4, W, 0b0010);
        assert_eq!(g.read(0, reg::ICENABLER + 4, W), 0b1001);
        assert_eq!(g.read(0, reg::ISENABLER + 8, W), 0, "beyond the lines reads as zero");
    }

    #[test]
    fn priorities_and_targets_are_byte_accessible() {
        let mut g = Vgic::new(64, 2, 4);
        g.write(0, reg::IPRIORITYR + 33, 1, 0xa7);
        assert_eq!(g.read(0, reg::IPRIORITYR + 32, W), 0xa0 << 8, "3 low bits not implemented");
        g.write(0, reg::IPRIORITYR + 32, W, 0x1020_3040);
        assert_eq!(g.read(0, reg::IPRIORITYR + 34, 1), 0x20);
        assert_eq!(g.read(0, reg::IPRIORITYR + 32, 2), 0x3040);
        g.write(0, reg::ITARGETSR + 40, W, 0xff03_0201);
        assert_eq!(g.read(1, reg::ITARGETSR + 40, W), 0x0303_0201, "targets beyond 2 vCPUs dropped");
        assert_eq!(g.read(1, reg::ITARGETSR, W), 0x0202_0202, "SGI/PPI targets read as the reader");
        g.write(1, reg::ITARGETSR, W, 0);
        assert_eq!(g.read(1, reg::ITARGETSR, W), 0x0202_0202, "and ignore writes");
    }

    #[test]
    fn icfgr_sgis_are_edge_and_read_only() {
        let mut g = Vgic::new(64, 1, 4);
        assert_eq!(g.read(0, reg::ICFGR, W), 0xaaaa_aaaa);
        g.write(0, reg::ICFGR, W, 0);
        assert_eq!(g.read(0, reg::ICFGR, W), 0xaaaa_aaaa);
        g.write(0, reg::ICFGR + 8, W, 0b10 << 2);
        assert_eq!(g.read(0, reg::ICFGR + 8, W), 0b10 << 2, "SPI 33 edge");
    }

    #[test]
    fn injections_fill_free_list_registers_by_priority_and_overflow_waits() {
        let mut g = enabled(64, 1, 2, &[33, 34, 35]);
        g.write(0, reg::IPRIORITYR + 32, W, 0x00_80_40_a0); // 33: 0x40, 34: 0x80, 35: 0x00
        for id in [33, 34, 35] {
            g.raise_spi(id);
        }
        let inj = g.fill(0);
        assert_eq!(
            inj,
            [
                Injection { vcpu: 0, lr: 0, virq: 35, priority: 0, group: 0 },
                Injection { vcpu: 0, lr: 1, virq: 33, priority: 0x40 >> 3, group: 0 },
            ]
        );
        assert_eq!(g.queued(0), [34], "the overflow");
        assert_eq!(g.fill(0), [], "no free list register");
        assert_eq!(g.maintenance(0, 1), Some(33));
        assert_eq!(g.list_register(0, 1), None);
        assert_eq!(g.fill(0), [Injection { vcpu: 0, lr: 1, virq: 34, priority: 0x80 >> 3, group: 0 }]);
        assert_eq!(g.queued(0), [0u16; 0]);
        assert_eq!(g.maintenance(0, 1), Some(34));
        assert_eq!(g.maintenance(0, 1), None, "already free");
        assert_eq!(g.maintenance(0, 9), None, "no such list register");
        assert_eq!(g.maintenance(5, 0), None, "no such vCPU");
    }

    #[test]
    fn nothing_is_delivered_while_disabled_and_an_interrupt_in_a_list_register_is_not_duplicated() {
        let mut g = Vgic::new(64, 1, 4);
        g.raise_spi(40);
        g.write(0, reg::ITARGETSR + 40, 1, 1);
        assert_eq!(g.fill(0), [], "distributor and interrupt disabled");
        g.write(0, reg::CTLR, W, 1);
        assert_eq!(g.fill(0), [], "interrupt disabled");
        assert!(g.is_pending(0, 40));
        g.write(0, reg::ISENABLER + 4, W, 1 << 8);
        assert_eq!(g.fill(0).len(), 1);
        g.raise_spi(40);
        assert!(g.is_pending(0, 40) && g.queued(0).is_empty(), "pending again, but it is in a list register");
        assert_eq!(g.fill(0), [], "so not injected twice");
        g.maintenance(0, 0);
        assert_eq!(g.fill(0).len(), 1, "delivered again after EOI");
        // Group 1 needs EnableGrp1.
        g.write(0, reg::IGROUPR + 4, W, 1 << 9);
        g.write(0, reg::ISENABLER + 4, W, 1 << 9);
        g.write(0, reg::ITARGETSR + 41, 1, 1);
        g.raise_spi(41);
        assert_eq!(g.fill(0), []);
        g.write(0, reg::CTLR, W, 3);
        assert_eq!(g.fill(0), [Injection { vcpu: 0, lr: 1, virq: 41, priority: 0, group: 1 }]);
    }

    #[test]
    fn level_lines_stay_pending_until_low() {
        let mut g = enabled(64, 1, 4, &[33]);
        assert_eq!(g.set_spi_level(33, true), Some(0));
        assert_eq!(g.fill(0).len(), 1);
        assert_eq!(g.maintenance(0, 0), Some(33));
        assert_eq!(g.fill(0).len(), 1, "still high after EOI: delivered again");
        g.maintenance(0, 0);
        g.set_spi_level(33, false);
        assert_eq!(g.fill(0), []);
        // An edge-triggered line latches on the rising edge only.
        g.write(0, reg::ICFGR + 8, W, 0b10 << 2);
        g.set_spi_level(33, true);
        g.set_spi_level(33, true);
        assert_eq!(g.fill(0).len(), 1);
        g.maintenance(0, 0);
        assert_eq!(g.fill(0), [], "one edge, one interrupt");
    }

    #[test]
    fn spis_go_to_the_lowest_targeted_vcpu_and_untargeted_ones_wait() {
        let mut g = enabled(64, 2, 4, &[]);
        g.write(0, reg::ISENABLER + 4, W, 1 << 2);
        g.raise_spi(34);
        assert_eq!((g.fill(0), g.fill(1)), (vec![], vec![]), "no target yet");
        g.write(0, reg::ITARGETSR + 34, 1, 0b10);
        assert_eq!(g.fill(1).len(), 1);
        assert_eq!(g.raise_spi(7), None, "not an SPI");
        assert_eq!(g.raise_spi(64), None, "beyond the lines");
    }

    #[test]
    fn sgir_target_filters() {
        let mut g = enabled(64, 3, 4, &[1]);
        // Filter 0: the list (CPUs 1 and 2, and a nonexistent 7).
        g.write(0, reg::SGIR, W, (0b1000_0110 << 16) | 1);
        assert_eq!((g.fill(0).len(), g.fill(1).len(), g.fill(2).len()), (0, 1, 1));
        // Filter 1: all but the sender.
        g.write(1, reg::SGIR, W, (1 << 24) | 1);
        assert_eq!(g.queued(1), [0u16; 0], "not to self");
        assert_eq!(g.fill(0)[0].virq, 1);
        // Filter 2: the sender only.
        g.write(2, reg::SGIR, W, (2 << 24) | 1);
        assert!(g.queued(2).is_empty() && g.is_pending(2, 1), "pending again, but its list register is busy");
        assert_eq!(g.maintenance(2, 0), Some(1));
        assert_eq!(g.queued(2), [1], "delivered once the list register frees");
        // Filter 3 is reserved.
        g.write(0, reg::SGIR, W, (3 << 24) | 0xff_0001);
        assert_eq!(g.queued(0), [0u16; 0]);
    }

    #[test]
    fn software_pending_and_active_registers() {
        let mut g = enabled(64, 1, 4, &[33]);
        g.write(0, reg::ISPENDR, W, 0xffff_ffff);
        assert_eq!(g.read(0, reg::ISPENDR, W) & 0xffff, 0, "SGIs not pended through ISPENDR");
        g.write(0, reg::ISPENDR + 4, W, 1 << 1);
        assert_eq!(g.read(0, reg::ISPENDR + 4, W), 1 << 1);
        g.write(0, reg::ICPENDR + 4, W, 1 << 1);
        assert_eq!(g.read(0, reg::ISPENDR + 4, W), 0);
        g.write(0, reg::SPENDSGIR, 1, 1);
        assert_eq!(g.read(0, reg::SPENDSGIR, W), 1);
        g.write(0, reg::CPENDSGIR, 1, 0xff);
        assert_eq!(g.read(0, reg::SPENDSGIR, W), 0);
        g.write(0, reg::ISACTIVER + 4, W, 1 << 3);
        assert_eq!(g.read(0, reg::ICACTIVER + 4, W), 1 << 3);
        g.write(0, reg::ICACTIVER + 4, W, 1 << 3);
        assert_eq!(g.read(0, reg::ISACTIVER + 4, W), 0);
    }

    #[test]
    fn ppis_are_raised_per_vcpu() {
        let mut g = enabled(64, 2, 4, &[VTIMER_PPI]);
        assert!(g.raise_ppi(1, VTIMER_PPI));
        assert!(!g.raise_ppi(1, 40), "not a PPI");
        assert!(!g.raise_ppi(9, VTIMER_PPI), "no such vCPU");
        assert_eq!(g.fill(0), []);
        assert_eq!(g.fill(1), [Injection { vcpu: 1, lr: 0, virq: 27, priority: 0, group: 0 }]);
    }

    #[test]
    fn every_offset_and_width_is_total() {
        let mut g = Vgic::new(1024, 8, 64);
        for off in (0..0x1100u64).step_by(1) {
            for size in [1u8, 2, 4, 8] {
                let _ = g.read(7, off, size);
                g.write(7, off, size, 0xffff_ffff_ffff_ffff);
                g.write(9, off, size, 0x5555_5555_5555_5555);
            }
        }
        for v in 0..8 {
            let _ = g.fill(v);
        }
        let _ = g.read(0, u64::MAX, 4);
        g.write(0, u64::MAX - 2, 4, 1);
    }
}
