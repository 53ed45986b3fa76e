//! Fault messages: the labels and message layouts of the kernel at `$SEL4_PREFIX`, and
//! [`Fault`], a fault message decoded.
//!
//! The constants are generated at build time by `sel4-codegen` from the kernel's own C
//! headers (`sel4/sel4_arch/types_gen.h` for the labels, `sel4/sel4_arch/constants.h` and
//! `sel4/shared_types.h` for the layouts), so they follow the configuration the kernel was
//! built with; each one's documentation names the header line it was read from, and
//! [`HEADER_VALUES`] lists them all by C name (a test compiles them against the headers).
//! [`Fault::decode`] is total: any label and any words give a [`Fault`] or a [`FaultError`],
//! never a panic.
//!
//! Owns: the fault ABI and reading a fault message's words. Never touches: the IPC buffer or
//! system calls (the caller hands in the words), or what a fault means to a VMM.

use core::fmt;

use crate::{CPtr, VirtAddr};

pub use crate::generated::fault::{
    HEADER_VALUES, label, user_exception, vcpu_fault, vgic_maintenance, vm_fault, vppi_event,
};

/// `seL4_UnknownSyscall_Msg` (for a VCPU thread: a guest `HVC`), and the reply to it.
pub mod unknown_syscall {
    pub use crate::generated::fault::unknown_syscall::*;

    /// Words of a reply that sets `x0`-`x7` and the fault IP. The kernel writes a reply's
    /// words back in the message's order (X0-X7, FaultIP, SP, LR, SPSR) for as many words as
    /// it has, and resumes the thread at FaultIP.
    pub const REPLY_LENGTH: usize = FAULT_IP + 1;
}

/// `seL4_CapFault_Msg`.
pub mod cap_fault {
    pub use crate::generated::fault::cap_fault::*;

    /// Words every capability fault has (up to the lookup failure type); the kernel sends more,
    /// as many as that type has details.
    pub const MIN_LENGTH: usize = LOOKUP_FAILURE_TYPE + 1;
}

/// Registers `x0`-`x7`, as an unknown system call reports them.
const X_REGISTERS: usize = 8;
const _: () = assert!(unknown_syscall::X7 + 1 - unknown_syscall::X0 == X_REGISTERS);

/// A fault message, decoded. Addresses are as the faulting thread saw them: for a VCPU
/// thread, the guest's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// `seL4_Fault_NullFault`: not a fault (a plain message).
    Null,
    /// `seL4_Fault_CapFault`: a capability lookup failed (for a VCPU thread: a guest `HVC`
    /// whose `x7` is an seL4 system call number, run on the guest's empty CSpace).
    CapFault {
        /// The restart PC.
        ip: VirtAddr,
        /// The capability address that failed to resolve.
        addr: CPtr,
        /// Whether the lookup failed in the receive phase.
        in_recv_phase: bool,
        /// The lookup failure type (`seL4_LookupFailureType`); its details, in the words after
        /// it, are not decoded.
        lookup_failure_type: u64,
    },
    /// `seL4_Fault_UnknownSyscall`: for a VCPU thread, a guest `HVC`.
    UnknownSyscall {
        /// `x0`-`x7`.
        x: [u64; X_REGISTERS],
        /// The address of the instruction (the kernel has stepped back over it).
        fault_ip: VirtAddr,
        /// `SP_EL0`.
        sp: VirtAddr,
        /// `ELR_EL1` as the thread's context holds it.
        lr: VirtAddr,
        /// The saved PSTATE.
        spsr: u64,
        /// The system call number the kernel read (`x7`).
        syscall: u64,
    },
    /// `seL4_Fault_UserException` (for a VCPU thread: a trap with an unknown reason).
    UserException {
        /// The faulting PC.
        fault_ip: VirtAddr,
        /// `SP_EL0`.
        sp: VirtAddr,
        /// The saved PSTATE.
        spsr: u64,
        /// The exception number (for a VCPU thread: the syndrome).
        number: u64,
        /// The exception code.
        code: u64,
    },
    /// `seL4_Fault_VMFault`: an access without a mapping (for a VCPU thread: a stage-2 abort).
    VmFault {
        /// The faulting PC.
        ip: VirtAddr,
        /// The address accessed. For a VCPU thread the kernel has translated the guest's
        /// virtual address through stage 1, so this is the guest-physical address (IPA), an
        /// address in the guest's stage-2 VSpace.
        addr: VirtAddr,
        /// Whether it was an instruction fetch (`seL4_InstructionFault`), not a data access.
        prefetch: bool,
        /// The fault status: at EL2, the whole `ESR_EL2`.
        fsr: u64,
    },
    /// `seL4_Fault_VGICMaintenance`: the guest ended an interrupt injected with maintenance
    /// requested.
    VgicMaintenance {
        /// The list register, or `None` when the kernel could not tell (it sends -1).
        idx: Option<u64>,
    },
    /// `seL4_Fault_VCPUFault`: any other trap to EL2.
    VcpuFault {
        /// `ESR_EL2` of the trap.
        hsr: u64,
    },
    /// `seL4_Fault_VPPIEvent`: a virtual PPI fired; the kernel masks it until acknowledged.
    VppiEvent {
        /// The PPI's interrupt ID.
        irq: u64,
    },
}

/// Why a message is not a [`Fault`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultError {
    /// A label this kernel's faults do not have, or one [`Fault`] does not decode.
    UnknownLabel {
        /// The label.
        label: u64,
    },
    /// Fewer words than the label's layout has.
    TooShort {
        /// The label.
        label: u64,
        /// Words present.
        length: usize,
        /// Words the layout has.
        need: usize,
    },
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::UnknownLabel { label } => write!(f, "message label {label} is not a fault this kernel sends"),
            FaultError::TooShort { label, length, need } => {
                write!(f, "fault label {label} has {need} words, the message {length}")
            }
        }
    }
}

impl Fault {
    /// The words a fault message with `label` has at least, `None` for a label [`decode`]
    /// does not know.
    ///
    /// [`decode`]: Fault::decode
    pub const fn message_length(label: u64) -> Option<usize> {
        Some(match label {
            label::NULL_FAULT => 0,
            label::CAP_FAULT => cap_fault::MIN_LENGTH,
            label::UNKNOWN_SYSCALL => unknown_syscall::LENGTH,
            label::USER_EXCEPTION => user_exception::LENGTH,
            label::VM_FAULT => vm_fault::LENGTH,
            label::VGIC_MAINTENANCE => vgic_maintenance::LENGTH,
            label::VCPU_FAULT => vcpu_fault::LENGTH,
            label::VPPI_EVENT => vppi_event::LENGTH,
            _ => return None,
        })
    }

    /// Decodes the fault message with `label` and message words `words`. Words past the
    /// layout are ignored.
    pub fn decode(label: u64, words: &[u64]) -> Result<Fault, FaultError> {
        let need = Self::message_length(label).ok_or(FaultError::UnknownLabel { label })?;
        if words.len() < need {
            return Err(FaultError::TooShort { label, length: words.len(), need });
        }
        // In bounds: `need` words are present (the default is never used).
        let at = |i: usize| words.get(i).copied().unwrap_or(0);
        let addr = |i: usize| VirtAddr(at(i));
        Ok(match label {
            label::CAP_FAULT => Fault::CapFault {
                ip: addr(cap_fault::IP),
                addr: CPtr::from_bits(at(cap_fault::ADDR)),
                in_recv_phase: at(cap_fault::IN_RECV_PHASE) != 0,
                lookup_failure_type: at(cap_fault::LOOKUP_FAILURE_TYPE),
            },
            label::UNKNOWN_SYSCALL => {
                let mut x = [0; X_REGISTERS];
                for (i, r) in x.iter_mut().enumerate() {
                    *r = at(unknown_syscall::X0 + i);
                }
                Fault::UnknownSyscall {
                    x,
                    fault_ip: addr(unknown_syscall::FAULT_IP),
                    sp: addr(unknown_syscall::SP),
                    lr: addr(unknown_syscall::LR),
                    spsr: at(unknown_syscall::SPSR),
                    syscall: at(unknown_syscall::SYSCALL),
                }
            }
            label::USER_EXCEPTION => Fault::UserException {
                fault_ip: addr(user_exception::FAULT_IP),
                sp: addr(user_exception::SP),
                spsr: at(user_exception::SPSR),
                number: at(user_exception::NUMBER),
                code: at(user_exception::CODE),
            },
            label::VM_FAULT => Fault::VmFault {
                ip: addr(vm_fault::IP),
                addr: addr(vm_fault::ADDR),
                prefetch: at(vm_fault::PREFETCH_FAULT) != 0,
                fsr: at(vm_fault::FSR),
            },
            label::VGIC_MAINTENANCE => {
                let idx = at(vgic_maintenance::IDX);
                Fault::VgicMaintenance { idx: (idx != u64::MAX).then_some(idx) }
            }
            label::VCPU_FAULT => Fault::VcpuFault { hsr: at(vcpu_fault::HSR) },
            label::VPPI_EVENT => Fault::VppiEvent { irq: at(vppi_event::IRQ) },
            // `message_length` knows no other label.
            _ => Fault::Null,
        })
    }

    /// The label of this kind of fault.
    pub const fn label(&self) -> u64 {
        match self {
            Fault::Null => label::NULL_FAULT,
            Fault::CapFault { .. } => label::CAP_FAULT,
            Fault::UnknownSyscall { .. } => label::UNKNOWN_SYSCALL,
            Fault::UserException { .. } => label::USER_EXCEPTION,
            Fault::VmFault { .. } => label::VM_FAULT,
            Fault::VgicMaintenance { .. } => label::VGIC_MAINTENANCE,
            Fault::VcpuFault { .. } => label::VCPU_FAULT,
            Fault::VppiEvent { .. } => label::VPPI_EVENT,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// A message of `length` words, zero but for `fields` (index, value).
    fn words(length: usize, fields: &[(usize, u64)]) -> Vec<u64> {
        let mut w = vec![0; length];
        for &(i, v) in fields {
            w[i] = v;
        }
        w
    }

    #[test]
    fn vm_faults_read_every_field() {
        use vm_fault::*;
        let w = words(LENGTH, &[(IP, 0x4000_1000), (ADDR, 0x0900_0008), (PREFETCH_FAULT, 0), (FSR, 0x9200_0046)]);
        assert_eq!(
            Fault::decode(label::VM_FAULT, &w),
            Ok(Fault::VmFault {
                ip: VirtAddr(0x4000_1000),
                addr: VirtAddr(0x0900_0008),
                prefetch: false,
                fsr: 0x9200_0046
            })
        );
        let w = words(LENGTH, &[(IP, 0x10), (ADDR, 0x10), (PREFETCH_FAULT, 1), (FSR, 0x8200_0007)]);
        assert_eq!(
            Fault::decode(label::VM_FAULT, &w),
            Ok(Fault::VmFault { ip: VirtAddr(0x10), addr: VirtAddr(0x10), prefetch: true, fsr: 0x8200_0007 })
        );
    }

    #[test]
    fn unknown_syscalls_carry_every_register() {
        use unknown_syscall::*;
        let mut fields: Vec<(usize, u64)> = (0..8).map(|i| (X0 + i, 0x8400_0000 + i as u64)).collect();
        fields.extend([(FAULT_IP, 0x4000_2000), (SP, 0x55), (LR, 0x66), (SPSR, 0x3c5), (SYSCALL, 7)]);
        let w = words(LENGTH, &fields);
        assert_eq!(
            Fault::decode(label::UNKNOWN_SYSCALL, &w),
            Ok(Fault::UnknownSyscall {
                x: core::array::from_fn(|i| 0x8400_0000 + i as u64),
                fault_ip: VirtAddr(0x4000_2000),
                sp: VirtAddr(0x55),
                lr: VirtAddr(0x66),
                spsr: 0x3c5,
                syscall: 7,
            })
        );
    }

    #[test]
    fn user_exceptions_and_cap_faults() {
        use user_exception as ue;
        let w = words(ue::LENGTH, &[(ue::FAULT_IP, 1), (ue::SP, 2), (ue::SPSR, 3), (ue::NUMBER, 4), (ue::CODE, 5)]);
        assert_eq!(
            Fault::decode(label::USER_EXCEPTION, &w),
            Ok(Fault::UserException { fault_ip: VirtAddr(1), sp: VirtAddr(2), spsr: 3, number: 4, code: 5 })
        );
        use cap_fault as cf;
        // A missing-capability failure: one detail word (bits left) after the type.
        let w = words(
            cf::BITS_LEFT + 1,
            &[
                (cf::IP, 0x100),
                (cf::ADDR, 0x8400_0000),
                (cf::IN_RECV_PHASE, 1),
                (cf::LOOKUP_FAILURE_TYPE, 2),
                (cf::BITS_LEFT, 64),
            ],
        );
        assert_eq!(
            Fault::decode(label::CAP_FAULT, &w),
            Ok(Fault::CapFault {
                ip: VirtAddr(0x100),
                addr: CPtr::from_bits(0x8400_0000),
                in_recv_phase: true,
                lookup_failure_type: 2
            })
        );
    }

    #[test]
    fn vgic_maintenance_vcpu_faults_and_vppi_events() {
        let vgic = |idx| {
            Fault::decode(label::VGIC_MAINTENANCE, &words(vgic_maintenance::LENGTH, &[(vgic_maintenance::IDX, idx)]))
        };
        assert_eq!(vgic(3), Ok(Fault::VgicMaintenance { idx: Some(3) }));
        assert_eq!(vgic(u64::MAX), Ok(Fault::VgicMaintenance { idx: None }));
        let w = words(vcpu_fault::LENGTH, &[(vcpu_fault::HSR, 0x0400_0000)]);
        assert_eq!(Fault::decode(label::VCPU_FAULT, &w), Ok(Fault::VcpuFault { hsr: 0x0400_0000 }));
        let w = words(vppi_event::LENGTH, &[(vppi_event::IRQ, 27)]);
        assert_eq!(Fault::decode(label::VPPI_EVENT, &w), Ok(Fault::VppiEvent { irq: 27 }));
        assert_eq!(Fault::decode(label::NULL_FAULT, &[]), Ok(Fault::Null));
        assert_eq!(Fault::decode(label::NULL_FAULT, &[1, 2]), Ok(Fault::Null));
    }

    #[test]
    fn short_messages_are_too_short() {
        for (_, l) in HEADER_VALUES.iter().filter(|(name, _)| name.starts_with("seL4_Fault_")) {
            let need = Fault::message_length(*l).unwrap();
            for length in 0..need {
                assert_eq!(
                    Fault::decode(*l, &vec![0; length]),
                    Err(FaultError::TooShort { label: *l, length, need }),
                    "label {l}, {length} words"
                );
            }
            // Longer than the layout is fine: the extra words are ignored.
            assert_eq!(Fault::decode(*l, &vec![0; need + 3]).map(|f| f.label()), Ok(*l));
        }
        assert_eq!(cap_fault::MIN_LENGTH, cap_fault::LOOKUP_FAILURE_TYPE + 1);
        let e = Fault::decode(label::VM_FAULT, &[1, 2]).unwrap_err();
        assert_eq!(
            std::format!("{e}"),
            std::format!("fault label {} has {} words, the message 2", label::VM_FAULT, vm_fault::LENGTH)
        );
    }

    #[test]
    fn every_label_of_this_kernel_decodes_and_nothing_else_does() {
        let labels: Vec<u64> =
            HEADER_VALUES.iter().filter(|(name, _)| name.starts_with("seL4_Fault_")).map(|(_, v)| *v).collect();
        // The eight kinds of a non-MCS hypervisor kernel: a label the kernel adds (a debug
        // exception, a timeout) fails here until `Fault` decodes it.
        assert_eq!(labels.len(), 8, "{labels:?}");
        for l in &labels {
            let f = Fault::decode(*l, &[0; 16]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(f.label(), *l);
        }
        let max = labels.iter().max().copied().unwrap_or(0);
        for l in (0..max + 64).chain([u64::MAX, 1 << 52]).filter(|l| !labels.contains(l)) {
            assert_eq!(Fault::decode(l, &[0; 16]), Err(FaultError::UnknownLabel { label: l }));
            assert_eq!(Fault::message_length(l), None);
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn any_label() -> impl Strategy<Value = u64> {
            prop_oneof![3 => 0u64..12, 1 => any::<u64>()]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

            /// Any label and any words: a fault of that label when there are enough words,
            /// else the reason; never a panic.
            #[test]
            fn decode_is_total(lbl in any_label(), w in proptest::collection::vec(any::<u64>(), 0..130)) {
                match (Fault::decode(lbl, &w), Fault::message_length(lbl)) {
                    (Ok(f), Some(need)) => {
                        prop_assert!(w.len() >= need);
                        prop_assert_eq!(f.label(), lbl);
                    }
                    (Err(FaultError::TooShort { label, length, need }), Some(n)) => {
                        prop_assert_eq!((label, length, need), (lbl, w.len(), n));
                        prop_assert!(length < need);
                    }
                    (Err(FaultError::UnknownLabel { label }), None) => prop_assert_eq!(label, lbl),
                    (r, n) => prop_assert!(false, "{:?} with message_length {:?}", r, n),
                }
            }
        }
    }
}
