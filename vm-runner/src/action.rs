//! What the run loop must do after an exit, and what it costs in system calls.
//!
//! [`crate::vm::VmState::handle_exit`] decides; the run loop performs. An [`Action`] is what
//! happens to the vCPU that exited ([`Next`]) plus side [`Effects`] (interrupts to inject,
//! PPIs and host interrupts to acknowledge, vCPUs to start, wake or suspend). Every action
//! knows the exact kernel entries performing it takes ([`Action::ops`]), so the counters and
//! the tests pin the cost of each exit kind.
//!
//! # Why these costs (seL4 16.0.0, non-MCS, AArch64 hyp)
//!
//! What the kernel allows, read from its source:
//! - Replying to a `VMFault` or `VCPUFault` resumes the thread at its fault PC (the faulting
//!   instruction) and copies **no** message registers into it (`Arch_handleFaultReply`
//!   returns true and nothing else). So an emulated load or store needs
//!   `TCB_WriteRegisters` to move the PC past the instruction, and for a load to set the
//!   destination register.
//! - `TCB_WriteRegisters` writes a *prefix* of the register list `pc, sp, spsr, x0-x8,
//!   x16-x18, x29, x30, x9-x15, x19-x28, tpidr_el0, tpidrro_el0`. Writing only the PC takes
//!   one word and needs nothing else; writing `x<n>` needs every register before it in that
//!   order, including `sp` and `spsr`, which a `VMFault` message does not carry. So a load
//!   into `x<n>` needs `TCB_ReadRegisters` first.
//! - Replying to an `UnknownSyscall` fault (how seL4 reports a guest `HVC`) copies up to 12
//!   words of the reply into `x0-x7, pc, sp, lr, spsr`: the PSCI result and the advanced PC
//!   travel in the `ReplyRecv` itself.
//! - A plain `Recv` deletes a pending reply capability; a thread left blocked on a reply is
//!   restarted by `TCB_Resume` (or `TCB_WriteRegisters` with resume) at its fault PC.
//!
//! Hence, counting every kernel entry from the fault's arrival until the VMM waits for the
//! next one (the closing `ReplyRecv` counts once):
//!
//! | exit | entries | which |
//! |---|---|---|
//! | MMIO read into `x<n>` | 3 | `TCB_ReadRegisters`, `TCB_WriteRegisters` (pc and `x<n>`), `ReplyRecv` |
//! | MMIO read into `xzr` | 2 | `TCB_WriteRegisters` (pc only), `ReplyRecv` |
//! | MMIO write from `x<n>` | 3 | `TCB_ReadRegisters` (the value), `TCB_WriteRegisters` (pc only), `ReplyRecv` |
//! | MMIO write of `xzr` | 2 | `TCB_WriteRegisters` (pc only), `ReplyRecv` |
//! | PSCI over `HVC` | 1 | `ReplyRecv` carrying x0-x7 and pc |
//! | PSCI over `SMC` | 3 | `TCB_ReadRegisters` (args, pc), `TCB_WriteRegisters` (pc, x0), `ReplyRecv` |
//! | `WFE` | 1 | `ReplyRecv`: the return to the guest is an exception return, which sets the event register, so the re-executed `WFE` completes |
//! | `WFI` | 4 (1) | no reply: `VCPU_ReadRegs` of `CNTV_CTL` and `CNTV_CVAL`, a `Call` to the timer server, `Recv` (only the `Recv` while the timer PPI awaits acknowledgement); a later `TCB_Resume` restarts the `WFI`, which completes once an interrupt is pending |
//! | ignored `MSR`/`MRS` | 3 | `TCB_ReadRegisters` (a VCPU fault carries no PC), `TCB_WriteRegisters`, `ReplyRecv` |
//! | GICv3 SGI (`MSR ICC_SGI1R_EL1`) | 3 | `TCB_ReadRegisters` (the value and the PC), `TCB_WriteRegisters` (pc only), `ReplyRecv`, plus a `VCPU_InjectIRQ` per target given the SGI now (a parked target: a `TCB_Resume` too) |
//! | virtual timer (`VPPIEvent`) | 2 | `VCPU_InjectIRQ`, `ReplyRecv` |
//! | maintenance, timer EOI | 2-3 | `VCPU_AckVPPI`, (`VCPU_InjectIRQ` if something waits), `ReplyRecv` |
//!
//! plus one `VCPU_InjectIRQ` per interrupt an access raises. libvmm takes 3 for every MMIO
//! exit (read, write, reply). The target of at most 2 for an MMIO read is not
//! reachable on an unmodified seL4 16.0.0: the destination register cannot be written without
//! the `sp` and `spsr` that precede it, and no fault message carries them. Writes meet their
//! target of 3, and the common `str wzr` and reads into `xzr` take 2. A kernel change that
//! let a `VMFault` reply carry registers as the `UnknownSyscall` reply does would make every
//! MMIO exit a single `ReplyRecv` plus, for writes, one `TCB_ReadRegisters`.
//!
//! Performing a one-word (pc-only) `TCB_WriteRegisters` needs a prefix-length register
//! write in the kernel trait; [`Next::registers_to_write`] says which words and how many.

use crate::devices::cfi_flash::FlashOp;
use alloc::vec::Vec;
use core::fmt;

use sel4::fault::unknown_syscall;
use sel4::{Message, Op, UserContext};

use crate::devices::vgic::Injection;
use crate::esr::SysRegAccess;
use crate::vm::UntouchedFrame;

/// Why a VM stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StopReason {
    /// PSCI `SYSTEM_OFF`.
    PoweredOff,
    /// PSCI `SYSTEM_RESET` with `on_reset = "stop"` (with `"reboot"`, the default, the run
    /// loop builds the VM again instead).
    Reset,
    /// PSCI `SYSTEM_RESET` after `reboot_limit` reboots.
    RebootLimit,
    /// PSCI `SYSTEM_RESET`, and building the VM again failed.
    RebootFailed,
    /// Every vCPU called `CPU_OFF`.
    AllCpusOff,
    /// An access to guest-physical memory with no RAM and no device, under the `"stop"`
    /// policy, or one that cannot be emulated (no syndrome, stage-1 walk).
    Abort {
        /// Faulting PC.
        ip: u64,
        /// Guest-physical address.
        addr: u64,
        /// Instruction fetch rather than data access.
        instruction: bool,
        /// A write.
        write: bool,
    },
    /// A trap capvisor does not handle (its syndrome).
    UnhandledTrap {
        /// Faulting PC, when known.
        ip: u64,
        /// The syndrome (or exception number).
        esr: u64,
    },
    /// A fault message capvisor cannot decode, or one that makes no sense for a vCPU.
    BadFault {
        /// The fault label.
        label: u64,
    },
    /// The run loop did not supply registers an exit needed (a VMM bug, not the guest's).
    MissingRegisters,
    /// A frame of on-demand RAM could not be zeroed or mapped at the guest's first touch.
    PopulateFailed {
        /// Its guest-physical base.
        gpa: u64,
    },
    /// Someone at the console ended the run (`Ctrl-A x`).
    EndedFromConsole,
}

impl StopReason {
    /// Exit status for the whole system when this is the last VM: 0 for a clean power-off.
    pub const fn status(&self) -> u8 {
        match self {
            StopReason::PoweredOff | StopReason::AllCpusOff => 0,
            StopReason::Reset | StopReason::RebootLimit => 0,
            StopReason::RebootFailed => 7,
            StopReason::Abort { .. } => 2,
            StopReason::UnhandledTrap { .. } => 3,
            StopReason::BadFault { .. } => 4,
            StopReason::MissingRegisters => 5,
            StopReason::PopulateFailed { .. } => 6,
            // As a shell reports a command ended by Ctrl-C (128 + SIGINT).
            StopReason::EndedFromConsole => 130,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::PoweredOff => f.write_str("powered off"),
            StopReason::Reset => f.write_str("reset"),
            StopReason::RebootLimit => f.write_str("reboot limit reached"),
            StopReason::RebootFailed => f.write_str("reset, and building the VM again failed"),
            StopReason::AllCpusOff => f.write_str("all vCPUs off"),
            StopReason::Abort { ip, addr, instruction, write } => write!(
                f,
                "{} at {addr:#x} (pc {ip:#x}) with no RAM or device",
                if *instruction {
                    "instruction fetch"
                } else if *write {
                    "write"
                } else {
                    "read"
                }
            ),
            StopReason::UnhandledTrap { ip, esr } => write!(f, "unhandled trap, ESR {esr:#x} at pc {ip:#x}"),
            StopReason::BadFault { label } => write!(f, "undecodable fault (label {label})"),
            StopReason::MissingRegisters => f.write_str("VMM error: registers not supplied"),
            StopReason::PopulateFailed { gpa } => {
                write!(f, "VMM error: RAM at {gpa:#x} could not be populated at its first touch")
            }
            StopReason::EndedFromConsole => f.write_str("ended from the console (Ctrl-A x)"),
        }
    }
}

/// A synchronous external abort to deliver to the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AbortKind {
    /// An instruction abort (else a data abort).
    pub instruction: bool,
    /// A write (data aborts).
    pub write: bool,
}

/// What happens to the vCPU that exited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Next {
    /// Reply: the vCPU continues where it was interrupted (`VPPIEvent`, maintenance).
    Resume,
    /// Continue at `pc` (past the trapping instruction), nothing else changed.
    Advance {
        /// The new PC.
        pc: u64,
    },
    /// Set `x<reg>` (0-30) and continue at `pc`.
    SetRegister {
        /// Register number.
        reg: u8,
        /// Its new value.
        value: u64,
        /// The new PC.
        pc: u64,
    },
    /// Reply to a guest `HVC` with `x0`-`x7` and the PC in the reply message.
    HvcReply {
        /// `x0`-`x7`.
        x: [u64; 8],
        /// The new PC.
        pc: u64,
    },
    /// No reply: the vCPU waits (`WFI`) until an interrupt is injected for it or its virtual
    /// timer's deadline passes. It restarts after the `WFI` (`resume_at`, written first with
    /// a one-word `TCB_WriteRegisters`): restarted at the `WFI` itself, a guest that waits
    /// with interrupts unmasked (EDK2's idle loop) would take the interrupt before the
    /// instruction, return to it, and wait again, never getting past it.
    Park {
        /// Where the vCPU goes on: the `WFI`'s address + 4; `None` when the run loop did not
        /// supply registers (it restarts at the `WFI`, which completes when interrupts are
        /// masked, as Linux's idle loop has them).
        resume_at: Option<u64>,
        /// Arm a wake-up at the vCPU's virtual timer deadline (`CNTV_CTL`, `CNTV_CVAL`): seL4
        /// masks the virtual timer of a vCPU that is not running, so nothing else would wake
        /// it. False while the kernel holds the timer PPI masked awaiting acknowledgement:
        /// the expiry is already known, and a deadline in the past would wake the vCPU into
        /// the same `WFI` again and again.
        arm_timer: bool,
    },
    /// No reply: the vCPU is off (`CPU_OFF`) until a `CPU_ON` starts it.
    Off,
    /// Deliver a synchronous external abort: enter the guest's vector, as the hardware
    /// would had the access reached a bus with nothing on it.
    InjectAbort(AbortKind),
    /// No reply: the VM stops ([`Effects::suspends`] lists every vCPU of it that is on, the
    /// exiting one included: it may not be waiting for a reply at all).
    Stop(StopReason),
}

impl Next {
    /// The message to reply with, if this resumes the vCPU by replying.
    pub fn reply(&self) -> Option<Message> {
        match self {
            Next::Resume | Next::Advance { .. } | Next::SetRegister { .. } | Next::InjectAbort(_) => {
                Some(Message::new(0, &[]))
            }
            Next::HvcReply { x, pc } => {
                let mut w = [0u64; unknown_syscall::REPLY_LENGTH];
                w[..8].copy_from_slice(x);
                w[unknown_syscall::FAULT_IP] = *pc;
                Some(Message::new(0, &w))
            }
            Next::Park { .. } | Next::Off | Next::Stop(_) => None,
        }
    }

    /// The register file to write with `TCB_WriteRegisters` before replying, and how many
    /// words of it (a prefix in the kernel's order). `regs` is what the run loop read; `None`
    /// when nothing needs writing, or when a register write needs registers not supplied.
    pub fn registers_to_write(&self, regs: Option<&UserContext>) -> Option<(UserContext, usize)> {
        match *self {
            Next::Advance { pc } => {
                let mut c = regs.copied().unwrap_or_default();
                c.pc = pc;
                Some((c, 1))
            }
            Next::SetRegister { reg, value, pc } => {
                let mut c = *regs?;
                *c.x.get_mut(usize::from(reg))? = value;
                c.pc = pc;
                Some((c, kernel_word_index(reg)? + 1))
            }
            _ => None,
        }
    }
}

/// Position of `x<n>` (0-30) in the kernel's register order (`seL4_UserContext`).
pub const fn kernel_word_index(n: u8) -> Option<usize> {
    let n = n as usize;
    match n {
        0..=8 => Some(3 + n),
        16..=18 => Some(12 + (n - 16)),
        29 => Some(15),
        30 => Some(16),
        9..=15 => Some(17 + (n - 9)),
        19..=28 => Some(24 + (n - 19)),
        _ => None,
    }
}

/// A vCPU to start (PSCI `CPU_ON`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VcpuStart {
    /// Index of the vCPU.
    pub vcpu: usize,
    /// Entry point.
    pub entry: u64,
    /// Its `x0`.
    pub context: u64,
    /// It ran before: reset `SCTLR_EL1` so it starts with the MMU off (`VCPU_WriteRegs`).
    pub reset_sctlr: bool,
}

impl VcpuStart {
    /// PSTATE a started vCPU begins with: EL1h, all of D, A, I, F masked (PSCI requires
    /// interrupts masked at entry).
    pub const PSTATE: u64 = 0x3c5;

    /// Its initial register file (written whole, with resume).
    pub fn registers(&self) -> UserContext {
        let mut c = UserContext { pc: self.entry, spsr: Self::PSTATE, ..Default::default() };
        c.x[0] = self.context;
        c
    }
}

/// Something the run loop should log; already limited by "logged once" where it could
/// repeat.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Notice {
    /// An access to guest-physical memory with no RAM and no device.
    UnhandledAccess {
        /// vCPU.
        vcpu: usize,
        /// Faulting PC.
        ip: u64,
        /// Address.
        addr: u64,
        /// A write.
        write: bool,
        /// An instruction fetch.
        instruction: bool,
    },
    /// A device access the syndrome does not describe (load/store pair, writeback, SIMD).
    NoSyndrome {
        /// vCPU.
        vcpu: usize,
        /// Faulting PC.
        ip: u64,
        /// Address.
        addr: u64,
    },
    /// A trapped system register access, read as zero / write ignored.
    SysRegIgnored {
        /// vCPU.
        vcpu: usize,
        /// PC.
        ip: u64,
        /// The access.
        access: SysRegAccess,
    },
    /// A `VPPIEvent` for a PPI that is not the virtual timer's.
    UnknownPpi {
        /// vCPU.
        vcpu: usize,
        /// The PPI.
        irq: u64,
    },
    /// Further notices of this kind are suppressed (the "logged once" set is full).
    Suppressed,
    /// The VM stopped.
    Stopped(StopReason),
}

/// Side effects of an exit or event, in the order the run loop performs them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Effects {
    /// Interrupts to write into list registers (`VCPU_InjectIRQ` each).
    pub injections: Vec<Injection>,
    /// Virtual PPIs to unmask (`VCPU_AckVPPI` each): (vCPU, PPI).
    pub vppi_acks: Vec<(usize, u16)>,
    /// Host interrupts the guest finished with (`IRQHandler_Ack` each).
    pub host_irq_acks: Vec<u16>,
    /// vCPUs to start (`VCPU_WriteRegs` of `SCTLR_EL1` if it ran before, then
    /// `TCB_WriteRegisters` with resume).
    pub starts: Vec<VcpuStart>,
    /// Parked vCPUs to restart (`TCB_Resume` each).
    pub wakes: Vec<usize>,
    /// vCPUs to stop (`TCB_Suspend` each).
    pub suspends: Vec<usize>,
    /// A frame of on-demand RAM to put into the exiting vCPU's stage 2 before it retries:
    /// zeroed by the VMM if the kernel did not zero it, `Page_Map`, and for a zeroed frame
    /// `Page_CleanInvalidate_Data` so a guest running with its caches off sees the zeros.
    pub populate: Option<UntouchedFrame>,
    /// A writable flash bank left or entered read-array mode: its read-only mapping of the
    /// contents leaves the guest's stage 2 (so reads trap to the model) or comes back, with
    /// the blocks that changed meanwhile written into it first.
    pub flash_rom: Option<FlashRom>,
    /// Program and erase operations on flash banks whose contents the VMM keeps (written
    /// through the VMM's mapping of them, before `flash_rom`; no kernel entry).
    pub flash_ops: Vec<(usize, FlashOp)>,
    /// Log lines.
    pub notices: Vec<Notice>,
}

/// A change of a flash bank's read-only mapping ([`Effects::flash_rom`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FlashRom {
    /// The bank (in `emu_devices` order among the flash banks).
    pub bank: usize,
    /// Frames of the mapping (`Page_Unmap` or `Page_Map` each).
    pub frames: usize,
    /// `Some`: map again, then clean these changed erase blocks to memory (a
    /// `Page_CleanInvalidate_Data` each); `None`: unmap.
    pub map: Option<Vec<u32>>,
}

impl Effects {
    /// Kernel entries the effects take, in order.
    pub fn ops(&self, out: &mut Vec<Op>) {
        out.extend(self.injections.iter().map(|_| Op::VCpuInjectIrq));
        out.extend(self.vppi_acks.iter().map(|_| Op::VCpuAckVppi));
        out.extend(self.host_irq_acks.iter().map(|_| Op::IrqHandlerAck));
        for s in &self.starts {
            if s.reset_sctlr {
                out.push(Op::VCpuWriteReg);
            }
            out.push(Op::TcbWriteRegisters);
        }
        out.extend(self.wakes.iter().map(|_| Op::TcbResume));
        out.extend(self.suspends.iter().map(|_| Op::TcbSuspend));
        if let Some(f) = self.populate {
            out.push(Op::PageMap);
            if f.zero {
                out.push(Op::PageFlush);
            }
        }
        if let Some(r) = &self.flash_rom {
            match &r.map {
                None => out.extend((0..r.frames).map(|_| Op::PageUnmap)),
                Some(dirty) => {
                    out.extend((0..r.frames).map(|_| Op::PageMap));
                    out.extend(dirty.iter().map(|_| Op::PageFlush));
                }
            }
        }
    }

    /// Adds `other` after these.
    pub fn extend(&mut self, other: Effects) {
        self.injections.extend(other.injections);
        self.vppi_acks.extend(other.vppi_acks);
        self.host_irq_acks.extend(other.host_irq_acks);
        self.starts.extend(other.starts);
        for w in other.wakes {
            if !self.wakes.contains(&w) {
                self.wakes.push(w);
            }
        }
        self.suspends.extend(other.suspends);
        self.populate = self.populate.or(other.populate);
        self.flash_rom = self.flash_rom.take().or(other.flash_rom);
        self.flash_ops.extend(other.flash_ops);
        self.notices.extend(other.notices);
    }
}

/// What to do after an exit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Action {
    /// The exited vCPU.
    pub next: Next,
    /// Everything else.
    pub effects: Effects,
}

impl Action {
    /// An action with no side effects.
    pub fn just(next: Next) -> Self {
        Action { next, effects: Effects::default() }
    }

    /// Every kernel entry the run loop makes for this exit, in order: the register read it
    /// made before calling the handler (`registers_fetched`), the effects, then the vCPU's own
    /// continuation, ending with the `ReplyRecv` or `Recv` that waits for the next exit.
    pub fn ops(&self, registers_fetched: bool) -> Vec<Op> {
        let mut v = Vec::new();
        if registers_fetched {
            v.push(Op::TcbReadRegisters);
        }
        self.effects.ops(&mut v);
        match self.next {
            Next::Resume | Next::HvcReply { .. } => v.push(Op::ReplyRecv),
            Next::Advance { .. } => v.extend([Op::TcbWriteRegisters, Op::ReplyRecv]),
            Next::SetRegister { .. } => {
                if !registers_fetched {
                    v.push(Op::TcbReadRegisters);
                }
                v.extend([Op::TcbWriteRegisters, Op::ReplyRecv]);
            }
            // The virtual timer deadline (CNTV_CTL, CNTV_CVAL) goes to the timer server.
            Next::Park { resume_at, arm_timer } => {
                if resume_at.is_some() {
                    v.push(Op::TcbWriteRegisters);
                }
                if arm_timer {
                    v.extend([Op::VCpuReadReg, Op::VCpuReadReg, Op::Call]);
                }
                v.push(Op::Recv);
            }
            Next::Off | Next::Stop(_) => v.push(Op::Recv),
            Next::InjectAbort(_) => {
                if !registers_fetched {
                    v.push(Op::TcbReadRegisters);
                }
                // VBAR_EL1 read; ELR_EL1, SPSR_EL1, ESR_EL1 written; pc and PSTATE written.
                v.extend([
                    Op::VCpuReadReg,
                    Op::VCpuWriteReg,
                    Op::VCpuWriteReg,
                    Op::VCpuWriteReg,
                    Op::TcbWriteRegisters,
                    Op::ReplyRecv,
                ]);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_word_index_matches_the_sel4_crate() {
        let mut c = UserContext::default();
        for n in 0..31 {
            c.x[n] = 1000 + n as u64;
        }
        let w = c.to_words();
        for n in 0..31u8 {
            let i = kernel_word_index(n).unwrap();
            assert_eq!(w[i], 1000 + u64::from(n), "x{n}");
        }
        assert_eq!(kernel_word_index(31), None);
    }

    #[test]
    fn register_writes_are_the_shortest_prefix() {
        assert_eq!(Next::Advance { pc: 0x104 }.registers_to_write(None).map(|(c, n)| (c.pc, n)), Some((0x104, 1)));
        let mut regs = UserContext { pc: 0x100, sp: 7, spsr: 0x3c5, ..Default::default() };
        regs.x[5] = 1;
        let (c, n) = Next::SetRegister { reg: 5, value: 0xab, pc: 0x104 }.registers_to_write(Some(&regs)).unwrap();
        assert_eq!((c.pc, c.sp, c.spsr, c.x[5], n), (0x104, 7, 0x3c5, 0xab, 9));
        let (_, n) = Next::SetRegister { reg: 28, value: 0, pc: 0 }.registers_to_write(Some(&regs)).unwrap();
        assert_eq!(n, 34);
        assert_eq!(Next::SetRegister { reg: 5, value: 0, pc: 0 }.registers_to_write(None), None);
        assert_eq!(Next::SetRegister { reg: 31, value: 0, pc: 0 }.registers_to_write(Some(&regs)), None);
        assert_eq!(Next::Resume.registers_to_write(Some(&regs)), None);
    }

    #[test]
    fn hvc_reply_carries_x0_to_x7_and_the_pc() {
        let m = Next::HvcReply { x: [9, 1, 2, 3, 4, 5, 6, 7], pc: 0x4000_0004 }.reply().unwrap();
        assert_eq!(m.info.label(), 0, "label 0 resumes the thread");
        assert_eq!(m.words(), &[9, 1, 2, 3, 4, 5, 6, 7, 0x4000_0004]);
        assert_eq!(Next::Resume.reply().unwrap().words(), &[] as &[u64]);
        assert_eq!(Next::Park { resume_at: None, arm_timer: true }.reply(), None);
        assert_eq!(Action::just(Next::Park { resume_at: None, arm_timer: false }).ops(false), [Op::Recv]);
        assert_eq!(
            Action::just(Next::Park { resume_at: Some(4), arm_timer: false }).ops(true),
            [Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::Recv]
        );
        assert_eq!(Next::Stop(StopReason::PoweredOff).reply(), None);
    }

    #[test]
    fn costs_follow_the_table() {
        use Op::*;
        assert_eq!(Action::just(Next::Resume).ops(false), [ReplyRecv]);
        assert_eq!(Action::just(Next::Advance { pc: 0 }).ops(false), [TcbWriteRegisters, ReplyRecv]);
        assert_eq!(Action::just(Next::Advance { pc: 0 }).ops(true), [TcbReadRegisters, TcbWriteRegisters, ReplyRecv]);
        let set = Action::just(Next::SetRegister { reg: 1, value: 0, pc: 0 });
        assert_eq!(set.ops(false), [TcbReadRegisters, TcbWriteRegisters, ReplyRecv]);
        assert_eq!(set.ops(true), [TcbReadRegisters, TcbWriteRegisters, ReplyRecv], "read once either way");
        assert_eq!(Action::just(Next::HvcReply { x: [0; 8], pc: 0 }).ops(false), [ReplyRecv]);
        assert_eq!(Action::just(Next::Off).ops(false), [Recv]);
        assert_eq!(Action::just(Next::InjectAbort(AbortKind { instruction: false, write: true })).ops(false).len(), 7);
        let mut e = Effects::default();
        e.starts.push(VcpuStart { vcpu: 1, entry: 0, context: 0, reset_sctlr: true });
        e.wakes.push(1);
        e.vppi_acks.push((0, 27));
        let a = Action { next: Next::Resume, effects: e };
        assert_eq!(a.ops(false), [VCpuAckVppi, VCpuWriteReg, TcbWriteRegisters, TcbResume, ReplyRecv]);
    }

    #[test]
    fn started_vcpus_begin_masked_at_el1h_with_their_context() {
        let c = VcpuStart { vcpu: 1, entry: 0x4000_0000, context: 0x55, reset_sctlr: false }.registers();
        assert_eq!((c.pc, c.spsr, c.x[0], c.sp), (0x4000_0000, 0x3c5, 0x55, 0));
    }
}
