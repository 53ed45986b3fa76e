//! GICv2 distributor emulation and the list-register model: plain state and functions.
//!
//! The guest's CPU interface is the hardware's virtual CPU interface (GICV), mapped into the
//! guest; only the distributor (GICD) is emulated here. An interrupt reaches the guest by
//! being written into one of its vCPU's list registers (`seL4_ARM_VCPU_InjectIRQ`); seL4 asks
//! for an EOI maintenance interrupt on every injection, so the VMM learns through a
//! `VGICMaintenance` fault which list register the guest finished with.
//!
//! The list-register model: for each vCPU, which interrupt each list register holds. An
//! interrupt is injected only into a list register the model knows to be free (the kernel
//! refuses only *active* ones and would silently overwrite a pending one). Interrupts that
//! are pending but not in a list register, because they all hold something, are the overflow
//! queue: the distributor's own pending state, drained in priority order (then by ID) into
//! list registers as maintenance frees them. Keeping the queue as pending bits rather than a
//! separate list bounds its memory by the number of interrupt lines and keeps enable,
//! priority and target changes made while an interrupt waits in effect.
//!
//! Owns the distributor registers and the model; performs no system calls: [`Vgic::fill`]
//! returns the [`Injection`]s for the run loop to make.

use alloc::vec;
use alloc::vec::Vec;

/// Interrupt IDs 0-15 are SGIs and 16-31 PPIs, banked per vCPU; 32 and up are SPIs.
pub const SPI_BASE: u16 = 32;
/// The virtual timer's PPI.
pub const VTIMER_PPI: u16 = 27;

/// Distributor register offsets.
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

/// IIDR: implementer ARM (0x43b), product and revision 0.
pub const IIDR_VALUE: u32 = 0x0000_043b;
/// PIDR4-7, PIDR0-3, CIDR0-3 (0xfd0-0xffc) of a GICv2 (architecture revision 2 in PIDR2).
const ID_REGS: [u8; 12] = [0x04, 0, 0, 0, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// Implemented priority bits: 5, as many as a list register carries.
const PRIORITY_MASK: u8 = 0xf8;

/// One interrupt's distributor state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Irq {
    enabled: bool,
    /// Latched pending: an edge, an SGI, a software set, a PPI event.
    pending: bool,
    /// Input level, for level-sensitive lines.
    level: bool,
    active: bool,
    /// A list register holds it.
    in_lr: bool,
    /// ICFGR: edge-triggered.
    edge: bool,
    group1: bool,
    priority: u8,
    /// SPIs: the vCPUs it may go to.
    targets: u8,
}

impl Irq {
    fn is_pending(&self) -> bool {
        self.pending || (!self.edge && self.level)
    }
}

/// An interrupt to write into a list register: one `seL4_ARM_VCPU_InjectIRQ`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Injection {
    /// Index of the vCPU.
    pub vcpu: usize,
    /// List register.
    pub lr: u8,
    /// Interrupt ID.
    pub virq: u16,
    /// Priority in list-register units (0-31: the distributor priority >> 3).
    pub priority: u8,
    /// Group (0 or 1).
    pub group: u8,
}

/// The distributor and the list-register model of one VM.
#[derive(Clone, Debug)]
pub struct Vgic {
    lines: u16,
    ctlr: u32,
    spis: Vec<Irq>,
    banked: Vec<[Irq; 32]>,
    lrs: Vec<Vec<Option<u16>>>,
}

impl Vgic {
    /// A distributor with `lines` interrupt IDs (a multiple of 32, clamped to 32..=1024), for
    /// `cpus` vCPUs (1..=8) each with `list_registers` list registers (1..=64).
    pub fn new(lines: u16, cpus: u8, list_registers: u8) -> Self {
        let lines = (lines.clamp(32, 1024) / 32) * 32;
        let cpus = usize::from(cpus.clamp(1, 8));
        let lrs = usize::from(list_registers.clamp(1, 64));
        let mut banked = [Irq::default(); 32];
        for sgi in banked.iter_mut().take(16) {
            sgi.edge = true;
        }
        Vgic {
            lines,
            ctlr: 0,
            spis: vec![Irq::default(); usize::from(lines - SPI_BASE)],
            banked: vec![banked; cpus],
            lrs: vec![vec![None; lrs]; cpus],
        }
    }

    /// Number of vCPUs.
    pub fn cpus(&self) -> usize {
        self.banked.len()
    }

    /// Interrupt IDs implemented.
    pub fn lines(&self) -> u16 {
        self.lines
    }

    fn irq(&self, vcpu: usize, id: u16) -> Option<&Irq> {
        if id < SPI_BASE {
            self.banked.get(vcpu)?.get(usize::from(id))
        } else {
            self.spis.get(usize::from(id - SPI_BASE))
        }
    }

    fn irq_mut(&mut self, vcpu: usize, id: u16) -> Option<&mut Irq> {
        if id < SPI_BASE {
            self.banked.get_mut(vcpu)?.get_mut(usize::from(id))
        } else {
            self.spis.get_mut(usize::from(id - SPI_BASE))
        }
    }

    fn group_enabled(&self, group1: bool) -> bool {
        self.ctlr & if group1 { 2 } else { 1 } != 0
    }

    /// The vCPU an SPI goes to: the lowest targeted one.
    fn spi_target(&self, irq: &Irq) -> Option<usize> {
        let t = irq.targets & self.cpu_mask();
        (t != 0).then(|| t.trailing_zeros() as usize)
    }

    fn cpu_mask(&self) -> u8 {
        ((1u16 << self.cpus()) - 1) as u8
    }

    fn deliverable(&self, irq: &Irq) -> bool {
        irq.enabled && irq.is_pending() && !irq.in_lr && self.group_enabled(irq.group1)
    }

    /// The overflow queue of `vcpu`: interrupts pending for it, enabled, and not in a list
    /// register, in the order they will be injected.
    pub fn queued(&self, vcpu: usize) -> Vec<u16> {
        let mut v: Vec<(u8, u16)> = Vec::new();
        if let Some(b) = self.banked.get(vcpu) {
            for (id, irq) in b.iter().enumerate() {
                if self.deliverable(irq) {
                    v.push((irq.priority, id as u16));
                }
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            if self.deliverable(irq) && self.spi_target(irq) == Some(vcpu) {
                v.push((irq.priority, SPI_BASE + i as u16));
            }
        }
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Moves queued interrupts of `vcpu` into its free list registers, highest priority
    /// first; returns the injections to make, in order.
    pub fn fill(&mut self, vcpu: usize) -> Vec<Injection> {
        let mut out = Vec::new();
        let queue = self.queued(vcpu);
        let mut next = queue.into_iter();
        while let Some(free) = self.lrs.get(vcpu).and_then(|l| l.iter().position(Option::is_none)) {
            let Some(id) = next.next() else { break };
            let Some(irq) = self.irq_mut(vcpu, id) else { continue };
            irq.in_lr = true;
            // The list register now carries the pending state.
            irq.pending = false;
            let (priority, group) = (irq.priority >> 3, u8::from(irq.group1));
            if let Some(slot) = self.lrs.get_mut(vcpu).and_then(|l| l.get_mut(free)) {
                *slot = Some(id);
            }
            out.push(Injection { vcpu, lr: free as u8, virq: id, priority, group });
        }
        out
    }

    /// The guest finished with list register `lr` (a maintenance fault): frees it and returns
    /// the interrupt it held. A level-sensitive line still high becomes pending again.
    pub fn maintenance(&mut self, vcpu: usize, lr: u8) -> Option<u16> {
        let id = self.lrs.get_mut(vcpu)?.get_mut(usize::from(lr))?.take()?;
        if let Some(irq) = self.irq_mut(vcpu, id) {
            irq.in_lr = false;
            irq.active = false;
        }
        Some(id)
    }

    /// What list register `lr` of `vcpu` holds, per the model.
    pub fn list_register(&self, vcpu: usize, lr: u8) -> Option<u16> {
        self.lrs.get(vcpu)?.get(usize::from(lr)).copied().flatten()
    }

    /// A PPI of `vcpu` fired (the virtual timer's VPPI event).
    pub fn raise_ppi(&mut self, vcpu: usize, id: u16) -> bool {
        match (id, self.irq_mut(vcpu, id)) {
            (16..=31, Some(irq)) => {
                irq.pending = true;
                true
            }
            _ => false,
        }
    }

    /// Sets the input level of SPI `id` (an emulated device's interrupt output). A rising
    /// edge latches pending on an edge-triggered line. Returns the vCPU it would go to.
    pub fn set_spi_level(&mut self, id: u16, level: bool) -> Option<usize> {
        if id < SPI_BASE {
            return None;
        }
        let irq = self.irq_mut(0, id)?;
        if irq.edge && level && !irq.level {
            irq.pending = true;
        }
        irq.level = level;
        let irq = *irq;
        self.spi_target(&irq)
    }

    /// Makes SPI `id` pending (a forwarded host interrupt: the host keeps it masked until the
    /// guest's EOI lets the VMM acknowledge it). Returns the vCPU it would go to.
    pub fn raise_spi(&mut self, id: u16) -> Option<usize> {
        if id < SPI_BASE {
            return None;
        }
        let irq = self.irq_mut(0, id)?;
        irq.pending = true;
        let irq = *irq;
        self.spi_target(&irq)
    }

    /// Whether interrupt `id` of `vcpu` is enabled in the distributor.
    pub fn is_enabled(&self, vcpu: usize, id: u16) -> bool {
        self.irq(vcpu, id).is_some_and(|i| i.enabled)
    }

    /// Whether interrupt `id` of `vcpu` is pending (latched, level, or in a list register).
    pub fn is_pending(&self, vcpu: usize, id: u16) -> bool {
        self.irq(vcpu, id).is_some_and(|i| i.is_pending() || i.in_lr)
    }

    // ---- register emulation ----

    /// A guest read of `size` bytes at `offset` by `vcpu`. Total: unknown offsets read as 0.
    pub fn read(&self, vcpu: usize, offset: u64, size: u8) -> u64 {
        if size == 8 {
            let lo = u64::from(self.read32(vcpu, offset & !7));
            let hi = u64::from(self.read32(vcpu, (offset & !7) + 4));
            return lo | hi << 32;
        }
        let word = self.read32(vcpu, offset & !3);
        let shift = (offset & 3) * 8;
        let mask = if size >= 4 { u64::from(u32::MAX) } else { (1u64 << (u32::from(size) * 8)) - 1 };
        (u64::from(word) >> shift) & mask
    }

    /// A guest write of `size` bytes at `offset` by `vcpu`. Total: unknown offsets and
    /// read-only registers ignore writes. After a write, call [`Vgic::fill`] for every vCPU:
    /// an enable, priority, target or SGI may have made something deliverable.
    pub fn write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) {
        if size == 8 {
            self.write32(vcpu, offset & !7, value as u32, u32::MAX);
            self.write32(vcpu, (offset & !7) + 4, (value >> 32) as u32, u32::MAX);
            return;
        }
        let shift = (offset & 3) * 8;
        let bytes: u32 = if size >= 4 { u32::MAX } else { (1u32 << (u32::from(size) * 8)) - 1 };
        let mask = bytes.checked_shl(shift as u32).unwrap_or(0);
        let v = (value as u32).checked_shl(shift as u32).unwrap_or(0) & mask;
        self.write32(vcpu, offset & !3, v, mask);
    }

    /// Interrupt ID of bit 0 of the bitmap register word at `word` from `base`.
    fn first_id(word: u64, base: u64, ids_per_word: u64) -> u16 {
        (((word - base) / 4) * ids_per_word).min(u64::from(u16::MAX)) as u16
    }

    fn bits(&self, vcpu: usize, first: u16, f: impl Fn(&Irq) -> bool) -> u32 {
        (0..32u16).filter(|b| self.irq(vcpu, first.saturating_add(*b)).is_some_and(&f)).fold(0, |acc, b| acc | 1 << b)
    }

    fn set_bits(&mut self, vcpu: usize, first: u16, value: u32, f: impl Fn(&mut Irq)) {
        for b in (0..32u16).filter(|b| value & (1 << b) != 0) {
            if let Some(irq) = self.irq_mut(vcpu, first.saturating_add(b)) {
                f(irq);
            }
        }
    }

    fn bytes(&self, vcpu: usize, first: u16, f: impl Fn(&Irq) -> u8) -> u32 {
        (0..4u16).fold(0, |acc, i| acc | u32::from(self.irq(vcpu, first.saturating_add(i)).map_or(0, &f)) << (8 * i))
    }

    fn set_bytes(&mut self, vcpu: usize, first: u16, value: u32, mask: u32, f: impl Fn(&mut Irq, u8)) {
        for i in 0..4u16 {
            if (mask >> (8 * i)) & 0xff == 0 {
                continue;
            }
            if let Some(irq) = self.irq_mut(vcpu, first.saturating_add(i)) {
                f(irq, (value >> (8 * i)) as u8);
            }
        }
    }

    fn read32(&self, vcpu: usize, word: u64) -> u32 {
        let lines = u64::from(self.lines);
        let bitmap_end = |base: u64| base + lines / 8;
        match word {
            reg::CTLR => self.ctlr,
            reg::TYPER => u32::from(self.lines / 32 - 1) | ((self.cpus() as u32 - 1) << 5),
            reg::IIDR => IIDR_VALUE,
            w if (reg::IGROUPR..bitmap_end(reg::IGROUPR)).contains(&w) => {
                self.bits(vcpu, Self::first_id(w, reg::IGROUPR, 32), |i| i.group1)
            }
            w if (reg::ISENABLER..bitmap_end(reg::ISENABLER)).contains(&w) => {
                self.bits(vcpu, Self::first_id(w, reg::ISENABLER, 32), |i| i.enabled)
            }
            w if (reg::ICENABLER..bitmap_end(reg::ICENABLER)).contains(&w) => {
                self.bits(vcpu, Self::first_id(w, reg::ICENABLER, 32), |i| i.enabled)
            }
            w if (reg::ISPENDR..bitmap_end(reg::ISPENDR)).contains(&w) => {
                self.bits(vcpu, Self::first_id(w, reg::ISPENDR, 32), |i| i.is_pending() || i.in_lr)
            }
            w if (reg::ICPENDR..bitmap_end(reg::ICPENDR)).contains(&w) => {
                self.bits(vcpu, Self::first_id(w, reg::ICPENDR, 32), |i| i.is_pending() || i.in_lr)
            }
            w if (reg::ISACTIVER..bitmap_end(reg::ISACTIVER)).contains(&w) => {
                self.bits(vcpu, Self::first_id(w, reg::ISACTIVER, 32), |i| i.active)
            }
            w if (reg::ICACTIVER..bitmap_end(reg::ICACTIVER)).contains(&w) => {
                self.bits(vcpu, Self::first_id(w, reg::ICACTIVER, 32), |i| i.active)
            }
            w if (reg::IPRIORITYR..reg::IPRIORITYR + lines).contains(&w) => {
                self.bytes(vcpu, Self::first_id(w, reg::IPRIORITYR, 4), |i| i.priority)
            }
            w if (reg::ITARGETSR..reg::ITARGETSR + 32).contains(&w) => {
                // SGI and PPI targets read as the reading CPU.
                u32::from_ne_bytes([1u8 << (vcpu & 7); 4])
            }
            w if (reg::ITARGETSR + 32..reg::ITARGETSR + lines).contains(&w) => {
                self.bytes(vcpu, Self::first_id(w, reg::ITARGETSR, 4), |i| i.targets)
            }
            w if (reg::ICFGR..reg::ICFGR + lines / 4).contains(&w) => {
                let first = Self::first_id(w, reg::ICFGR, 16);
                (0..16u16)
                    .filter(|k| self.irq(vcpu, first.saturating_add(*k)).is_some_and(|i| i.edge))
                    .fold(0, |acc, k| acc | 2 << (2 * k))
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
                ID_REGS.get(((w - reg::PIDR4) / 4) as usize).copied().map_or(0, u32::from)
            }
            _ => 0,
        }
    }

    fn write32(&mut self, vcpu: usize, word: u64, v: u32, mask: u32) {
        let lines = u64::from(self.lines);
        let bitmap_end = |base: u64| base + lines / 8;
        match word {
            reg::CTLR => self.ctlr = (self.ctlr & !mask) | (v & mask & 3),
            w if (reg::IGROUPR..bitmap_end(reg::IGROUPR)).contains(&w) => {
                let first = Self::first_id(w, reg::IGROUPR, 32);
                for b in (0..32u16).filter(|b| mask & (1 << b) != 0) {
                    if let Some(irq) = self.irq_mut(vcpu, first.saturating_add(b)) {
                        irq.group1 = v & (1 << b) != 0;
                    }
                }
            }
            w if (reg::ISENABLER..bitmap_end(reg::ISENABLER)).contains(&w) => {
                self.set_bits(vcpu, Self::first_id(w, reg::ISENABLER, 32), v, |i| i.enabled = true)
            }
            w if (reg::ICENABLER..bitmap_end(reg::ICENABLER)).contains(&w) => {
                self.set_bits(vcpu, Self::first_id(w, reg::ICENABLER, 32), v, |i| i.enabled = false)
            }
            w if (reg::ISPENDR..bitmap_end(reg::ISPENDR)).contains(&w) => {
                // SGIs are made pending through SGIR or SPENDSGIR only.
                let first = Self::first_id(w, reg::ISPENDR, 32);
                let v = if first == 0 { v & !0xffff } else { v };
                self.set_bits(vcpu, first, v, |i| i.pending = true)
            }
            w if (reg::ICPENDR..bitmap_end(reg::ICPENDR)).contains(&w) => {
                // An interrupt already in a list register cannot be taken back; the rest is
                // cleared (a level-sensitive line still high stays pending).
                let first = Self::first_id(w, reg::ICPENDR, 32);
                let v = if first == 0 { v & !0xffff } else { v };
                self.set_bits(vcpu, first, v, |i| i.pending = false)
            }
            w if (reg::ISACTIVER..bitmap_end(reg::ISACTIVER)).contains(&w) => {
                self.set_bits(vcpu, Self::first_id(w, reg::ISACTIVER, 32), v, |i| i.active = true)
            }
            w if (reg::ICACTIVER..bitmap_end(reg::ICACTIVER)).contains(&w) => {
                self.set_bits(vcpu, Self::first_id(w, reg::ICACTIVER, 32), v, |i| i.active = false)
            }
            w if (reg::IPRIORITYR..reg::IPRIORITYR + lines).contains(&w) => {
                let first = Self::first_id(w, reg::IPRIORITYR, 4);
                self.set_bytes(vcpu, first, v, mask, |i, b| i.priority = b & PRIORITY_MASK)
            }
            w if (reg::ITARGETSR + 32..reg::ITARGETSR + lines).contains(&w) => {
                let first = Self::first_id(w, reg::ITARGETSR, 4);
                let cpus = self.cpu_mask();
                self.set_bytes(vcpu, first, v, mask, |i, b| i.targets = b & cpus)
            }
            w if (reg::ICFGR..reg::ICFGR + lines / 4).contains(&w) && w != reg::ICFGR => {
                // ICFGR0 (SGIs) is read-only: always edge.
                let first = Self::first_id(w, reg::ICFGR, 16);
                for k in (0..16u16).filter(|k| mask & (2 << (2 * k)) != 0) {
                    if let Some(irq) = self.irq_mut(vcpu, first.saturating_add(k)) {
                        irq.edge = v & (2 << (2 * k)) != 0;
                    }
                }
            }
            reg::SGIR => self.sgi(vcpu, v),
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
    fn sgi(&mut self, vcpu: usize, v: u32) {
        let id = (v & 0xf) as u16;
        let all = self.cpu_mask();
        let me = 1u8 << (vcpu & 7);
        let targets = match (v >> 24) & 3 {
            0 => ((v >> 16) & 0xff) as u8 & all,
            1 => all & !me,
            2 => me & all,
            _ => 0,
        };
        for t in (0..self.cpus()).filter(|t| targets & (1 << t) != 0) {
            if let Some(irq) = self.irq_mut(t, id) {
                irq.pending = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
