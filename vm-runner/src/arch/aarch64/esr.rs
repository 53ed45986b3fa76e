//! The exception syndrome (`ESR_EL2`) of a guest trap, decoded.
//!
//! The second level of fault dispatch: seL4's fault label says which kind of kernel message
//! arrived, the exception class of the syndrome says what the guest did. Every function here
//! is total over all 64-bit inputs.

use core::fmt;

/// A raw `ESR_EL2` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Esr(pub u64);

impl fmt::Debug for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Esr({:#x}: EC {:#x}, ISS {:#x})", self.0, self.ec(), self.iss())
    }
}

/// Exception classes (`ESR_ELx.EC`) that capvisor tells apart.
pub mod ec {
    /// Unknown reason.
    pub const UNKNOWN: u8 = 0x00;
    /// `WFI` or `WFE` (trapped by `HCR_EL2.TWI`/`TWE`).
    pub const WFX: u8 = 0x01;
    /// FP/SIMD access trapped.
    pub const FP_SIMD: u8 = 0x07;
    /// `HVC` from AArch64.
    pub const HVC64: u8 = 0x16;
    /// `SMC` from AArch64 (trapped by `HCR_EL2.TSC`).
    pub const SMC64: u8 = 0x17;
    /// `MSR`, `MRS` or system instruction from AArch64.
    pub const SYS64: u8 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u8 = 0x20;
    /// Instruction abort without a change of exception level.
    pub const IABT_SAME: u8 = 0x21;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u8 = 0x24;
    /// Data abort without a change of exception level.
    pub const DABT_SAME: u8 = 0x25;
}

impl Esr {
    /// Exception class, bits `[31:26]`.
    pub const fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// Instruction length bit `[25]`: 1 for a 32-bit instruction.
    pub const fn il(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// Instruction-specific syndrome, bits `[24:0]`.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// Builds a syndrome from its fields (for tests and for injected exceptions).
    pub const fn new(ec: u8, il: bool, iss: u32) -> Self {
        Esr(((ec as u64 & 0x3f) << 26) | ((il as u64) << 25) | (iss as u64 & 0x1ff_ffff))
    }
}

/// Access size of a data abort (`ISS.SAS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AccessSize {
    /// 1 byte.
    Byte,
    /// 2 bytes.
    Half,
    /// 4 bytes.
    Word,
    /// 8 bytes.
    Double,
}

impl AccessSize {
    /// From the two-bit `SAS` field.
    pub const fn from_sas(sas: u32) -> Self {
        match sas & 3 {
            0 => AccessSize::Byte,
            1 => AccessSize::Half,
            2 => AccessSize::Word,
            _ => AccessSize::Double,
        }
    }

    /// Bytes accessed.
    pub const fn bytes(self) -> u8 {
        match self {
            AccessSize::Byte => 1,
            AccessSize::Half => 2,
            AccessSize::Word => 4,
            AccessSize::Double => 8,
        }
    }

    /// Mask of the accessed bits.
    pub const fn mask(self) -> u64 {
        match self {
            AccessSize::Byte => 0xff,
            AccessSize::Half => 0xffff,
            AccessSize::Word => 0xffff_ffff,
            AccessSize::Double => u64::MAX,
        }
    }
}

/// The data fault status code (`DFSC`/`IFSC`), classified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FaultStatus {
    /// Translation fault at this level: nothing mapped (the usual MMIO case).
    Translation(u8),
    /// Access flag fault at this level.
    AccessFlag(u8),
    /// Permission fault at this level (e.g. a write to read-only RAM).
    Permission(u8),
    /// Synchronous external abort.
    External,
    /// Alignment fault.
    Alignment,
    /// Anything else, by code.
    Other(u8),
}

impl FaultStatus {
    /// Classifies a 6-bit status code.
    pub const fn from_code(code: u8) -> Self {
        let code = code & 0x3f;
        match code {
            0x04..=0x07 => FaultStatus::Translation(code & 3),
            0x09..=0x0b => FaultStatus::AccessFlag(code & 3),
            0x0d..=0x0f => FaultStatus::Permission(code & 3),
            0x10 => FaultStatus::External,
            0x21 => FaultStatus::Alignment,
            _ => FaultStatus::Other(code),
        }
    }
}

/// The ISS of a data abort (EC 0x24/0x25), field by field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DataAbort {
    /// `ISV` `[24]`: the fields `SAS` to `AR` are valid. Without it the access cannot be
    /// emulated from the syndrome (load/store pair, writeback, SIMD...).
    pub isv: bool,
    /// `SAS` `[23:22]`: access size.
    pub size: AccessSize,
    /// `SSE` `[21]`: a load that sign-extends.
    pub sign_extend: bool,
    /// `SRT` `[20:16]`: the transfer register (31 is `xzr`/`wzr`).
    pub srt: u8,
    /// `SF` `[15]`: the register is 64-bit (`x`), else 32-bit (`w`).
    pub sixty_four: bool,
    /// `AR` `[14]`: acquire/release semantics.
    pub acquire_release: bool,
    /// `FnV` `[10]`: `FAR` is not valid.
    pub far_not_valid: bool,
    /// `EA` `[9]`: external abort type.
    pub external: bool,
    /// `CM` `[8]`: a cache maintenance instruction.
    pub cache_maintenance: bool,
    /// `S1PTW` `[7]`: the fault was on a stage-1 translation table walk.
    pub s1ptw: bool,
    /// `WnR` `[6]`: a write.
    pub write: bool,
    /// `DFSC` `[5:0]`.
    pub status: FaultStatus,
}

impl DataAbort {
    /// Decodes a data abort ISS.
    pub const fn decode(iss: u32) -> Self {
        const fn bit(iss: u32, n: u32) -> bool {
            iss & (1 << n) != 0
        }
        DataAbort {
            isv: bit(iss, 24),
            size: AccessSize::from_sas(iss >> 22),
            sign_extend: bit(iss, 21),
            srt: ((iss >> 16) & 0x1f) as u8,
            sixty_four: bit(iss, 15),
            acquire_release: bit(iss, 14),
            far_not_valid: bit(iss, 10),
            external: bit(iss, 9),
            cache_maintenance: bit(iss, 8),
            s1ptw: bit(iss, 7),
            write: bit(iss, 6),
            status: FaultStatus::from_code((iss & 0x3f) as u8),
        }
    }

    /// The register value a load of `value` leaves in `x<srt>`: sign-extended from the access
    /// size if `SSE`, then truncated to 32 bits for a `w` register.
    pub const fn load_result(&self, value: u64) -> u64 {
        let value = value & self.size.mask();
        let extended = if self.sign_extend {
            let shift = 64 - 8 * self.size.bytes() as u32;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value
        };
        if self.sixty_four { extended } else { extended & 0xffff_ffff }
    }
}

/// A trapped `MSR`/`MRS`/system instruction (EC 0x18).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SysRegAccess {
    /// `Op0` `[21:20]`.
    pub op0: u8,
    /// `Op2` `[19:17]`.
    pub op2: u8,
    /// `Op1` `[16:14]`.
    pub op1: u8,
    /// `CRn` `[13:10]`.
    pub crn: u8,
    /// `Rt` `[9:5]`.
    pub rt: u8,
    /// `CRm` `[4:1]`.
    pub crm: u8,
    /// `Direction` `[0]`: 1 for a read (`MRS`), 0 for a write (`MSR`).
    pub read: bool,
}

impl SysRegAccess {
    /// Decodes an EC 0x18 ISS.
    pub const fn decode(iss: u32) -> Self {
        SysRegAccess {
            op0: ((iss >> 20) & 3) as u8,
            op2: ((iss >> 17) & 7) as u8,
            op1: ((iss >> 14) & 7) as u8,
            crn: ((iss >> 10) & 0xf) as u8,
            rt: ((iss >> 5) & 0x1f) as u8,
            crm: ((iss >> 1) & 0xf) as u8,
            read: iss & 1 != 0,
        }
    }

    /// The register's encoding as `MRS`/`MSR` name it: `op0:op1:CRn:CRm:op2` packed into 16
    /// bits (the same for a read and a write), for tables and for "logged once".
    pub const fn encoding(&self) -> u16 {
        ((self.op0 as u16) << 14)
            | ((self.op1 as u16) << 11)
            | ((self.crn as u16) << 7)
            | ((self.crm as u16) << 3)
            | self.op2 as u16
    }
}

/// System registers a trap names, by [`SysRegAccess::encoding`].
pub mod sysreg {
    /// `op0:op1:CRn:CRm:op2` packed as [`super::SysRegAccess::encoding`] does.
    pub const fn encode(op0: u16, op1: u16, crn: u16, crm: u16, op2: u16) -> u16 {
        (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2
    }
    /// `ICC_SGI1R_EL1` (S3_0_C12_C11_5): generate a Group 1 SGI.
    pub const ICC_SGI1R_EL1: u16 = encode(3, 0, 12, 11, 5);
    /// `ICC_ASGI1R_EL1` (S3_0_C12_C11_6): a Group 1 SGI for the other security state.
    pub const ICC_ASGI1R_EL1: u16 = encode(3, 0, 12, 11, 6);
    /// `ICC_SGI0R_EL1` (S3_0_C12_C11_7): generate a Group 0 SGI.
    pub const ICC_SGI0R_EL1: u16 = encode(3, 0, 12, 11, 7);
    /// `ICC_SRE_EL1` (S3_0_C12_C12_5): system register enable. seL4 16.0.0 leaves
    /// `ICC_SRE_EL2.Enable` clear (gic_v3.c), so on hardware that implements that trap a
    /// guest's every access to it traps; QEMU 7.2 does not trap it (the guest reads SRE as
    /// one itself, `ICC_SRE_EL2.SRE` being set).
    pub const ICC_SRE_EL1: u16 = encode(3, 0, 12, 12, 5);
}

impl fmt::Display for SysRegAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} S{}_{}_C{}_C{}_{} {} x{}",
            if self.read { "MRS" } else { "MSR" },
            self.op0,
            self.op1,
            self.crn,
            self.crm,
            self.op2,
            if self.read { "->" } else { "<-" },
            self.rt
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_known_syndrome() {
        // `ldr w1, [x0]` faulting at stage 2: EC 0x24, IL, ISV, SAS=2 (word), SRT=1,
        // translation fault level 3.
        let esr = Esr(0x9381_0007);
        assert_eq!(esr.ec(), ec::DABT_LOWER);
        assert!(esr.il());
        let d = DataAbort::decode(esr.iss());
        assert!(d.isv && !d.write && !d.sixty_four && !d.sign_extend);
        assert_eq!((d.size, d.srt, d.status), (AccessSize::Word, 1, FaultStatus::Translation(3)));
        assert_eq!(Esr::new(0x24, true, esr.iss()), esr);
    }

    #[test]
    fn every_data_abort_bit_lands_in_its_field() {
        let d = DataAbort::decode(1 << 24);
        assert!(d.isv);
        assert_eq!(DataAbort::decode(3 << 22).size, AccessSize::Double);
        assert!(DataAbort::decode(1 << 21).sign_extend);
        assert_eq!(DataAbort::decode(0x1f << 16).srt, 31);
        assert!(DataAbort::decode(1 << 15).sixty_four);
        assert!(DataAbort::decode(1 << 14).acquire_release);
        assert!(DataAbort::decode(1 << 10).far_not_valid);
        assert!(DataAbort::decode(1 << 9).external);
        assert!(DataAbort::decode(1 << 8).cache_maintenance);
        assert!(DataAbort::decode(1 << 7).s1ptw);
        assert!(DataAbort::decode(1 << 6).write);
        assert_eq!(DataAbort::decode(0x0f).status, FaultStatus::Permission(3));
        assert_eq!(DataAbort::decode(0x10).status, FaultStatus::External);
        assert_eq!(DataAbort::decode(0x3f).status, FaultStatus::Other(0x3f));
    }

    #[test]
    fn loads_extend_as_the_instruction_would() {
        let ldrsb_x = DataAbort { sign_extend: true, sixty_four: true, ..DataAbort::decode(0) };
        assert_eq!(ldrsb_x.load_result(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(ldrsb_x.load_result(0x17f), 0x7f, "only the accessed byte counts");
        let ldrsh_w = DataAbort { sign_extend: true, sixty_four: false, size: AccessSize::Half, ..ldrsb_x };
        assert_eq!(ldrsh_w.load_result(0x8000), 0xffff_8000);
        let ldr_w = DataAbort { size: AccessSize::Word, sixty_four: false, sign_extend: false, ..ldrsb_x };
        assert_eq!(ldr_w.load_result(0xdead_beef_8000_0001), 0x8000_0001);
        let ldr_x = DataAbort { size: AccessSize::Double, sixty_four: true, sign_extend: false, ..ldrsb_x };
        assert_eq!(ldr_x.load_result(u64::MAX), u64::MAX);
        let ldrsw_x = DataAbort { size: AccessSize::Word, sixty_four: true, sign_extend: true, ..ldrsb_x };
        assert_eq!(ldrsw_x.load_result(0x8000_0000), 0xffff_ffff_8000_0000);
    }

    #[test]
    fn sysreg_fields_and_encoding() {
        // MRS x3, CNTPCT_EL0 = S3_3_C14_C0_1: op0 3, op1 3, CRn 14, CRm 0, op2 1.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (3 << 5) | 1;
        let s = SysRegAccess::decode(iss);
        assert_eq!((s.op0, s.op1, s.crn, s.crm, s.op2, s.rt, s.read), (3, 3, 14, 0, 1, 3, true));
        assert_eq!(s.encoding(), (3 << 14) | (3 << 11) | (14 << 7) | 1);
        assert_eq!(alloc::string::ToString::to_string(&s), "MRS S3_3_C14_C0_1 -> x3");
        let w = SysRegAccess::decode(iss & !1);
        assert!(!w.read);
        assert_eq!(w.encoding(), s.encoding());
    }

    #[test]
    fn gic_sysreg_encodings_match_trapped_syndromes() {
        // MSR ICC_SGI1R_EL1, x5 as a GICv3 guest's trap reports it: op0 3, op1 0, CRn 12,
        // CRm 11, op2 5, Rt 5, a write.
        let sgi1r = SysRegAccess::decode((3 << 20) | (5 << 17) | (12 << 10) | (5 << 5) | (11 << 1));
        assert_eq!((sgi1r.encoding(), sgi1r.rt, sgi1r.read), (sysreg::ICC_SGI1R_EL1, 5, false));
        let sgi0r = SysRegAccess::decode((3 << 20) | (7 << 17) | (12 << 10) | (11 << 1));
        assert_eq!(sgi0r.encoding(), sysreg::ICC_SGI0R_EL1);
        let asgi1r = SysRegAccess::decode((3 << 20) | (6 << 17) | (12 << 10) | (11 << 1));
        assert_eq!(asgi1r.encoding(), sysreg::ICC_ASGI1R_EL1);
        // MRS x2, ICC_SRE_EL1 (S3_0_C12_C12_5).
        let sre = SysRegAccess::decode((3 << 20) | (5 << 17) | (12 << 10) | (2 << 5) | (12 << 1) | 1);
        assert_eq!((sre.encoding(), sre.rt, sre.read), (sysreg::ICC_SRE_EL1, 2, true));
        let distinct = [sysreg::ICC_SGI0R_EL1, sysreg::ICC_SGI1R_EL1, sysreg::ICC_ASGI1R_EL1, sysreg::ICC_SRE_EL1];
        assert!(distinct.iter().enumerate().all(|(i, a)| distinct[..i].iter().all(|b| a != b)));
    }

    #[test]
    fn decoders_are_total() {
        // Every value of the 6-bit status and 2-bit size, and the extremes of everything else.
        for code in 0..=0xffu8 {
            let _ = FaultStatus::from_code(code);
        }
        for iss in [0, u32::MAX, 0x1ff_ffff, 0x155_5555, 0xaa_aaaa] {
            let d = DataAbort::decode(iss);
            for v in [0, 1, u64::MAX, 0x8000_0000_0000_0000] {
                let _ = d.load_result(v);
            }
            let _ = SysRegAccess::decode(iss).encoding();
        }
        assert_eq!(Esr(u64::MAX).ec(), 0x3f);
        assert_eq!(Esr(u64::MAX).iss(), 0x1ff_ffff);
    }
}
