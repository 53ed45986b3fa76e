//! Decoding of a fault message into a typed [`Exit`].
//!
//! First level: the seL4 fault label and its message layout, read by [`sel4::Fault::decode`]
//! (the kernel's fault ABI, generated from its headers). Second level, for VM faults and VCPU
//! faults: the exception class of the syndrome ([`crate::esr`]). [`Exit::decode`] is total:
//! any label, any length, any words give an `Exit`, never a panic; what cannot be understood
//! is [`Exit::Unknown`] or [`Exit::Malformed`], which the handler turns into a stopped VM.
//!
//! This module owns no state and performs no system calls. It never reads message words by
//! index itself: the layouts are `sel4`'s.

use sel4::fault::{Fault, FaultError, label};
use sel4::{Message, Received};
use vm_config::GuestPhysAddr;

use crate::badge::VcpuBadge;
use crate::esr::{DataAbort, Esr, SysRegAccess, ec};

/// The registers an `UnknownSyscall` fault (a guest `HVC`) carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HvcRegs {
    /// `x0`-`x7`: the SMCCC function ID and arguments.
    pub x: [u64; 8],
    /// Address of the `HVC` instruction.
    pub ip: u64,
    /// `SP_EL0`.
    pub sp: u64,
    /// `ELR_EL1` of the thread context.
    pub lr: u64,
    /// Saved PSTATE.
    pub spsr: u64,
    /// `x7` as the kernel read it as a system call number.
    pub syscall: u64,
}

/// Why a vCPU stopped running, decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exit {
    /// A stage-2 data abort: an access to guest-physical memory with no mapping (an emulated
    /// device, or nothing).
    DataAbort {
        /// Faulting PC.
        ip: u64,
        /// Guest-physical address accessed.
        addr: GuestPhysAddr,
        /// The syndrome.
        esr: Esr,
        /// The syndrome's ISS, decoded.
        abort: DataAbort,
    },
    /// A stage-2 instruction abort: the guest executed from unmapped memory.
    InstructionAbort {
        /// Faulting PC.
        ip: u64,
        /// Guest-physical address of the instruction.
        addr: GuestPhysAddr,
        /// The syndrome.
        esr: Esr,
    },
    /// A guest `HVC` (seL4 reports it as an unknown system call, registers included).
    Hvc(HvcRegs),
    /// A guest `HVC` whose `x7` happened to be a valid seL4 system call number: the kernel ran
    /// the call on the guest's (empty) CSpace and reported the failed lookup.
    CapFault {
        /// Restart PC (the `HVC`).
        ip: u64,
        /// The capability address (`x0`, the SMCCC function ID).
        cptr: u64,
    },
    /// A user exception (for a vCPU: a trap with an unknown reason).
    UserException {
        /// Faulting PC.
        ip: u64,
        /// `SP_EL0`.
        sp: u64,
        /// Saved PSTATE.
        spsr: u64,
        /// Exception number (the ESR for a vCPU).
        number: u64,
        /// Exception code.
        code: u64,
    },
    /// `WFI` (`wfe` false) or `WFE`.
    Wfx {
        /// The syndrome.
        esr: Esr,
        /// Whether it was `WFE`.
        wfe: bool,
    },
    /// A trapped `SMC` (seL4 traps all of them when `ALLOW_SMC_CALLS` is off).
    Smc {
        /// The syndrome.
        esr: Esr,
        /// The `SMC` immediate.
        imm: u16,
    },
    /// An `HVC` reported as a VCPU fault (seL4 16 reports them as unknown system calls; kept
    /// for completeness).
    HvcTrap {
        /// The syndrome.
        esr: Esr,
        /// The `HVC` immediate.
        imm: u16,
    },
    /// A trapped `MSR`/`MRS`.
    SysReg {
        /// The syndrome.
        esr: Esr,
        /// The access, decoded.
        access: SysRegAccess,
    },
    /// Any other trap class.
    VcpuOther {
        /// The syndrome.
        esr: Esr,
    },
    /// The guest EOIed an interrupt injected with maintenance requested.
    VgicMaintenance {
        /// The list register, if the kernel could tell.
        lr: Option<u8>,
    },
    /// A virtual PPI fired (the virtual timer, 27); the kernel masked it until acknowledged.
    Vppi {
        /// The PPI's interrupt ID.
        irq: u64,
    },
    /// A fault label capvisor does not handle (including `NullFault`: a plain message).
    Unknown {
        /// The label.
        label: u64,
    },
    /// A known fault label with fewer words than its layout has.
    Malformed {
        /// The label.
        label: u64,
        /// Words present.
        length: usize,
    },
}

impl Exit {
    /// Decodes a fault message.
    pub fn decode(msg: &Message) -> Exit {
        let fault = match Fault::decode(msg.info.label(), msg.words()) {
            Ok(f) => f,
            Err(FaultError::UnknownLabel { label }) => return Exit::Unknown { label },
            Err(FaultError::TooShort { label, length, .. }) => return Exit::Malformed { label, length },
        };
        match fault {
            // A plain message on the fault endpoint: nothing a vCPU sends.
            Fault::Null => Exit::Unknown { label: label::NULL_FAULT },
            Fault::VmFault { ip, addr, prefetch, fsr } => {
                // For a VCPU thread the kernel reports the guest-physical address.
                let (ip, addr, esr) = (ip.get(), GuestPhysAddr(addr.get()), Esr(fsr));
                if prefetch {
                    Exit::InstructionAbort { ip, addr, esr }
                } else {
                    // A syndrome that is not a data abort's has no valid ISS fields: decode it
                    // as "no syndrome" so that nothing is emulated from it.
                    let abort = if matches!(esr.ec(), ec::DABT_LOWER | ec::DABT_SAME) {
                        DataAbort::decode(esr.iss())
                    } else {
                        DataAbort::decode(esr.iss() & !(1 << 24))
                    };
                    Exit::DataAbort { ip, addr, esr, abort }
                }
            }
            Fault::UnknownSyscall { x, fault_ip, sp, lr, spsr, syscall } => {
                Exit::Hvc(HvcRegs { x, ip: fault_ip.get(), sp: sp.get(), lr: lr.get(), spsr, syscall })
            }
            Fault::UserException { fault_ip, sp, spsr, number, code } => {
                Exit::UserException { ip: fault_ip.get(), sp: sp.get(), spsr, number, code }
            }
            // The kernel sends -1 when it could not tell which list register.
            Fault::VgicMaintenance { idx } => Exit::VgicMaintenance { lr: idx.and_then(|i| u8::try_from(i).ok()) },
            Fault::VppiEvent { irq } => Exit::Vppi { irq },
            Fault::CapFault { ip, addr, .. } => Exit::CapFault { ip: ip.get(), cptr: addr.bits() },
            Fault::VcpuFault { hsr } => Self::decode_vcpu_fault(Esr(hsr)),
        }
    }

    /// Second-level dispatch of a VCPU fault by exception class.
    fn decode_vcpu_fault(esr: Esr) -> Exit {
        let iss = esr.iss();
        match esr.ec() {
            // ISS[1:0] TI: 0 WFI, 1 WFE, 2 WFIT, 3 WFET.
            ec::WFX => Exit::Wfx { esr, wfe: iss & 1 != 0 },
            ec::SMC64 => Exit::Smc { esr, imm: iss as u16 },
            ec::HVC64 => Exit::HvcTrap { esr, imm: iss as u16 },
            ec::SYS64 => Exit::SysReg { esr, access: SysRegAccess::decode(iss) },
            _ => Exit::VcpuOther { esr },
        }
    }
}

/// A decoded fault: from which vCPU (`None` if the badge is not a fault badge) and what.
pub fn decode_fault(received: &Received) -> (Option<VcpuBadge>, Exit) {
    (VcpuBadge::from_badge(received.badge), Exit::decode(&received.msg))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::esr::{AccessSize, FaultStatus};
    use sel4::MessageInfo;

    fn msg(label: u64, words: &[u64]) -> Message {
        Message::new(label, words)
    }

    #[test]
    fn data_abort_write_decodes_every_field() {
        // str x2, [x1] at pc 0x4000_1000 to IPA 0x0900_0000: EC 0x24, ISV, SAS 3, SRT 2, SF, WnR.
        let iss = (1 << 24) | (3 << 22) | (2 << 16) | (1 << 15) | (1 << 6) | 0x07;
        let esr = Esr::new(ec::DABT_LOWER, true, iss);
        match Exit::decode(&msg(label::VM_FAULT, &[0x4000_1000, 0x0900_0000, 0, esr.0])) {
            Exit::DataAbort { ip, addr, esr: e, abort } => {
                assert_eq!((ip, addr, e), (0x4000_1000, GuestPhysAddr(0x0900_0000), esr));
                assert!(abort.isv && abort.write && abort.sixty_four);
                assert_eq!((abort.size, abort.srt, abort.status), (AccessSize::Double, 2, FaultStatus::Translation(3)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prefetch_faults_are_instruction_aborts() {
        let esr = Esr::new(ec::IABT_LOWER, true, 0x07);
        assert_eq!(
            Exit::decode(&msg(label::VM_FAULT, &[0x10, 0x10, 1, esr.0])),
            Exit::InstructionAbort { ip: 0x10, addr: GuestPhysAddr(0x10), esr }
        );
    }

    #[test]
    fn a_data_fault_with_a_foreign_syndrome_is_never_emulatable() {
        // ISV set but EC is not a data abort: the ISS means something else.
        let esr = Esr::new(ec::SYS64, true, 1 << 24);
        match Exit::decode(&msg(label::VM_FAULT, &[0, 0, 0, esr.0])) {
            Exit::DataAbort { abort, .. } => assert!(!abort.isv),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_syscall_carries_the_hvc_registers() {
        let words: [u64; 13] = [0x8400_0000, 1, 2, 3, 4, 5, 6, 7, 0x4000_2000, 0x55, 0x66, 0x3c5, 7];
        let Exit::Hvc(r) = Exit::decode(&msg(label::UNKNOWN_SYSCALL, &words)) else { panic!() };
        assert_eq!(r.x, [0x8400_0000, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!((r.ip, r.sp, r.lr, r.spsr, r.syscall), (0x4000_2000, 0x55, 0x66, 0x3c5, 7));
    }

    #[test]
    fn vcpu_faults_dispatch_on_the_exception_class() {
        let wfi = Esr::new(ec::WFX, true, 0);
        assert_eq!(Exit::decode(&msg(label::VCPU_FAULT, &[wfi.0])), Exit::Wfx { esr: wfi, wfe: false });
        let wfe = Esr::new(ec::WFX, true, 1);
        assert_eq!(Exit::decode(&msg(label::VCPU_FAULT, &[wfe.0])), Exit::Wfx { esr: wfe, wfe: true });
        let smc = Esr::new(ec::SMC64, true, 0x1234);
        assert_eq!(Exit::decode(&msg(label::VCPU_FAULT, &[smc.0])), Exit::Smc { esr: smc, imm: 0x1234 });
        let hvc = Esr::new(ec::HVC64, true, 0);
        assert_eq!(Exit::decode(&msg(label::VCPU_FAULT, &[hvc.0])), Exit::HvcTrap { esr: hvc, imm: 0 });
        // MSR ICC_SGI1R_EL1, x5 (S3_0_C12_C11_5), a write.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (5 << 5) | (11 << 1);
        let sys = Esr::new(ec::SYS64, true, iss);
        let Exit::SysReg { access, .. } = Exit::decode(&msg(label::VCPU_FAULT, &[sys.0])) else { panic!() };
        assert_eq!((access.op0, access.op1, access.crn, access.crm, access.op2), (3, 0, 12, 11, 5));
        assert_eq!((access.rt, access.read), (5, false));
        let fp = Esr::new(ec::FP_SIMD, true, 0);
        assert_eq!(Exit::decode(&msg(label::VCPU_FAULT, &[fp.0])), Exit::VcpuOther { esr: fp });
    }

    #[test]
    fn maintenance_index_minus_one_means_unknown() {
        assert_eq!(Exit::decode(&msg(label::VGIC_MAINTENANCE, &[3])), Exit::VgicMaintenance { lr: Some(3) });
        assert_eq!(Exit::decode(&msg(label::VGIC_MAINTENANCE, &[u64::MAX])), Exit::VgicMaintenance { lr: None });
        assert_eq!(Exit::decode(&msg(label::VGIC_MAINTENANCE, &[256])), Exit::VgicMaintenance { lr: None });
    }

    #[test]
    fn vppi_user_exception_and_cap_fault() {
        assert_eq!(Exit::decode(&msg(label::VPPI_EVENT, &[27])), Exit::Vppi { irq: 27 });
        assert_eq!(
            Exit::decode(&msg(label::USER_EXCEPTION, &[1, 2, 3, 4, 5])),
            Exit::UserException { ip: 1, sp: 2, spsr: 3, number: 4, code: 5 }
        );
        assert_eq!(
            Exit::decode(&msg(label::CAP_FAULT, &[0x100, 0x8400_0000, 0, 1, 0, 0])),
            Exit::CapFault { ip: 0x100, cptr: 0x8400_0000 }
        );
    }

    #[test]
    fn short_messages_and_unknown_labels() {
        assert_eq!(Exit::decode(&msg(label::VM_FAULT, &[1, 2, 3])), Exit::Malformed { label: 5, length: 3 });
        assert_eq!(Exit::decode(&msg(label::UNKNOWN_SYSCALL, &[0; 12])), Exit::Malformed { label: 2, length: 12 });
        assert_eq!(Exit::decode(&msg(label::VCPU_FAULT, &[])), Exit::Malformed { label: 7, length: 0 });
        assert_eq!(Exit::decode(&msg(label::NULL_FAULT, &[1])), Exit::Unknown { label: 0 });
        assert_eq!(Exit::decode(&msg(4, &[1, 2, 3])), Exit::Unknown { label: 4 });
        assert_eq!(Exit::decode(&msg(u64::MAX, &[])), Exit::Unknown { label: 0xf_ffff_ffff_ffff });
    }

    /// SplitMix64: a fixed-seed generator, so a failure reproduces.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn random_messages_never_panic() {
        let mut rng = Rng(0x5eed);
        let mut kinds = [0usize; 6];
        for _ in 0..200_000 {
            // Labels biased to the interesting ones, lengths anywhere in 0..=127 (the tag's
            // 7-bit field, past the 32 words a Message holds), words uniformly random.
            let r = rng.next();
            let lbl = if r & 1 == 0 { (r >> 1) % 10 } else { rng.next() };
            let length = (r >> 8) & 0x7f;
            let mut mrs = [0u64; sel4::kernel::MESSAGE_WORDS];
            for m in mrs.iter_mut() {
                *m = rng.next();
            }
            let m = Message { info: MessageInfo::new(lbl, 0, 0, length), mrs };
            let badge = rng.next();
            let (_, exit) = decode_fault(&Received { badge, msg: m });
            kinds[match exit {
                Exit::DataAbort { .. } | Exit::InstructionAbort { .. } => 0,
                Exit::Hvc(_) | Exit::CapFault { .. } | Exit::UserException { .. } => 1,
                Exit::Wfx { .. } | Exit::Smc { .. } | Exit::HvcTrap { .. } | Exit::SysReg { .. } => 2,
                Exit::VcpuOther { .. } | Exit::VgicMaintenance { .. } | Exit::Vppi { .. } => 3,
                Exit::Unknown { .. } => 4,
                Exit::Malformed { .. } => 5,
            }] += 1;
        }
        // The generator reached every kind of outcome, so the loop tested something.
        assert!(kinds.iter().all(|k| *k > 100), "{kinds:?}");
    }
}
