//! Per-VM counters: exits by kind, and the VMM's kernel entries spent on each kind, so that
//! tests and benchmarks can pin "system calls per exit" and compare them with the model's own
//! invocation counters.

use core::fmt;

use sel4::{Observer, Op, OpCounts};

/// What a VM exit or VMM event was, for counting.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(usize)]
pub enum ExitKind {
    /// Emulated device read.
    MmioRead,
    /// Emulated device write.
    MmioWrite,
    /// An access to no device (or one that cannot be emulated).
    UnhandledAccess,
    /// Guest `HVC` (PSCI), `x7` 0.
    Hvc,
    /// Guest `HVC` with a non-zero `x7`, which seL4 reads as one of its own system call
    /// numbers before anything else: a number this kernel does not have (every debug and
    /// benchmark call on a kernel built without them) comes as an unknown system call, an API
    /// call that failed on the vCPU's empty CSpace as a capability fault. Answered as PSCI,
    /// like [`ExitKind::Hvc`]; counted apart so a run shows how many of its `HVC`s seL4 took
    /// for its own calls.
    HvcSel4Call,
    /// Guest `SMC` (PSCI).
    Smc,
    /// `WFI`.
    Wfi,
    /// `WFE`.
    Wfe,
    /// Trapped system register.
    SysReg,
    /// vGIC maintenance (an EOI).
    VgicMaintenance,
    /// Virtual timer PPI.
    Vppi,
    /// A forwarded host interrupt (not a fault).
    HostIrq,
    /// Console input for the VM (not a fault).
    ConsoleInput,
    /// A parked vCPU's timer deadline (not a fault).
    TimerWake,
    /// A first touch of on-demand RAM (`populate_ram = "on_touch"`): the frame enters the
    /// stage 2 and the access is retried.
    FirstTouch,
    /// Anything else (user exceptions, unknown traps, undecodable faults).
    Other,
}

impl ExitKind {
    /// Number of kinds.
    pub const COUNT: usize = 16;
    /// Every kind, in order.
    pub const ALL: [ExitKind; Self::COUNT] = [
        ExitKind::MmioRead,
        ExitKind::MmioWrite,
        ExitKind::UnhandledAccess,
        ExitKind::Hvc,
        ExitKind::HvcSel4Call,
        ExitKind::Smc,
        ExitKind::Wfi,
        ExitKind::Wfe,
        ExitKind::SysReg,
        ExitKind::VgicMaintenance,
        ExitKind::Vppi,
        ExitKind::HostIrq,
        ExitKind::ConsoleInput,
        ExitKind::TimerWake,
        ExitKind::FirstTouch,
        ExitKind::Other,
    ];
}

/// Counters of one VM.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Counters {
    exits: [u64; ExitKind::COUNT],
    syscalls: [u64; ExitKind::COUNT],
    ops: OpCounts,
}

impl Default for Counters {
    fn default() -> Self {
        Counters { exits: [0; ExitKind::COUNT], syscalls: [0; ExitKind::COUNT], ops: OpCounts::default() }
    }
}

impl Counters {
    /// Records one exit of `kind` costing `ops`.
    pub fn record(&mut self, kind: ExitKind, ops: &[Op]) {
        let k = kind as usize;
        if let Some(e) = self.exits.get_mut(k) {
            *e = e.saturating_add(1);
        }
        if let Some(s) = self.syscalls.get_mut(k) {
            *s = s.saturating_add(ops.len() as u64);
        }
        for op in ops {
            self.ops.entry(*op);
        }
    }

    /// Exits of `kind`.
    pub fn exits(&self, kind: ExitKind) -> u64 {
        self.exits.get(kind as usize).copied().unwrap_or(0)
    }

    /// Kernel entries spent on exits of `kind`.
    pub fn syscalls(&self, kind: ExitKind) -> u64 {
        self.syscalls.get(kind as usize).copied().unwrap_or(0)
    }

    /// Kernel entries of one operation, across all kinds.
    pub fn op(&self, op: Op) -> u64 {
        self.ops.get(op)
    }

    /// All exits.
    pub fn total_exits(&self) -> u64 {
        self.exits.iter().sum()
    }
}

impl fmt::Display for Counters {
    /// One line per kind seen: exits, system calls, and system calls per exit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for k in ExitKind::ALL {
            let (e, s) = (self.exits(k), self.syscalls(k));
            if let Some(whole) = s.checked_div(e) {
                let hundredths = s.checked_rem(e).unwrap_or(0).saturating_mul(100).checked_div(e).unwrap_or(0);
                writeln!(f, "{k:?}: {e} exits, {s} syscalls, {whole}.{hundredths:02} per exit")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn records_exits_syscalls_and_ops() {
        let mut c = Counters::default();
        c.record(ExitKind::MmioRead, &[Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::ReplyRecv]);
        c.record(ExitKind::MmioRead, &[Op::TcbWriteRegisters, Op::ReplyRecv]);
        c.record(ExitKind::Hvc, &[Op::ReplyRecv]);
        assert_eq!((c.exits(ExitKind::MmioRead), c.syscalls(ExitKind::MmioRead)), (2, 5));
        assert_eq!((c.exits(ExitKind::Hvc), c.syscalls(ExitKind::Hvc)), (1, 1));
        assert_eq!(c.op(Op::ReplyRecv), 3);
        assert_eq!(c.op(Op::TcbWriteRegisters), 2);
        assert_eq!(c.total_exits(), 3);
        assert_eq!(
            c.to_string(),
            "MmioRead: 2 exits, 5 syscalls, 2.50 per exit\nHvc: 1 exits, 1 syscalls, 1.00 per exit\n"
        );
    }

    #[test]
    fn all_lists_every_kind_in_order() {
        for (i, k) in ExitKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }
}
