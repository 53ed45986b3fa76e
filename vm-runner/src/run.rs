//! The run loop: receive a fault, decode it, let [`crate::VmState::handle_exit`] decide, perform
//! the [`Action`] with the fewest kernel entries, and wait for the next one.
//!
//! # One endpoint, one notification
//! Every vCPU of every VM faults to one endpoint, badged per vCPU ([`VcpuBadge`]). The VMM's
//! thread has a notification bound to it, so the same `Recv` also returns signals: badges
//! without the fault bit, one bit per source ([`SIGNAL_CONSOLE`]: the console UART's
//! interrupt; [`SIGNAL_TIMER`]: the timer server's timeouts; from [`SIGNAL_IRQ_FIRST`] up:
//! the passthrough devices' interrupts, one bit each, numbered by the [`Host`]).
//!
//! # Forwarded interrupts
//! A passthrough device's interrupt arrives as its bit ([`Host::forwarded`] names the VM and
//! interrupt ID); the VM's distributor makes it pending and it is injected like any other,
//! with an EOI maintenance request. seL4 keeps the host line masked until its handler is
//! acknowledged, and the loop acknowledges it ([`Host::ack_irq`], `IRQHandler_Ack`) only when
//! the guest's EOI of the virtual interrupt comes back as a maintenance exit: by then the
//! guest's driver has serviced the device, so a level line that is still high means new
//! work, not the same interrupt twice.
//!
//! # Performing an action
//! - The registers are read (`TCB_ReadRegisters`) only when the handler says it needs them
//!   ([`crate::VmState::registers_needed`]).
//! - Side effects in order: list-register injections (`VCPU_InjectIRQ`), virtual-PPI
//!   acknowledgements (`VCPU_AckVPPI`), vCPU starts (`TCB_WriteRegisters` with resume, after
//!   a `SCTLR_EL1` reset for a vCPU that ran before), wakes (`TCB_Resume`), suspends.
//! - The exiting vCPU: a reply resumes it (`ReplyRecv`, which also waits); a new PC moves
//!   with a one-word `TCB_WriteRegisters` (a load result with the shortest register prefix
//!   that reaches its destination register); a guest `HVC` gets its results in the reply
//!   itself; an abort is delivered by writing the guest's EL1 exception registers; a parked
//!   or stopped vCPU gets no reply (the loop waits with a plain `Recv`, which drops the
//!   pending reply capability).
//!
//! # Waking a parked vCPU
//! seL4 masks a vCPU's virtual timer while the vCPU is not running, so a vCPU waiting in
//! `WFI` for its timer must be woken by someone else: the [`Host`] arms a timeout at the
//! deadline (`CNTV_CVAL`) and the loop gets [`SIGNAL_TIMER`]. A host without a timer says
//! so ([`Host::arm_wake`] returns false) and the vCPU is restarted at once: its `WFI`
//! traps again until the deadline passes while it runs, which is correct and busy.
//!
//! # Resets
//! A guest's PSCI `SYSTEM_RESET` stops the VM's vCPUs; with `on_reset = "reboot"` (the
//! default) the loop then builds the VM again ([`Runner::reboot_pending`], through
//! [`crate::setup::Vmm::reboot_vm`]) and starts its boot vCPU, or stops it for good once
//! `reboot_limit` reboots were made; with `"stop"` the VM ends. The rebuild calls the HAL from
//! inside the loop, which is why the loop holds no HAL lock: it borrows the kernel per
//! invocation ([`sel4::Lent`]).
//!
//! # Counters
//! Each VM's [`crate::VmState`] counts the entries its actions *should* take ([`Action::ops`]);
//! the loop counts the entries it *made* ([`crate::meter::Meter`]), the closing `ReplyRecv` or `Recv`
//! included, per exit kind, in [`Runner::measured`].
//!
//! Owns the run-time state of the loop (the console multiplexer, measured counters, exit
//! statuses).
//! Never creates or frees kernel objects (that is [`crate::setup`]).

use alloc::vec::Vec;
use core::fmt;

use page_table_multiarch::PagingHandler;
use sel4::{CacheOp, CapRights, Kernel, Lent, Message, Op, Received, UserContext, VCpuReg, VirtAddr};
use vm_config::OnReset;
use vm_objects::VmObjects;

use crate::action::{Action, Effects, FlashRom, Next, Notice, StopReason, VcpuStart};
use crate::badge::{FAULT_BADGE_BIT, VcpuBadge};
use crate::bundle::Bundle;
use crate::console::{Console, Routed};
use crate::counters::{Counters, ExitKind};
use crate::devices::cfi_flash::{BLOCK_BYTES, FlashOp};
use crate::exit::Exit;
use crate::inject::abort_entry;
use crate::meter::meter;
use crate::setup::{CopyIn, MappedFrame, SCTLR_EL1_RESET, Vm, Vmm};
use crate::vm::UntouchedFrame;

/// Notification badge bit: the console UART has input.
pub const SIGNAL_CONSOLE: u64 = 1 << 0;
/// Notification badge bit: the timer server fired a timeout.
pub const SIGNAL_TIMER: u64 = 1 << 1;
/// Notification badge bits from this one up: forwarded host interrupts, one bit each, in the
/// order the [`Host`] numbers them.
pub const SIGNAL_IRQ_FIRST: u32 = 2;

/// `CNTV_CTL_EL0` bits: enabled, interrupt masked.
const CNTV_ENABLE: u64 = 1 << 0;
const CNTV_IMASK: u64 = 1 << 1;

/// Which vCPU a wake-up is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WakeKey {
    /// VM index.
    pub vm: usize,
    /// vCPU index.
    pub vcpu: usize,
}

/// What the run loop needs from the machine around it: the console, and a timer.
pub trait Host {
    /// Writes bytes to the terminal, as they are (the console multiplexer, [`Console`],
    /// has framed them).
    fn console_out(&mut self, bytes: &[u8]);
    /// VM `vm` wrote `bytes` to its console. The run loop's own host frames them with the
    /// console multiplexer; a bare host writes them as they are.
    fn vm_output(&mut self, _vm: usize, bytes: &[u8]) {
        self.console_out(bytes);
    }
    /// VM `vm` stopped (its held console output is written).
    fn vm_stopped(&mut self, _vm: usize) {}
    /// VM `vm` was built again after a reset, for the `count`th time, and is about to start.
    fn vm_rebooted(&mut self, _vm: usize, _count: u32) {}
    /// Writes one line of the VMM's own log (no newline in `line`).
    fn log(&mut self, line: fmt::Arguments<'_>);
    /// Reads console input that arrived ([`SIGNAL_CONSOLE`]) into `buf` and re-arms the
    /// input interrupt; returns the bytes read.
    fn console_in<K: Kernel>(&mut self, _kernel: &mut K, _buf: &mut [u8]) -> usize {
        0
    }
    /// Arms a wake-up for `key` when the virtual counter reaches `cntv_cval`; returns false
    /// when there is no timer (the loop then restarts the vCPU at once).
    fn arm_wake<K: Kernel>(&mut self, _kernel: &mut K, _key: WakeKey, _cntv_cval: u64) -> bool {
        false
    }
    /// The wake-ups that fired ([`SIGNAL_TIMER`]).
    fn fired<K: Kernel>(&mut self, _kernel: &mut K) -> Vec<WakeKey> {
        Vec::new()
    }
    /// The VMM's clock in nanoseconds (the timer server's, one call), for the guests'
    /// real-time clocks; `None` without a timer.
    fn now_ns<K: Kernel>(&mut self, _kernel: &mut K) -> Option<u64> {
        None
    }
    /// The forwarded host interrupts whose bits (from [`SIGNAL_IRQ_FIRST`]) are set in a
    /// signal's `bits`, as (VM index, interrupt ID).
    fn forwarded(&self, _bits: u64) -> Vec<(usize, u16)> {
        Vec::new()
    }
    /// Acknowledges VM `vm`'s forwarded interrupt `irq` (`IRQHandler_Ack`) after the guest's
    /// EOI; returns false when the host holds no handler for it.
    fn ack_irq<K: Kernel>(&mut self, _kernel: &mut K, _vm: usize, _irq: u16) -> bool {
        false
    }
    /// Writes zeros to `[va, va + len)` of the VMM's address space, where the setup left a
    /// frame of on-demand guest RAM mapped ([`crate::setup::UntouchedCaps::zero_at`]);
    /// returns false when it cannot (the VM then stops rather than see stale memory).
    fn zero(&mut self, _va: VirtAddr, _len: u64) -> bool {
        false
    }
    /// Applies a flash program (`Some(data)`: each byte ANDed with `data`) or erase
    /// (`None`: `len` bytes of 0xff) at `va` of the VMM's address space, inside a flash
    /// bank's contents the setup keeps mapped ([`crate::setup::FlashRomMapping::va`]);
    /// returns false when it cannot.
    fn update_flash(&mut self, _va: VirtAddr, _data: Option<&[u8]>, _len: u64) -> bool {
        false
    }
}

/// How the loop waits next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(clippy::large_enum_variant)] // one lives in the Runner; boxing would allocate per exit
pub enum Wait {
    /// Reply to the vCPU that exited, then wait (`ReplyRecv`).
    ReplyRecv(Message),
    /// Wait without replying (`Recv`).
    Recv,
}

/// How a VM ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ended {
    /// Why.
    pub reason: StopReason,
    /// Exit status: for `SYSTEM_OFF`, the low byte of the guest's `x1` (capvisor's
    /// convention for a guest to report a result); else [`StopReason::status`].
    pub status: u8,
}

/// The run-time state of the loop. See the module docs.
pub struct Runner {
    console: Console,
    wait: Wait,
    /// The exit whose closing wait is still to be counted: (VM, kind, entries so far).
    open: Option<(usize, ExitKind, Vec<Op>)>,
    /// Entries made per VM and exit kind, measured.
    pub measured: Vec<Counters>,
    /// How each VM ended, when it has.
    pub ended: Vec<Option<Ended>>,
    /// Faults with a badge that names no vCPU (ignored: no reply).
    pub stray: u64,
    /// Log every exit and the action taken (debugging; slow).
    pub trace: bool,
    /// VMs that asked for a reset and are to be built again ([`Runner::reboot_pending`]).
    reboots: Vec<usize>,
}

/// What a VM is built again from after a reset: the bundle, and the way into guest memory.
pub struct Rebuild<'a, 'b> {
    /// The bundle the VMs were built from.
    pub bundle: &'a Bundle<'b>,
    /// Copies images in.
    pub copy: &'a mut dyn CopyIn,
}

impl Runner {
    /// A loop for VMs with these names (in system order), console focus on the first.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let vms = names.len();
        Runner {
            console: Console::new(names),
            wait: Wait::Recv,
            open: None,
            measured: (0..vms).map(|_| Counters::default()).collect(),
            ended: (0..vms).map(|_| None).collect(),
            stray: 0,
            trace: false,
            reboots: Vec::new(),
        }
    }

    /// VMs waiting to be built again.
    pub fn reboots_pending(&self) -> &[usize] {
        &self.reboots
    }

    /// Whether every VM has stopped.
    pub fn all_stopped(&self) -> bool {
        self.ended.iter().all(Option::is_some)
    }

    /// How the loop will wait next.
    pub fn next_wait(&self) -> Wait {
        self.wait
    }

    /// Starts vCPU 0 of every VM (`TCB_WriteRegisters` with resume): PC at the entry
    /// point, `x0` the device tree, EL1h with interrupts masked. A VM whose start fails is
    /// stopped.
    pub fn start<K: Kernel, P: PagingHandler, H: Host>(&mut self, kernel: &mut K, vmm: &mut Vmm<P>, host: &mut H) {
        self.with_tty(host, |r, tty| r.start_all(kernel, vmm, tty));
    }

    /// Runs `f` with `host` wrapped in the console multiplexer (lent out of the runner for
    /// the call).
    fn with_tty<H: Host, R>(&mut self, host: &mut H, f: impl FnOnce(&mut Self, &mut Tty<'_, H>) -> R) -> R {
        let mut console = core::mem::take(&mut self.console);
        let r = f(self, &mut Tty { host, console: &mut console });
        self.console = console;
        r
    }

    fn start_all<K: Kernel, P: PagingHandler, H: Host>(&mut self, kernel: &mut K, vmm: &mut Vmm<P>, host: &mut H) {
        let now = host.now_ns(kernel).unwrap_or(0);
        for vm in &mut vmm.vms {
            vm.state.set_rtc_base(vmm.rtc_base_seconds, now);
        }
        for vm in &mut vmm.vms {
            self.boot(kernel, vm, host);
        }
    }

    /// Starts `vm`'s boot vCPU (the boot protocol's registers, with resume); a VM whose start
    /// fails is stopped.
    fn boot<K: Kernel, P: PagingHandler, H: Host>(&mut self, kernel: &mut K, vm: &mut Vm<P>, host: &mut H) {
        let boot = vm.state.boot();
        if let Err(e) = start_vcpu(kernel, vm, &boot) {
            host.log(format_args!("{}: starting vCPU 0 failed: {e:?}", vm.state.name()));
            let reason = StopReason::MissingRegisters;
            let _ = vm.state.fail(0, reason);
            self.ended_for(vm.index, reason, host);
        }
    }

    /// Records that VM `vm` ended for `reason` (with that reason's status) and tells the host.
    fn ended_for<H: Host>(&mut self, vm: usize, reason: StopReason, host: &mut H) {
        if let Some(slot) = self.ended.get_mut(vm) {
            *slot = Some(Ended { reason, status: reason.status() });
        }
        host.vm_stopped(vm);
    }

    /// Runs until every VM has stopped: [`Runner::start`], then [`Runner::step`] and
    /// [`Runner::reboot_pending`] until then. The kernel is the HAL's, borrowed for each
    /// invocation ([`sel4::Lent`]): nothing is held across an exit's handling, so handling
    /// may call the HAL (time, rebuilding a VM).
    pub fn run<H: VmObjects, Ho: Host>(
        &mut self,
        vmm: &mut Vmm<H::PagingHandler>,
        host: &mut Ho,
        rebuild: &mut Rebuild<'_, '_>,
    ) {
        let mut kernel = Lent::<H>::new();
        self.start(&mut kernel, vmm, host);
        while !self.all_stopped() {
            self.step(&mut kernel, vmm, host);
            self.reboot_pending::<H, Ho>(vmm, host, rebuild);
        }
        // The last exit's closing wait was never made.
        self.close(None);
        // What the VMM prints next starts on a line of its own.
        let mut out = Vec::new();
        self.console.note_start(&mut out);
        host.console_out(&out);
    }

    /// Builds every VM that asked for a reset again ([`Vmm::reboot_vm`]) and starts it, or
    /// stops it when its `reboot_limit` is reached or the rebuild fails.
    pub fn reboot_pending<H: VmObjects, Ho: Host>(
        &mut self,
        vmm: &mut Vmm<H::PagingHandler>,
        host: &mut Ho,
        rebuild: &mut Rebuild<'_, '_>,
    ) {
        if self.reboots.is_empty() {
            return;
        }
        self.with_tty(host, |r, tty| r.reboot_each::<H, _>(vmm, tty, rebuild));
    }

    fn reboot_each<H: VmObjects, Ho: Host>(
        &mut self,
        vmm: &mut Vmm<H::PagingHandler>,
        host: &mut Ho,
        rebuild: &mut Rebuild<'_, '_>,
    ) {
        for i in core::mem::take(&mut self.reboots) {
            let Some(vm) = vmm.vms.get(i) else { continue };
            let reason = if vm.config.capvisor.reboot_limit.is_some_and(|l| vm.reboots >= l) {
                Some(StopReason::RebootLimit)
            } else {
                let images = rebuild.bundle.images.get(i).cloned().unwrap_or_default();
                match vmm.reboot_vm::<H>(i, &images, rebuild.copy) {
                    Ok(()) => None,
                    Err(e) => {
                        host.log(format_args!("VM {i}: building it again after a reset: {e}"));
                        Some(StopReason::RebootFailed)
                    }
                }
            };
            if let Some(reason) = reason {
                self.ended_for(i, reason, host);
                continue;
            }
            let mut kernel = Lent::<H>::new();
            let now = host.now_ns(&mut kernel).unwrap_or(0);
            let Some(vm) = vmm.vms.get_mut(i) else { continue };
            vm.state.set_rtc_base(vmm.rtc_base_seconds, now);
            host.vm_rebooted(i, vm.reboots);
            self.boot(&mut kernel, vm, host);
        }
    }

    /// What the console multiplexer did with VM `vm`'s output.
    pub fn console_stats(&self, vm: usize) -> crate::console::OutputStats {
        self.console.stats(vm)
    }

    /// Waits once (replying first if the last exit resumes its vCPU) and handles what
    /// arrives.
    pub fn step<K: Kernel, P: PagingHandler, H: Host>(&mut self, kernel: &mut K, vmm: &mut Vmm<P>, host: &mut H) {
        let (received, op) = match self.wait {
            Wait::ReplyRecv(m) => (kernel.reply_recv(vmm.fault_ep, &m), Op::ReplyRecv),
            Wait::Recv => (kernel.recv(vmm.fault_ep), Op::Recv),
        };
        self.deliver(kernel, vmm, host, &received, op);
    }

    /// Handles `received`, which arrived by the wait `closing` (counted to the exit before).
    pub fn deliver<K: Kernel, P: PagingHandler, H: Host>(
        &mut self,
        kernel: &mut K,
        vmm: &mut Vmm<P>,
        host: &mut H,
        received: &Received,
        closing: Op,
    ) {
        self.close(Some(closing));
        self.wait = self.with_tty(host, |r, tty| r.handle(kernel, vmm, tty, received));
    }

    /// Records the last exit's entries, with the wait that closed it.
    fn close(&mut self, wait: Option<Op>) {
        if let Some((vm, kind, mut ops)) = self.open.take() {
            ops.extend(wait);
            if let Some(c) = self.measured.get_mut(vm) {
                c.record(kind, &ops);
            }
        }
    }

    /// Handles one received message (fault or signal); returns how to wait next.
    fn handle<K: Kernel, P: PagingHandler, H: Host>(
        &mut self,
        kernel: &mut K,
        vmm: &mut Vmm<P>,
        host: &mut Tty<'_, H>,
        received: &Received,
    ) -> Wait {
        if received.badge & FAULT_BADGE_BIT == 0 {
            self.signals(kernel, vmm, host, received.badge);
            return Wait::Recv;
        }
        let Some(b) = VcpuBadge::from_badge(received.badge) else {
            self.stray += 1;
            return Wait::Recv;
        };
        let (vmi, vcpu) = (usize::from(b.vm), usize::from(b.vcpu));
        let Some(vm) = vmm.vms.get_mut(vmi) else {
            self.stray += 1;
            return Wait::Recv;
        };
        if vcpu >= vm.vcpus.len() {
            self.stray += 1;
            return Wait::Recv;
        }
        let mut k = meter(kernel);
        let exit = Exit::decode(&received.msg);
        let tcb = vm.vcpus[vcpu].tcb;
        let mut regs = None;
        if vm.state.registers_needed(&exit) {
            regs = k.tcb_read_registers(tcb, false).ok();
        }
        if vm.state.needs_clock(&exit)
            && let Some(now) = host.now_ns(&mut k)
        {
            vm.state.set_clock(now);
        }
        let before = vm.state.counters().clone();
        let action = vm.state.handle_exit(vcpu, &exit, regs.as_ref());
        let kind = ExitKind::ALL
            .into_iter()
            .find(|k| vm.state.counters().exits(*k) > before.exits(*k))
            .unwrap_or(ExitKind::Other);
        if self.trace {
            host.log(format_args!("{} vCPU {vcpu}: {exit:?} -> {:?}", vm.state.name(), action.next));
        }
        let wait = perform(&mut k, vm, vcpu, &exit, regs, action, host, &mut self.ended, &mut self.reboots);
        self.open = Some((vmi, kind, k.observer.take()));
        wait
    }

    /// Stops every VM still running, for `reason`: its vCPUs are suspended.
    fn end_all<K: Kernel, P: PagingHandler, H: Host>(
        &mut self,
        kernel: &mut K,
        vmm: &mut Vmm<P>,
        host: &mut H,
        reason: StopReason,
    ) {
        for vm in &mut vmm.vms {
            let Some(slot) = self.ended.get_mut(vm.index) else { continue };
            if slot.is_some() {
                continue;
            }
            *slot = Some(Ended { reason, status: reason.status() });
            let a = vm.state.end(reason);
            let mut k = meter(kernel);
            effects(&mut k, vm, a.effects, host);
            host.vm_stopped(vm.index);
        }
        // No vCPU waits for a reply any more.
        self.wait = Wait::Recv;
    }

    fn signals<K: Kernel, P: PagingHandler, H: Host>(
        &mut self,
        kernel: &mut K,
        vmm: &mut Vmm<P>,
        host: &mut Tty<'_, H>,
        bits: u64,
    ) {
        if bits & SIGNAL_CONSOLE != 0 {
            let mut buf = [0u8; 64];
            let n = host.console_in(kernel, &mut buf);
            for &b in buf.get(..n).unwrap_or(&[]) {
                match host.console.route(b) {
                    Routed::Input(v, byte) => {
                        if let Some(vm) = vmm.vms.get_mut(v) {
                            let e = vm.state.console_input(&[byte]);
                            let mut k = meter(kernel);
                            effects(&mut k, vm, e, host);
                            self.measured[v].record(ExitKind::ConsoleInput, &k.observer.take());
                        }
                    }
                    Routed::Focus(v) => {
                        if let Some(vm) = vmm.vms.get(v) {
                            host.log(format_args!("console: input goes to {}", vm.state.name()));
                        }
                    }
                    Routed::Help => {
                        let lines = host.console.help_lines();
                        host.notes(&lines);
                    }
                    Routed::UnknownKey(k) => {
                        let key = char::from(k).escape_default();
                        host.log(format_args!("console: Ctrl-A {key} is no key (Ctrl-A ? lists them)"));
                    }
                    Routed::Quit => {
                        host.log(format_args!("console: Ctrl-A x: ending the run"));
                        self.end_all(kernel, vmm, host, StopReason::EndedFromConsole);
                    }
                    Routed::Nothing => {}
                }
            }
        }
        for (v, irq) in host.forwarded(bits) {
            if let Some(vm) = vmm.vms.get_mut(v) {
                let e = vm.state.host_irq(irq);
                let mut k = meter(kernel);
                effects(&mut k, vm, e, host);
                self.measured[v].record(ExitKind::HostIrq, &k.observer.take());
            }
        }
        if bits & SIGNAL_TIMER != 0 {
            for key in host.fired(kernel) {
                if let Some(vm) = vmm.vms.get_mut(key.vm) {
                    let e = vm.state.timer_wake(key.vcpu);
                    let mut k = meter(kernel);
                    effects(&mut k, vm, e, host);
                    self.measured[key.vm].record(ExitKind::TimerWake, &k.observer.take());
                }
            }
        }
    }
}

/// The host as the run loop uses it: VM output and the VMM's lines go through the console
/// multiplexer, so they share the terminal without breaking each other's lines.
struct Tty<'a, H> {
    host: &'a mut H,
    console: &'a mut Console,
}

impl<H: Host> Tty<'_, H> {
    fn note(&mut self, line: fmt::Arguments<'_>) {
        self.notes(&[line]);
    }

    /// Lines of the VMM's own, together: a VM's unfinished line is broken once before them
    /// and written again once after.
    fn notes<S: fmt::Display>(&mut self, lines: &[S]) {
        self.framed(Console::note_start);
        for line in lines {
            self.host.log(format_args!("{line}"));
        }
        self.framed(Console::note_end);
    }

    /// Writes to the terminal what `step` of the console multiplexer produces, if anything.
    fn framed(&mut self, step: impl FnOnce(&mut Console, &mut Vec<u8>)) {
        let mut out = Vec::new();
        step(self.console, &mut out);
        if !out.is_empty() {
            self.host.console_out(&out);
        }
    }
}

impl<H: Host> Host for Tty<'_, H> {
    fn console_out(&mut self, bytes: &[u8]) {
        self.host.console_out(bytes);
    }
    fn vm_output(&mut self, vm: usize, bytes: &[u8]) {
        self.framed(|c, out| c.output(vm, bytes, out));
    }
    fn vm_stopped(&mut self, vm: usize) {
        self.framed(|c, out| c.vm_stopped(vm, out));
    }
    fn vm_rebooted(&mut self, vm: usize, count: u32) {
        self.host.vm_rebooted(vm, count);
    }
    fn log(&mut self, line: fmt::Arguments<'_>) {
        self.note(line);
    }
    fn console_in<K: Kernel>(&mut self, kernel: &mut K, buf: &mut [u8]) -> usize {
        self.host.console_in(kernel, buf)
    }
    fn arm_wake<K: Kernel>(&mut self, kernel: &mut K, key: WakeKey, cntv_cval: u64) -> bool {
        self.host.arm_wake(kernel, key, cntv_cval)
    }
    fn fired<K: Kernel>(&mut self, kernel: &mut K) -> Vec<WakeKey> {
        self.host.fired(kernel)
    }
    fn now_ns<K: Kernel>(&mut self, kernel: &mut K) -> Option<u64> {
        self.host.now_ns(kernel)
    }
    fn forwarded(&self, bits: u64) -> Vec<(usize, u16)> {
        self.host.forwarded(bits)
    }
    fn ack_irq<K: Kernel>(&mut self, kernel: &mut K, vm: usize, irq: u16) -> bool {
        self.host.ack_irq(kernel, vm, irq)
    }
    fn zero(&mut self, va: VirtAddr, len: u64) -> bool {
        self.host.zero(va, len)
    }
    fn update_flash(&mut self, va: VirtAddr, data: Option<&[u8]>, len: u64) -> bool {
        self.host.update_flash(va, data, len)
    }
}

/// Starts a vCPU as [`VcpuStart`] says.
fn start_vcpu<K: Kernel, P: PagingHandler>(k: &mut K, vm: &Vm<P>, s: &VcpuStart) -> Result<(), sel4::Error> {
    let c = vm.vcpus.get(s.vcpu).ok_or(sel4::Error::RangeError)?;
    if s.reset_sctlr {
        k.vcpu_write_reg(c.vcpu, VCpuReg::Sctlr, SCTLR_EL1_RESET)?;
    }
    k.tcb_write_registers(c.tcb, true, &s.registers())
}

/// Performs side effects. A failed invocation is logged; the VM goes on (an injection the
/// kernel refused is retried when the list register frees).
fn effects<K: Kernel, P: PagingHandler, H: Host>(k: &mut K, vm: &mut Vm<P>, e: Effects, host: &mut H) {
    let name = vm.state.name();
    for inj in &e.injections {
        if let Some(c) = vm.vcpus.get(inj.vcpu)
            && let Err(err) = k.vcpu_inject_irq(c.vcpu, inj.virq, inj.priority, inj.group, inj.lr)
        {
            host.log(format_args!("{name}: VCPU_InjectIRQ of {} into LR {} failed: {err:?}", inj.virq, inj.lr));
        }
    }
    for &(v, ppi) in &e.vppi_acks {
        if let Some(c) = vm.vcpus.get(v)
            && let Err(err) = k.vcpu_ack_vppi(c.vcpu, u64::from(ppi))
        {
            host.log(format_args!("{name}: VCPU_AckVPPI {ppi} failed: {err:?}"));
        }
    }
    for &irq in &e.host_irq_acks {
        if !host.ack_irq(k, vm.index, irq) {
            host.log(format_args!("{name}: no handler to acknowledge host interrupt {irq}"));
        }
    }
    for s in &e.starts {
        if let Err(err) = start_vcpu(k, vm, s) {
            host.log(format_args!("{name}: starting vCPU {} failed: {err:?}", s.vcpu));
        }
    }
    for &v in &e.wakes {
        if let Some(c) = vm.vcpus.get(v)
            && let Err(err) = k.tcb_resume(c.tcb)
        {
            host.log(format_args!("{name}: TCB_Resume of vCPU {v} failed: {err:?}"));
        }
    }
    for &v in &e.suspends {
        if let Some(c) = vm.vcpus.get(v)
            && let Err(err) = k.tcb_suspend(c.tcb)
        {
            host.log(format_args!("{name}: TCB_Suspend of vCPU {v} failed: {err:?}"));
        }
    }
    for (bank, op) in &e.flash_ops {
        flash_op(vm, *bank, op, host);
    }
    if let Some(r) = &e.flash_rom {
        flash_rom(k, vm, r, host);
    }
    for n in &e.notices {
        notice(host, vm.state.name(), n);
    }
}

/// Programs or erases a flash bank's contents, which the VMM keeps.
fn flash_op<P: PagingHandler, H: Host>(vm: &Vm<P>, bank: usize, op: &FlashOp, host: &mut H) {
    let Some(m) = vm.flash_rom.iter().find(|m| m.bank == bank) else { return };
    let (offset, data, len) = match op {
        FlashOp::Program { offset, bytes } => (*offset, Some(bytes.as_slice()), bytes.len() as u64),
        FlashOp::Erase { block } => (u64::from(*block) * BLOCK_BYTES, None, BLOCK_BYTES),
    };
    // The model checked the range against the bank; the mapping is the bank's size.
    if offset.checked_add(len).is_none_or(|end| end > m.size_bytes)
        || !host.update_flash(VirtAddr(m.va.get() + offset), data, len)
    {
        host.log(format_args!("{}: flash change at {offset:#x} ({len} bytes) not applied", vm.state.name()));
    }
}

/// Takes a flash bank's contents out of the guest's stage 2, or maps them again and cleans
/// the blocks that changed to memory.
fn flash_rom<K: Kernel, P: PagingHandler, H: Host>(k: &mut K, vm: &Vm<P>, r: &FlashRom, host: &mut H) {
    let name = vm.state.name();
    let Some(m) = vm.flash_rom.iter().find(|m| m.bank == r.bank) else {
        host.log(format_args!("{name}: flash bank {} has no mapping to change", r.bank));
        return;
    };
    let base = m.gpa.get();
    let frames = || vm.frames.iter().filter(|f| m.holds(f.gpa));
    let Some(dirty) = &r.map else {
        for f in frames() {
            if let Err(err) = k.page_unmap(f.cap) {
                host.log(format_args!("{name}: Page_Unmap of flash at {:#x} failed: {err:?}", f.gpa.get()));
            }
        }
        return;
    };
    for f in frames() {
        if let Err(err) = k.page_map(f.cap, vm.vspace, VirtAddr(f.gpa.get()), CapRights::READ_ONLY, m.attrs) {
            host.log(format_args!("{name}: Page_Map of flash at {:#x} failed: {err:?}", f.gpa.get()));
        }
    }
    for &b in dirty {
        let gpa = base + u64::from(b) * BLOCK_BYTES;
        if let Some(f) = frames().find(|f| gpa < f.gpa.get() + f.size.size_bytes()) {
            let start = gpa - f.gpa.get();
            if let Err(err) = k.page_flush(f.cap, CacheOp::CleanInvalidateData, start, start + BLOCK_BYTES) {
                host.log(format_args!("{name}: cleaning flash at {gpa:#x} failed: {err:?}"));
            }
        }
    }
}

fn notice<H: Host>(host: &mut H, name: &str, n: &Notice) {
    match *n {
        Notice::UnhandledAccess { vcpu, ip, addr, write, instruction } => {
            let what = if instruction {
                "instruction fetch"
            } else if write {
                "write"
            } else {
                "read"
            };
            host.log(format_args!("{name}: vCPU {vcpu}: {what} at {addr:#x} (pc {ip:#x}): no RAM or device"))
        }
        Notice::NoSyndrome { vcpu, ip, addr } => host.log(format_args!(
            "{name}: vCPU {vcpu}: access at {addr:#x} (pc {ip:#x}) the syndrome does not describe: not emulated"
        )),
        Notice::SysRegIgnored { vcpu, ip, access } => host.log(format_args!(
            "{name}: vCPU {vcpu}: system register S{}_{}_C{}_C{}_{} {} at pc {ip:#x} ignored",
            access.op0,
            access.op1,
            access.crn,
            access.crm,
            access.op2,
            if access.read { "read (as 0)" } else { "write" }
        )),
        Notice::UnknownPpi { vcpu, irq } => host.log(format_args!("{name}: vCPU {vcpu}: PPI {irq} not handled")),
        Notice::Suppressed => host.log(format_args!("{name}: further such messages suppressed")),
        Notice::Stopped(r) => host.log(format_args!("{name}: stopped: {r}")),
    }
}

/// `x1` of the call that powered the VM off.
fn off_status(exit: &Exit, regs: Option<&UserContext>) -> u8 {
    match exit {
        Exit::Hvc(r) => r.x[1] as u8,
        _ => regs.map_or(0, |r| r.x[1] as u8),
    }
}

/// Performs an action for `vcpu` of `vm`; returns how to wait next.
#[allow(clippy::too_many_arguments)]
fn perform<K: Kernel, P: PagingHandler, H: Host>(
    k: &mut K,
    vm: &mut Vm<P>,
    vcpu: usize,
    exit: &Exit,
    mut regs: Option<UserContext>,
    action: Action,
    host: &mut H,
    ended: &mut [Option<Ended>],
    reboots: &mut Vec<usize>,
) -> Wait {
    let Action { mut next, effects: mut e } = action;
    let populate = e.populate.take();
    effects(k, vm, e, host);
    if let Some(f) = populate
        && !populate_frame(k, vm, f, host)
    {
        let reason = StopReason::PopulateFailed { gpa: f.gpa };
        let a = vm.state.fail(vcpu, reason);
        effects(k, vm, a.effects, host);
        next = Next::Stop(reason);
    }
    let c = vm.vcpus[vcpu];
    let out = vm.state.take_console_output();
    if !out.is_empty() {
        host.vm_output(vm.index, &out);
    }
    let wait = match next {
        Next::Resume => Wait::ReplyRecv(Message::new(0, &[])),
        Next::HvcReply { .. } => next.reply().map_or(Wait::Recv, Wait::ReplyRecv),
        Next::Advance { .. } | Next::SetRegister { .. } => match next.registers_to_write(regs.as_ref()) {
            Some((ctx, n)) => match k.tcb_write_registers_prefix(c.tcb, false, &ctx, n) {
                Ok(()) => Wait::ReplyRecv(Message::new(0, &[])),
                Err(_) => fail(k, vm, vcpu, StopReason::MissingRegisters, host),
            },
            None => fail(k, vm, vcpu, StopReason::MissingRegisters, host),
        },
        Next::InjectAbort(kind) => {
            if regs.is_none() {
                regs = k.tcb_read_registers(c.tcb, false).ok();
            }
            let entry = match (regs, k.vcpu_read_reg(c.vcpu, VCpuReg::Vbar)) {
                (Some(r), Ok(vbar)) => Some((r, abort_entry(kind, r.pc, r.spsr, vbar))),
                _ => None,
            };
            let done = entry.is_some_and(|(r, e)| {
                let ctx = UserContext { pc: e.pc, spsr: e.pstate, ..r };
                k.vcpu_write_reg(c.vcpu, VCpuReg::ElrEl1, e.elr_el1).is_ok()
                    && k.vcpu_write_reg(c.vcpu, VCpuReg::SpsrEl1, e.spsr_el1).is_ok()
                    && k.vcpu_write_reg(c.vcpu, VCpuReg::Esr, e.esr_el1).is_ok()
                    && k.tcb_write_registers_prefix(c.tcb, false, &ctx, 3).is_ok()
            });
            if done {
                Wait::ReplyRecv(Message::new(0, &[]))
            } else {
                fail(k, vm, vcpu, StopReason::MissingRegisters, host)
            }
        }
        Next::Park { resume_at, arm_timer } => {
            let moved = resume_at.is_none_or(|pc| {
                let ctx = UserContext { pc, ..regs.unwrap_or_default() };
                k.tcb_write_registers_prefix(c.tcb, false, &ctx, 1).is_ok()
            });
            if !moved {
                fail(k, vm, vcpu, StopReason::MissingRegisters, host)
            } else {
                if arm_timer {
                    let ctl = k.vcpu_read_reg(c.vcpu, VCpuReg::CntvCtl).unwrap_or(0);
                    let armed = if ctl & (CNTV_ENABLE | CNTV_IMASK) == CNTV_ENABLE {
                        let cval = k.vcpu_read_reg(c.vcpu, VCpuReg::CntvCval).unwrap_or(0);
                        host.arm_wake(k, WakeKey { vm: vm.index, vcpu }, cval)
                    } else {
                        // No deadline: only an interrupt wakes it.
                        true
                    };
                    if !armed {
                        let e = vm.state.timer_wake(vcpu);
                        effects(k, vm, e, host);
                    }
                }
                Wait::Recv
            }
        }
        Next::Off => Wait::Recv,
        Next::Stop(StopReason::Reset) if vm.config.capvisor.on_reset == OnReset::Reboot => {
            reboots.push(vm.index);
            host.log(format_args!("{}: reset: rebuilding the VM", vm.state.name()));
            Wait::Recv
        }
        Next::Stop(reason) => {
            let status =
                if reason == StopReason::PoweredOff { off_status(exit, regs.as_ref()) } else { reason.status() };
            if let Some(slot) = ended.get_mut(vm.index) {
                *slot = Some(Ended { reason, status });
            }
            host.vm_stopped(vm.index);
            host.log(format_args!("{}: exit status {status}", vm.state.name()));
            Wait::Recv
        }
    };
    // A VM stopped by `fail` above: record it too (not one waiting to be built again).
    if let Some(reason) = vm.state.stopped()
        && !reboots.contains(&vm.index)
        && let Some(slot) = ended.get_mut(vm.index)
        && slot.is_none()
    {
        *slot = Some(Ended { reason, status: reason.status() });
        host.vm_stopped(vm.index);
    }
    wait
}

/// Puts a frame of on-demand RAM into the VM's stage 2: zeroed through the VMM's mapping if
/// the kernel did not zero it, mapped (`Page_Map`), and after zeroing cleaned to the point of
/// coherency (`Page_CleanInvalidate_Data`, which needs the frame mapped). False, with the
/// reason logged, if any step fails.
fn populate_frame<K: Kernel, P: PagingHandler, H: Host>(
    k: &mut K,
    vm: &mut Vm<P>,
    f: UntouchedFrame,
    host: &mut H,
) -> bool {
    let name = vm.state.name();
    let Some(i) = vm.untouched.iter().position(|u| u.gpa.get() == f.gpa) else {
        host.log(format_args!("{name}: no capability for RAM at {:#x}", f.gpa));
        return false;
    };
    let u = vm.untouched.swap_remove(i);
    if let Some(va) = u.zero_at
        && !host.zero(va, f.size)
    {
        host.log(format_args!("{name}: could not zero RAM at {:#x}", f.gpa));
        return false;
    }
    if let Err(err) = k.page_map(u.cap, vm.vspace, VirtAddr(f.gpa), u.rights, u.attrs) {
        host.log(format_args!("{name}: Page_Map of RAM at {:#x} failed: {err:?}", f.gpa));
        return false;
    }
    if u.zero_at.is_some()
        && let Err(err) = k.page_flush(u.cap, CacheOp::CleanInvalidateData, 0, f.size)
    {
        host.log(format_args!("{name}: cleaning RAM at {:#x} failed: {err:?}", f.gpa));
        return false;
    }
    vm.frames.push(MappedFrame { cap: u.cap, gpa: u.gpa, hpa: u.hpa, size: u.size });
    true
}

/// Stops the VM for a failure of the loop's own (not the guest's).
fn fail<K: Kernel, P: PagingHandler, H: Host>(
    k: &mut K,
    vm: &mut Vm<P>,
    vcpu: usize,
    reason: StopReason,
    host: &mut H,
) -> Wait {
    let a = vm.state.fail(vcpu, reason);
    effects(k, vm, a.effects, host);
    Wait::Recv
}

/// The counters of a VM as a table: per exit kind, exits, the entries made (measured) and
/// per exit, and the entries the actions predict per exit.
pub struct CountersTable<'a> {
    /// Predicted ([`crate::VmState::counters`]).
    pub predicted: &'a Counters,
    /// Measured ([`Runner::measured`]).
    pub measured: &'a Counters,
}

impl fmt::Display for CountersTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<16} {:>7} {:>9} {:>9} {:>9}", "exit kind", "exits", "syscalls", "per exit", "predicted")?;
        for kind in ExitKind::ALL {
            let (e, s) = (self.measured.exits(kind), self.measured.syscalls(kind));
            if e == 0 {
                continue;
            }
            let (pe, ps) = (self.predicted.exits(kind), self.predicted.syscalls(kind));
            writeln!(
                f,
                "{:<16} {e:>7} {s:>9} {:>9} {:>9}",
                alloc::format!("{kind:?}"),
                Ratio(s, e),
                if pe == 0 { alloc::string::String::from("-") } else { alloc::format!("{}", Ratio(ps, pe)) }
            )?;
        }
        Ok(())
    }
}

/// `a / b` with two decimals, in integers.
struct Ratio(u64, u64);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (self.0, self.1.max(1));
        let whole = a / b;
        let hundredths = (a % b) * 100 / b;
        f.pad(&alloc::format!("{whole}.{hundredths:02}"))
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
