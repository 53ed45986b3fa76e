//! Entering the guest's exception vector with a synchronous external abort, computed from
//! its registers: what the hardware does when an access reaches a bus with nothing on it.
//!
//! Pure: the run loop reads `VBAR_EL1` and the register file, calls [`abort_entry`], and
//! writes `ELR_EL1`, `SPSR_EL1`, `ESR_EL1`, the PC and PSTATE. `FAR_EL1` is left alone: the
//! syndrome says it is not valid (`FnV`), because seL4 reports the faulting IPA, not the
//! guest's virtual address.

use crate::action::AbortKind;
use crate::esr::{Esr, ec};

/// Where the guest continues and what its EL1 exception registers hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExceptionEntry {
    /// New PC: the synchronous vector.
    pub pc: u64,
    /// New PSTATE: EL1h with D, A, I, F masked.
    pub pstate: u64,
    /// `ELR_EL1`: the faulting PC.
    pub elr_el1: u64,
    /// `SPSR_EL1`: the PSTATE at the fault.
    pub spsr_el1: u64,
    /// `ESR_EL1`.
    pub esr_el1: u64,
}

/// PSTATE on exception entry to EL1h.
pub const ENTRY_PSTATE: u64 = 0x3c5;
/// Synchronous external abort, not on a table walk (DFSC/IFSC).
pub const FSC_SYNC_EXTERNAL: u32 = 0x10;

/// The exception entry for an abort of `kind` taken by a guest at `pc` with PSTATE `spsr`,
/// whose vector base is `vbar`.
pub fn abort_entry(kind: AbortKind, pc: u64, spsr: u64, vbar: u64) -> ExceptionEntry {
    let mode = spsr & 0x1f;
    // From AArch32 (M[4]), from EL0, from EL1 with SP_EL0 (EL1t), from EL1 with SP_EL1 (EL1h).
    let (offset, same_el) = if mode & 0x10 != 0 {
        (0x600, false)
    } else {
        match mode & 0xf {
            0b0000 => (0x400, false),
            0b0100 => (0x000, true),
            _ => (0x200, true),
        }
    };
    let class = match (kind.instruction, same_el) {
        (true, false) => ec::IABT_LOWER,
        (true, true) => ec::IABT_SAME,
        (false, false) => ec::DABT_LOWER,
        (false, true) => ec::DABT_SAME,
    };
    // FnV (bit 10): FAR not valid; EA (bit 9): external abort; WnR (bit 6) for data aborts.
    let mut iss = FSC_SYNC_EXTERNAL | (1 << 10) | (1 << 9);
    if kind.write && !kind.instruction {
        iss |= 1 << 6;
    }
    ExceptionEntry {
        pc: (vbar & !0x7ff).wrapping_add(offset),
        pstate: ENTRY_PSTATE,
        elr_el1: pc,
        spsr_el1: spsr,
        esr_el1: Esr::new(class, true, iss).0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esr::DataAbort;

    const READ: AbortKind = AbortKind { instruction: false, write: false };

    #[test]
    fn kernel_mode_data_abort_goes_to_the_current_el_spx_vector() {
        let e =
            abort_entry(AbortKind { instruction: false, write: true }, 0x4000_1234, 0x6000_03c5, 0xffff_0000_0008_0800);
        assert_eq!(e.pc, 0xffff_0000_0008_0a00);
        assert_eq!((e.elr_el1, e.spsr_el1, e.pstate), (0x4000_1234, 0x6000_03c5, 0x3c5));
        let esr = Esr(e.esr_el1);
        assert_eq!((esr.ec(), esr.il()), (ec::DABT_SAME, true));
        let d = DataAbort::decode(esr.iss());
        assert!(d.write && d.external && d.far_not_valid && !d.isv);
        assert_eq!(d.status, crate::esr::FaultStatus::External);
    }

    #[test]
    fn vector_offset_and_class_follow_where_the_guest_was() {
        let vbar = 0x8_0000;
        assert_eq!(abort_entry(READ, 0, 0x3c4, vbar).pc, vbar, "EL1t");
        let el0 = abort_entry(READ, 0, 0x0, vbar);
        assert_eq!((el0.pc, Esr(el0.esr_el1).ec()), (vbar + 0x400, ec::DABT_LOWER));
        assert_eq!(abort_entry(READ, 0, 0x10, vbar).pc, vbar + 0x600, "AArch32 EL0");
        let i = abort_entry(AbortKind { instruction: true, write: true }, 0, 0x3c5, vbar);
        assert_eq!(Esr(i.esr_el1).ec(), ec::IABT_SAME);
        assert_eq!(Esr(i.esr_el1).iss() & (1 << 6), 0, "no WnR on instruction aborts");
        // VBAR's low 11 bits are RES0 and ignored; a top-of-memory VBAR wraps, never panics.
        assert_eq!(abort_entry(READ, 0, 0x3c5, 0x8_07ff).pc, 0x8_0200);
        let _ = abort_entry(READ, u64::MAX, u64::MAX, u64::MAX);
    }
}
