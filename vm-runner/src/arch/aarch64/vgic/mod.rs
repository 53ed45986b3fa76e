//! The guest's interrupt controller: an emulated distributor (GICv2, or GICv3 with its
//! redistributors) over one list-register model. Plain state and functions.
//!
//! The guest's CPU interface is the hardware's: under GICv2 the host's virtual CPU interface
//! (GICV) mapped at the guest's GICC; under GICv3 the system registers (`ICC_*` accesses at
//! EL1 reach the `ICV_*` ones in hardware). Only the distributor (and, for GICv3, the
//! redistributors and the SGI registers that trap to EL2) is emulated here. An interrupt
//! reaches the guest by being written into one of its vCPU's list registers
//! (`seL4_ARM_VCPU_InjectIRQ`); seL4 asks for an EOI maintenance interrupt on every
//! injection, so the VMM learns through a `VGICMaintenance` fault which list register the
//! guest finished with.
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
//! Split by what differs: this module is the common core (per-interrupt state, delivery,
//! the list registers, and the bitmap/byte registers GICv2's distributor, GICv3's distributor
//! and GICv3's SGI frame share); [`v2`] and [`v3`] are the two register front ends.
//!
//! Owns the distributor and redistributor registers and the model; performs no system calls:
//! [`Vgic::fill`] returns the [`Injection`]s for the run loop to make.

use alloc::vec;
use alloc::vec::Vec;

pub mod v2;
pub mod v3;

pub use v2::reg;
pub use vm_config::GicVersion;

/// Interrupt IDs 0-15 are SGIs and 16-31 PPIs, banked per vCPU; 32 and up are SPIs.
pub const SPI_BASE: u16 = 32;
/// The virtual timer's PPI.
pub const VTIMER_PPI: u16 = 27;

/// IIDR: implementer ARM (0x43b), product and revision 0.
pub const IIDR_VALUE: u32 = 0x0000_043b;
/// PIDR4-7, PIDR0-3, CIDR0-3 (0xfd0-0xffc) of a GICv2 (architecture revision 2 in PIDR2).
const ID_REGS_V2: [u8; 12] = [0x04, 0, 0, 0, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
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
    /// SPIs: the vCPUs it may go to (GICv2's ITARGETSR; under GICv3 derived from `router`).
    targets: u8,
    /// SPIs under GICv3: GICD_IROUTER as written (affinity, and IRM in bit 31).
    router: u64,
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

/// The distributor (and redistributors) and the list-register model of one VM.
#[derive(Clone, Debug)]
pub struct Vgic {
    version: GicVersion,
    lines: u16,
    ctlr: u32,
    spis: Vec<Irq>,
    banked: Vec<[Irq; 32]>,
    lrs: Vec<Vec<Option<u16>>>,
    /// GICv3: each vCPU's affinity (MPIDR Aff3-Aff0) and whether its redistributor is awake
    /// (GICR_WAKER.ProcessorSleep clear).
    affinity: Vec<u64>,
    awake: Vec<bool>,
}

impl Vgic {
    /// A GICv2 distributor with `lines` interrupt IDs (a multiple of 32, clamped to
    /// 32..=1024), for `cpus` vCPUs (1..=8) each with `list_registers` list registers
    /// (1..=64).
    pub fn new(lines: u16, cpus: u8, list_registers: u8) -> Self {
        let mpidrs: Vec<u64> = (0..u64::from(cpus.clamp(1, 8))).collect();
        Self::with_version(GicVersion::V2, lines, &mpidrs, list_registers)
    }

    /// A GICv3 distributor and one redistributor per vCPU, for vCPUs with affinities
    /// `mpidrs` (1 to 8 of them; extra ones are dropped, none means one at affinity 0).
    /// SPIs start routed to affinity 0.0.0.0 (GICD_IROUTER's value after reset is 0 here).
    pub fn new_v3(lines: u16, mpidrs: &[u64], list_registers: u8) -> Self {
        let mut g = Self::with_version(GicVersion::V3, lines, mpidrs, list_registers);
        let t = g.route(0);
        for s in &mut g.spis {
            s.targets = t;
        }
        g
    }

    fn with_version(version: GicVersion, lines: u16, mpidrs: &[u64], list_registers: u8) -> Self {
        let lines = (lines.clamp(32, 1024) / 32) * 32;
        let mut affinity: Vec<u64> = mpidrs.iter().take(8).map(|m| m & v3::AFFINITY_MASK).collect();
        if affinity.is_empty() {
            affinity.push(0);
        }
        let cpus = affinity.len();
        let lrs = usize::from(list_registers.clamp(1, 64));
        let mut banked = [Irq::default(); 32];
        for sgi in banked.iter_mut().take(16) {
            sgi.edge = true;
        }
        Vgic {
            version,
            lines,
            ctlr: 0,
            spis: vec![Irq::default(); usize::from(lines - SPI_BASE)],
            banked: vec![banked; cpus],
            lrs: vec![vec![None; lrs]; cpus],
            affinity,
            awake: vec![false; cpus],
        }
    }

    /// Which GIC architecture the guest sees.
    pub fn version(&self) -> GicVersion {
        self.version
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

    /// Whether any list register of `vcpu` holds an interrupt (pending, or active until its
    /// EOI's maintenance fault frees it), per the model.
    pub fn holds_any(&self, vcpu: usize) -> bool {
        self.lrs.get(vcpu).is_some_and(|l| l.iter().any(Option::is_some))
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

    /// Makes SGI `id` pending on each vCPU in `targets` (a bit per vCPU): from GICD_SGIR,
    /// or from `ICC_SGI0R_EL1`/`ICC_SGI1R_EL1` when `group` is that register's group (an SGI
    /// configured in the other group at a target is not raised there, as the GIC does).
    fn pend_sgi(&mut self, id: u16, targets: u8, group: Option<bool>) {
        for t in (0..self.cpus()).filter(|t| targets & (1 << t) != 0) {
            if let Some(irq) = self.irq_mut(t, id & 0xf)
                && group.is_none_or(|g| g == irq.group1)
            {
                irq.pending = true;
            }
        }
    }

    /// Whether interrupt `id` of `vcpu` is enabled in the distributor.
    pub fn is_enabled(&self, vcpu: usize, id: u16) -> bool {
        self.irq(vcpu, id).is_some_and(|i| i.enabled)
    }

    /// Whether interrupt `id` of `vcpu` is pending (latched, level, or in a list register).
    pub fn is_pending(&self, vcpu: usize, id: u16) -> bool {
        self.irq(vcpu, id).is_some_and(|i| i.is_pending() || i.in_lr)
    }

    // ---- register emulation: the distributor, whichever version ----

    /// A guest read of `size` bytes at `offset` of the distributor by `vcpu`. Total: unknown
    /// offsets read as 0.
    pub fn read(&self, vcpu: usize, offset: u64, size: u8) -> u64 {
        sized_read(offset, size, |w| match self.version {
            GicVersion::V2 => self.read32_v2(vcpu, w),
            GicVersion::V3 => self.read32_gicd_v3(w),
        })
    }

    /// A guest write of `size` bytes at `offset` of the distributor by `vcpu`. Total:
    /// unknown offsets and read-only registers ignore writes. After a write, call
    /// [`Vgic::fill`] for every vCPU: an enable, priority, target or SGI may have made
    /// something deliverable.
    pub fn write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) {
        sized_write(offset, size, value, |w, v, mask| match self.version {
            GicVersion::V2 => self.write32_v2(vcpu, w, v, mask),
            GicVersion::V3 => self.write32_gicd_v3(w, v, mask),
        })
    }

    // ---- the registers the front ends share ----

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

    /// The per-interrupt registers at the layout GICD and GICR's SGI frame share (IGROUPR
    /// to ICACTIVER, IPRIORITYR, ICFGR), for interrupt IDs in `ids` of `vcpu`. `None`: not one
    /// of them, or an ID outside `ids` (the caller answers RAZ).
    fn read_irq_reg(&self, vcpu: usize, word: u64, ids: core::ops::Range<u16>) -> Option<u32> {
        let (first, kind) = IrqReg::at(word)?;
        if !ids.contains(&first) {
            return None;
        }
        Some(match kind {
            IrqReg::Group => self.bits(vcpu, first, |i| i.group1),
            IrqReg::SetEnable | IrqReg::ClearEnable => self.bits(vcpu, first, |i| i.enabled),
            IrqReg::SetPending | IrqReg::ClearPending => self.bits(vcpu, first, |i| i.is_pending() || i.in_lr),
            IrqReg::SetActive | IrqReg::ClearActive => self.bits(vcpu, first, |i| i.active),
            IrqReg::Priority => self.bytes(vcpu, first, |i| i.priority),
            IrqReg::Config => (0..16u16)
                .filter(|k| self.irq(vcpu, first.saturating_add(*k)).is_some_and(|i| i.edge))
                .fold(0, |acc, k| acc | 2 << (2 * k)),
        })
    }

    /// Writes one of [`Vgic::read_irq_reg`]'s registers. SGIs' configuration is read-only
    /// (always edge); `sgi_pending` says whether ISPENDR/ICPENDR reach the SGIs (GICv3's
    /// redistributor) or not (GICv2: through SGIR and SPENDSGIR only). Returns whether `word`
    /// was one of them (for an ID in `ids`).
    fn write_irq_reg(
        &mut self,
        vcpu: usize,
        word: u64,
        v: u32,
        mask: u32,
        ids: core::ops::Range<u16>,
        sgi_pending: bool,
    ) -> bool {
        let Some((first, kind)) = IrqReg::at(word) else { return false };
        if !ids.contains(&first) {
            return false;
        }
        let no_sgis = |v: u32| if first == 0 && !sgi_pending { v & !0xffff } else { v };
        match kind {
            IrqReg::Group => {
                for b in (0..32u16).filter(|b| mask & (1 << b) != 0) {
                    if let Some(irq) = self.irq_mut(vcpu, first.saturating_add(b)) {
                        irq.group1 = v & (1 << b) != 0;
                    }
                }
            }
            IrqReg::SetEnable => self.set_bits(vcpu, first, v, |i| i.enabled = true),
            IrqReg::ClearEnable => self.set_bits(vcpu, first, v, |i| i.enabled = false),
            IrqReg::SetPending => self.set_bits(vcpu, first, no_sgis(v), |i| i.pending = true),
            // An interrupt already in a list register cannot be taken back; the rest is
            // cleared (a level-sensitive line still high stays pending).
            IrqReg::ClearPending => self.set_bits(vcpu, first, no_sgis(v), |i| i.pending = false),
            IrqReg::SetActive => self.set_bits(vcpu, first, v, |i| i.active = true),
            IrqReg::ClearActive => self.set_bits(vcpu, first, v, |i| i.active = false),
            IrqReg::Priority => self.set_bytes(vcpu, first, v, mask, |i, b| i.priority = b & PRIORITY_MASK),
            // ICFGR0 (SGIs) is read-only: always edge.
            IrqReg::Config if first == 0 => {}
            IrqReg::Config => {
                for k in (0..16u16).filter(|k| mask & (2 << (2 * k)) != 0) {
                    if let Some(irq) = self.irq_mut(vcpu, first.saturating_add(k)) {
                        irq.edge = v & (2 << (2 * k)) != 0;
                    }
                }
            }
        }
        true
    }
}

/// The per-interrupt registers GICD and GICR's SGI frame lay out alike.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum IrqReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
    Priority,
    Config,
}

impl IrqReg {
    /// The register at word-aligned `word` and the interrupt ID of its first field, for the
    /// whole 1024-ID space (the caller limits the IDs).
    fn at(word: u64) -> Option<(u16, IrqReg)> {
        let bitmap =
            |base: u64, kind| (base..base + 0x80).contains(&word).then(|| (Vgic::first_id(word, base, 32), kind));
        bitmap(reg::IGROUPR, IrqReg::Group)
            .or_else(|| bitmap(reg::ISENABLER, IrqReg::SetEnable))
            .or_else(|| bitmap(reg::ICENABLER, IrqReg::ClearEnable))
            .or_else(|| bitmap(reg::ISPENDR, IrqReg::SetPending))
            .or_else(|| bitmap(reg::ICPENDR, IrqReg::ClearPending))
            .or_else(|| bitmap(reg::ISACTIVER, IrqReg::SetActive))
            .or_else(|| bitmap(reg::ICACTIVER, IrqReg::ClearActive))
            .or_else(|| {
                (reg::IPRIORITYR..reg::IPRIORITYR + 0x400)
                    .contains(&word)
                    .then(|| (Vgic::first_id(word, reg::IPRIORITYR, 4), IrqReg::Priority))
            })
            .or_else(|| {
                (reg::ICFGR..reg::ICFGR + 0x100)
                    .contains(&word)
                    .then(|| (Vgic::first_id(word, reg::ICFGR, 16), IrqReg::Config))
            })
    }
}

/// A `size`-byte read at `offset` of 32-bit registers read by `read32` (a word-aligned
/// offset each); 8 bytes are two words.
fn sized_read(offset: u64, size: u8, read32: impl Fn(u64) -> u32) -> u64 {
    if size == 8 {
        let lo = u64::from(read32(offset & !7));
        let hi = u64::from(read32((offset & !7).wrapping_add(4)));
        return lo | hi << 32;
    }
    let word = read32(offset & !3);
    let shift = (offset & 3) * 8;
    let mask = if size >= 4 { u64::from(u32::MAX) } else { (1u64 << (u32::from(size) * 8)) - 1 };
    (u64::from(word) >> shift) & mask
}

/// A `size`-byte write of `value` at `offset` as 32-bit register writes: `write32(word,
/// value, mask)`, the value and the byte lanes written already shifted into place.
fn sized_write(offset: u64, size: u8, value: u64, mut write32: impl FnMut(u64, u32, u32)) {
    if size == 8 {
        write32(offset & !7, value as u32, u32::MAX);
        write32((offset & !7).wrapping_add(4), (value >> 32) as u32, u32::MAX);
        return;
    }
    let shift = (offset & 3) * 8;
    let bytes: u32 = if size >= 4 { u32::MAX } else { (1u32 << (u32::from(size) * 8)) - 1 };
    let mask = bytes.checked_shl(shift as u32).unwrap_or(0);
    let v = (value as u32).checked_shl(shift as u32).unwrap_or(0) & mask;
    write32(offset & !3, v, mask);
}
