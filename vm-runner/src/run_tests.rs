//! The run loop on the seL4 model: faults enqueued through the model's harness, the loop's
//! replies, register writes, injections and starts read back from the model, and the
//! measured entries compared with the model's own counters and with the predicted costs.

extern crate std;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hal_sel4::HalInstance;
use sel4::fault::label;
use sel4::{Kernel, Message, Op, Received, UserContext, VCpuReg};
use sel4_model::{ListRegister, Model, ThreadState};

use super::*;
use crate::bundle::{Bundle, VmImages};
use crate::devices::psci::fid;
use crate::esr::{Esr, ec};
use crate::setup::Vmm;
use crate::setup::tests::install;
use crate::setup::tests::{Recorder, example, image, instance};
use hal_sel4::host::{HostHal, HostPaging};
use vm_config::SystemConfig;

#[derive(Default)]
struct TestHost {
    console: Vec<u8>,
    log: Vec<String>,
    input: Vec<u8>,
    timer: bool,
    armed: Vec<(WakeKey, u64)>,
    fired: Vec<WakeKey>,
    /// Forwarded interrupts by bit (from SIGNAL_IRQ_FIRST), and the ones acknowledged.
    irqs: Vec<(usize, u16)>,
    acked: Vec<(usize, u16)>,
    /// Zeroings asked for, as (physical address behind the VMM's address, length).
    zeroed: Vec<(u64, u64)>,
    /// Refuse to zero (as a host that cannot would).
    refuse_zero: bool,
}

impl Host for TestHost {
    fn console_out(&mut self, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
    }
    fn log(&mut self, line: fmt::Arguments<'_>) {
        self.log.push(alloc::format!("{line}"));
    }
    fn console_in<K: Kernel>(&mut self, _k: &mut K, buf: &mut [u8]) -> usize {
        let n = self.input.len().min(buf.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        n
    }
    fn arm_wake<K: Kernel>(&mut self, _k: &mut K, key: WakeKey, cval: u64) -> bool {
        self.armed.push((key, cval));
        self.timer
    }
    fn fired<K: Kernel>(&mut self, _k: &mut K) -> Vec<WakeKey> {
        core::mem::take(&mut self.fired)
    }
    fn forwarded(&self, bits: u64) -> Vec<(usize, u16)> {
        let bit = |i: usize| bits >> (SIGNAL_IRQ_FIRST as usize + i) & 1 != 0;
        self.irqs.iter().enumerate().filter(|(i, _)| bit(*i)).map(|(_, f)| *f).collect()
    }
    fn ack_irq<K: Kernel>(&mut self, _k: &mut K, vm: usize, irq: u16) -> bool {
        let known = self.irqs.contains(&(vm, irq));
        if known {
            self.acked.push((vm, irq));
        }
        known
    }
    fn zero(&mut self, va: VirtAddr, len: u64) -> bool {
        if self.refuse_zero {
            return false;
        }
        // Called from inside the loop, which holds the HAL: the address is resolved later.
        self.zeroed.push((va.get(), len));
        true
    }
}

/// Completes the loop's last wait as the kernel would (its reply, if any); the operation
/// that wait was, for `Runner::deliver`.
fn close_wait(runner: &Runner, m: &mut Model) -> Op {
    match runner.next_wait() {
        Wait::ReplyRecv(r) => {
            m.reply(&r);
            Op::ReplyRecv
        }
        Wait::Recv => Op::Recv,
    }
}

/// A built test-guest VMM on the model, its loop and host.
struct Rig<I: HalInstance<Kernel = Model>> {
    vmm: Vmm<HostPaging<I>>,
    runner: Runner,
    host: TestHost,
}

impl<I: HalInstance<Kernel = Model>> Rig<I> {
    fn new(file: &str) -> Self {
        Self::with(example(file), TestHost::default())
    }

    fn with(sys: SystemConfig, host: TestHost) -> Self {
        let options = install::<I>(Model::qemu_arm_virt());
        let kernels: Vec<Vec<u8>> = (0..sys.vms.len()).map(|i| image(i as u8, 0x1000)).collect();
        let images =
            kernels.iter().map(|k| VmImages { kernel: k, dtb: None, ramdisk: None, flash: Vec::new() }).collect();
        let bundle = Bundle { system: sys, images, rtc_base_seconds: 0 };
        let vmm = Vmm::<HostPaging<I>>::build::<HostHal<I>>(&bundle, &options, &mut Recorder::<I>::new()).unwrap();
        let names: Vec<&str> = vmm.vms.iter().map(|v| v.state.name()).collect();
        let runner = Runner::new(&names);
        let mut rig = Rig { vmm, runner, host };
        I::cell().with(|h| rig.runner.start(h.kernel_mut(), &mut rig.vmm, &mut rig.host));
        rig
    }

    fn tcb(&self, vm: usize, vcpu: usize) -> sel4::Cap<sel4::cap_type::Tcb> {
        self.vmm.vms[vm].vcpus[vcpu].tcb
    }

    /// Completes the loop's last wait as the kernel would (the reply, if any), makes
    /// `vcpu` fault with `msg`, and lets the loop handle it. Returns the model's entries
    /// for the exit (the closing wait excluded).
    fn exit(&mut self, vm: usize, vcpu: usize, msg: Message) -> u64 {
        let tcb = self.tcb(vm, vcpu);
        I::cell().with(|h| {
            let m = h.kernel_mut();
            let closing = close_wait(&self.runner, m);
            m.enqueue_fault(tcb, msg).unwrap();
            let r: Received = m.recv(self.vmm.fault_ep);
            m.reset_counters();
            self.runner.deliver(m, &mut self.vmm, &mut self.host, &r, closing);
            m.counters().total()
        })
    }

    /// Lets the loop handle `msg` as vCPU `from` of `vm` *sent* it to the fault endpoint of
    /// its vCPU `to`, as a guest can: an `HVC` with seL4's `Send` in `x7` naming that
    /// endpoint (the guest CSpace holds those of all its vCPUs). The sender does not wait for
    /// a reply: it runs on.
    fn send(&mut self, vm: usize, from: usize, to: usize, msg: Message) {
        let tcb = self.tcb(vm, from);
        let badge = VcpuBadge { vm: vm as u8, vcpu: to as u8 }.to_badge();
        I::cell().with(|h| {
            let m = h.kernel_mut();
            let closing = close_wait(&self.runner, m);
            m.enqueue_send(self.vmm.fault_ep, Some(tcb), badge, msg);
            let r: Received = m.recv(self.vmm.fault_ep);
            self.runner.deliver(m, &mut self.vmm, &mut self.host, &r, closing);
        });
    }

    /// Sets registers of a vCPU thread as the guest would have them.
    fn set_regs(&mut self, vm: usize, vcpu: usize, f: impl FnOnce(&mut UserContext)) {
        let tcb = self.tcb(vm, vcpu);
        I::cell().with(|h| {
            let m = h.kernel_mut();
            let mut r = m.thread_registers(tcb);
            f(&mut r);
            m.tcb_write_registers(tcb, false, &r).unwrap();
        });
    }

    fn model<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        I::cell().with(|h| f(h.kernel_mut()))
    }
}

/// A 32-bit store (`str w<rt>, [..]`) or load to `addr` at `pc`.
fn access(pc: u64, addr: u64, write: bool, rt: u32) -> Message {
    let iss = (1 << 24) | (2 << 22) | (rt << 16) | (u32::from(write) << 6) | 0x07;
    Message::new(label::VM_FAULT, &[pc, addr, 0, Esr::new(ec::DABT_LOWER, true, iss).0])
}

/// A guest `HVC #0` at `pc` with `x0..x3`.
fn hvc(pc: u64, x: [u64; 4]) -> Message {
    Message::new(label::UNKNOWN_SYSCALL, &[x[0], x[1], x[2], x[3], 0, 0, 0, 0, pc, 0, 0, 0x3c5, 0])
}

#[test]
fn the_boot_vcpu_starts_at_the_entry_with_the_boot_protocol() {
    instance!(I);
    let rig = Rig::<I>::new("test-guest.toml");
    rig.model(|m| {
        let r = m.thread_registers(rig.tcb(0, 0));
        assert_eq!((r.pc, r.x[0], r.spsr), (0x4000_0000, 0, 0x3c5));
        assert_eq!(m.thread_state(rig.tcb(0, 0)), ThreadState::Runnable);
        assert_eq!(m.thread_state(rig.tcb(0, 1)), ThreadState::Inactive, "vCPU 1 waits for CPU_ON");
    });
}

#[test]
fn an_mmio_write_moves_only_the_pc_and_prints_the_line() {
    instance!(I);
    let mut rig = Rig::<I>::new("test-guest.toml");
    let mut pc = 0x4000_0100;
    for b in b"hi\n" {
        rig.set_regs(0, 0, |r| {
            r.pc = pc;
            r.x[1] = u64::from(*b);
            r.x[9] = 0x99;
        });
        let entries = rig.exit(0, 0, access(pc, 0x0900_0000, true, 1));
        // TCB_ReadRegisters (the value) + one-word TCB_WriteRegisters; the ReplyRecv follows.
        assert_eq!(entries, 2);
        assert_eq!(rig.runner.next_wait(), Wait::ReplyRecv(Message::new(0, &[])));
        let r = rig.model(|m| m.thread_registers(rig.tcb(0, 0)));
        assert_eq!((r.pc, r.x[1], r.x[9]), (pc + 4, u64::from(*b), 0x99), "only the PC moved");
        pc += 4;
    }
    assert_eq!(rig.host.console, b"hi\n", "one VM: its bytes as written");
    // A store of xzr needs no register read: 1 entry, plus the ReplyRecv.
    assert_eq!(rig.exit(0, 0, access(pc, 0x0900_0000, true, 31)), 1);
    // A load into x5: read, write pc..x5 (9 words), and the value lands in x5.
    pc += 4;
    rig.set_regs(0, 0, |r| r.pc = pc);
    assert_eq!(rig.exit(0, 0, access(pc, 0x0900_0018, false, 5)), 2); // UARTFR
    let r = rig.model(|m| m.thread_registers(rig.tcb(0, 0)));
    assert_eq!(r.pc, pc + 4);
    assert_eq!(r.x[5] & (1 << 7), 1 << 7, "FR.TXFE: the transmit FIFO is empty");
    // Measured per exit: write 3, xzr write 2, read 3 (the closing ReplyRecv counted once
    // the next exit arrives).
    let _ = rig.exit(0, 0, hvc(pc + 4, [u64::from(fid::VERSION), 0, 0, 0]));
    let c = &rig.runner.measured[0];
    assert_eq!((c.exits(ExitKind::MmioWrite), c.syscalls(ExitKind::MmioWrite)), (4, 3 * 3 + 2));
    assert_eq!((c.exits(ExitKind::MmioRead), c.syscalls(ExitKind::MmioRead)), (1, 3));
    // Measured equals predicted for these.
    let p = rig.vmm.vms[0].state.counters();
    assert_eq!(p.syscalls(ExitKind::MmioWrite), c.syscalls(ExitKind::MmioWrite));
    assert_eq!(p.syscalls(ExitKind::MmioRead), c.syscalls(ExitKind::MmioRead));
}

#[test]
fn psci_cpu_on_starts_the_second_vcpu_and_system_off_ends_the_vm_with_x1() {
    instance!(I);
    let mut rig = Rig::<I>::new("test-guest.toml");
    // CPU_ON(target mpidr 1, entry, context): answered in the HVC reply itself.
    let entries = rig.exit(0, 0, hvc(0x4000_0200, [u64::from(fid::CPU_ON_64), 1, 0x4000_1000, 0xc0ffee]));
    assert_eq!(entries, 1, "only the start of vCPU 1 (TCB_WriteRegisters with resume)");
    let Wait::ReplyRecv(reply) = rig.runner.next_wait() else { panic!("no reply") };
    assert_eq!(reply.words()[0], 0, "PSCI SUCCESS in x0");
    assert_eq!(reply.words()[8], 0x4000_0204, "past the HVC");
    rig.model(|m| {
        let r = m.thread_registers(rig.tcb(0, 1));
        assert_eq!((r.pc, r.x[0], r.spsr), (0x4000_1000, 0xc0ffee, 0x3c5));
        assert_eq!(m.thread_state(rig.tcb(0, 1)), ThreadState::Runnable);
    });
    // SYSTEM_OFF from vCPU 1 with status 5 in x1: no reply, vCPU 0 suspended.
    rig.exit(0, 1, hvc(0x4000_1100, [u64::from(fid::SYSTEM_OFF), 5, 0, 0]));
    assert_eq!(rig.runner.next_wait(), Wait::Recv);
    assert_eq!(rig.runner.ended[0], Some(Ended { reason: StopReason::PoweredOff, status: 5 }));
    assert!(rig.runner.all_stopped());
    rig.model(|m| assert_eq!(m.thread_state(rig.tcb(0, 0)), ThreadState::Inactive));
    assert!(rig.host.log.iter().any(|l| l == "test-guest: stopped: powered off"), "{:?}", rig.host.log);
}

#[test]
fn the_virtual_timer_goes_through_the_list_registers_and_is_acknowledged_on_eoi() {
    instance!(I);
    let mut rig = Rig::<I>::new("test-guest.toml");
    let mut pc = 0x4000_0300;
    // The guest enables the distributor (group 0) and PPI 27.
    for (addr, value) in [(0x0800_0000u64, 1u64), (0x0800_0100, 1 << 27)] {
        rig.set_regs(0, 0, |r| {
            r.pc = pc;
            r.x[2] = value;
        });
        rig.exit(0, 0, access(pc, addr, true, 2));
        pc += 4;
    }
    // The timer fires: injected into list register 0, then the vCPU resumes.
    let entries = rig.exit(0, 0, Message::new(label::VPPI_EVENT, &[27]));
    assert_eq!(entries, 1, "VCPU_InjectIRQ");
    let vcpu = rig.vmm.vms[0].vcpus[0].vcpu;
    rig.model(|m| {
        assert_eq!(m.vcpu_injections(vcpu).len(), 1);
        assert_eq!((m.vcpu_injections(vcpu)[0].virq, m.vcpu_injections(vcpu)[0].index), (27, 0));
        // The guest takes it and EOIs: the list register empties.
        m.set_list_register(vcpu, 0, ListRegister::Invalid);
    });
    // Maintenance for LR 0: the PPI is acknowledged to the kernel.
    let entries = rig.exit(0, 0, Message::new(label::VGIC_MAINTENANCE, &[0]));
    assert_eq!(entries, 1, "VCPU_AckVPPI");
    let c = &rig.runner.measured[0];
    assert_eq!(c.exits(ExitKind::Vppi), 1);
    // The next exit closes the maintenance one: 2 entries each (the work and ReplyRecv).
    rig.exit(0, 0, Message::new(label::VPPI_EVENT, &[27]));
    let c = &rig.runner.measured[0];
    assert_eq!((c.syscalls(ExitKind::Vppi), c.syscalls(ExitKind::VgicMaintenance)), (2, 2));
}

#[test]
fn wfi_arms_a_wake_up_or_restarts_at_once_without_a_timer() {
    instance!(I);
    let mut rig = Rig::<I>::new("test-guest.toml");
    let vcpu = rig.vmm.vms[0].vcpus[0].vcpu;
    rig.model(|m| {
        m.vcpu_write_reg(vcpu, VCpuReg::CntvCtl, 1).unwrap();
        m.vcpu_write_reg(vcpu, VCpuReg::CntvCval, 12345).unwrap();
    });
    let wfi = Message::new(label::VCPU_FAULT, &[Esr::new(ec::WFX, true, 0).0]);
    // No timer: parked, then restarted at once (TCB_Resume), after the WFI.
    let pc = rig.model(|m| m.thread_registers(rig.tcb(0, 0)).pc);
    assert_eq!(rig.exit(0, 0, wfi), 5, "TCB_ReadRegisters, TCB_WriteRegisters (pc), two VCPU_ReadRegs, TCB_Resume");
    rig.model(|m| assert_eq!(m.thread_registers(rig.tcb(0, 0)).pc, pc + 4, "it goes on after the WFI"));
    assert_eq!(rig.runner.next_wait(), Wait::Recv);
    assert_eq!(rig.host.armed, vec![(WakeKey { vm: 0, vcpu: 0 }, 12345)]);
    rig.model(|m| assert_eq!(m.thread_state(rig.tcb(0, 0)), ThreadState::Runnable));
    // With a timer: parked until the timer fires.
    rig.host.timer = true;
    assert_eq!(rig.exit(0, 0, wfi), 4);
    rig.model(|m| assert_eq!(m.thread_state(rig.tcb(0, 0)), ThreadState::BlockedOnReply));
    rig.host.fired.push(WakeKey { vm: 0, vcpu: 0 });
    I::cell().with(|h| {
        let m = h.kernel_mut();
        m.signal_from(rig.vmm.ntfn, SIGNAL_TIMER);
        let r = m.recv(rig.vmm.fault_ep);
        assert_eq!(r.badge, SIGNAL_TIMER);
        rig.runner.deliver(m, &mut rig.vmm, &mut rig.host, &r, Op::Recv);
        assert_eq!(m.thread_state(rig.tcb(0, 0)), ThreadState::Runnable, "woken by TCB_Resume");
    });
    assert_eq!(rig.runner.measured[0].exits(ExitKind::TimerWake), 1);
    // A disabled timer needs no wake-up: parked until an interrupt.
    rig.model(|m| m.vcpu_write_reg(vcpu, VCpuReg::CntvCtl, 0).unwrap());
    rig.host.armed.clear();
    assert_eq!(rig.exit(0, 0, wfi), 3, "TCB_ReadRegisters, TCB_WriteRegisters (pc), one VCPU_ReadRegs");
    assert!(rig.host.armed.is_empty());
}

#[test]
fn an_access_to_nothing_enters_the_guest_vector_with_a_synchronous_external_abort() {
    instance!(I);
    let mut rig = Rig::<I>::new("test-guest.toml");
    let vcpu = rig.vmm.vms[0].vcpus[0].vcpu;
    rig.model(|m| m.vcpu_write_reg(vcpu, VCpuReg::Vbar, 0x4000_0800).unwrap());
    rig.set_regs(0, 0, |r| {
        r.pc = 0x4000_0400;
        r.sp = 0x4010_0000;
        r.spsr = 0x3c5;
    });
    for _ in 0..2 {
        rig.exit(0, 0, access(0x4000_0400, 0x0c00_0000, true, 3));
        rig.model(|m| {
            let r = m.thread_registers(rig.tcb(0, 0));
            assert_eq!((r.pc, r.spsr, r.sp), (0x4000_0a00, 0x3c5, 0x4010_0000));
            assert_eq!(m.vcpu_read_reg(vcpu, VCpuReg::ElrEl1), Ok(0x4000_0400));
            let esr = Esr(m.vcpu_read_reg(vcpu, VCpuReg::Esr).unwrap());
            assert_eq!(esr.ec(), ec::DABT_SAME);
        });
        rig.set_regs(0, 0, |r| r.pc = 0x4000_0400);
    }
    // Logged once per address.
    let lines: Vec<&String> = rig.host.log.iter().filter(|l| l.contains("0xc000000")).collect();
    assert_eq!(lines.len(), 1, "{:?}", rig.host.log);
    // Measured: read regs, VBAR, three EL1 registers, the PC and PSTATE, and ReplyRecv.
    rig.exit(0, 0, hvc(0x4000_0500, [u64::from(fid::VERSION), 0, 0, 0]));
    let c = &rig.runner.measured[0];
    assert_eq!((c.exits(ExitKind::UnhandledAccess), c.syscalls(ExitKind::UnhandledAccess)), (2, 14));
}

#[test]
fn a_vm_that_stops_leaves_the_other_running() {
    instance!(I);
    let mut rig = Rig::<I>::new("two-vms.toml");
    // test-guest-b (VM 1) stores to nothing: its policy is "stop".
    rig.set_regs(1, 0, |r| r.pc = 0x4000_0100);
    rig.exit(1, 0, access(0x4000_0100, 0x0c00_0000, true, 1));
    assert_eq!(rig.runner.next_wait(), Wait::Recv);
    let ended = rig.runner.ended[1].unwrap();
    assert_eq!(ended.status, 2);
    assert!(matches!(ended.reason, StopReason::Abort { addr: 0x0c00_0000, write: true, .. }));
    assert!(!rig.runner.all_stopped());
    // VM 0 goes on: its UART still works.
    rig.set_regs(0, 0, |r| {
        r.pc = 0x4000_0100;
        r.x[1] = u64::from(b'\n');
    });
    rig.exit(0, 0, access(0x4000_0100, 0x0900_0000, true, 1));
    assert_eq!(rig.host.console, b"[test-guest] \n", "a system of two VMs names lines to the end");
    // A fault that claims to be from a VM or vCPU that does not exist is ignored.
    I::cell().with(|h| {
        let m = h.kernel_mut();
        let fake = Received { badge: VcpuBadge { vm: 7, vcpu: 0 }.to_badge(), msg: Message::new(5, &[0; 4]) };
        rig.runner.deliver(m, &mut rig.vmm, &mut rig.host, &fake, Op::Recv);
    });
    assert_eq!(rig.runner.stray, 1);
}

/// Found by the fuzz guest (`capvisor/tests/fuzz_guest.rs`): a guest sends its own fault
/// endpoint a message the VMM cannot decode (`UnknownSyscall` with 4 of its 13 words). The VM
/// stops, but the vCPU that sent it never waited for a reply: unless the stop suspends it
/// too, a VM reported stopped keeps running, for good, at its vCPUs' priority.
#[test]
fn a_vm_stopped_by_a_message_its_vcpu_sent_runs_no_vcpu() {
    instance!(I);
    let mut rig = Rig::<I>::new("test-guest.toml");
    rig.exit(0, 0, hvc(0x4000_0200, [u64::from(fid::CPU_ON_64), 1, 0x4000_1000, 0]));
    rig.send(0, 0, 0, Message::new(label::UNKNOWN_SYSCALL, &[0; 4]));
    assert_eq!(rig.runner.ended[0].map(|e| e.reason), Some(StopReason::BadFault { label: label::UNKNOWN_SYSCALL }));
    for vcpu in 0..2 {
        assert_eq!(rig.model(|m| m.thread_state(rig.tcb(0, vcpu))), ThreadState::Inactive, "vCPU {vcpu}");
    }
}

/// As [`a_vm_stopped_by_a_message_its_vcpu_sent_runs_no_vcpu`], for a vCPU the VMM takes to
/// be waiting in `WFI` (a sent `WFI` exit parks it in the VMM's state while it runs on) and a
/// stop that names the other vCPU.
#[test]
fn a_vm_stopped_after_a_sent_wfi_exit_runs_no_vcpu() {
    instance!(I);
    let mut rig = Rig::<I>::new("test-guest.toml");
    rig.send(0, 0, 0, Message::new(label::VCPU_FAULT, &[Esr::new(ec::WFX, true, 0).0]));
    assert!(rig.vmm.vms[0].state.vcpu(0).is_some_and(|c| c.parked), "the VMM takes vCPU 0 to wait in WFI");
    assert_eq!(rig.model(|m| m.thread_state(rig.tcb(0, 0))), ThreadState::Runnable, "a send does not block");
    rig.send(0, 0, 1, Message::new(label::UNKNOWN_SYSCALL, &[0; 4]));
    assert!(rig.runner.ended[0].is_some());
    assert_eq!(rig.model(|m| m.thread_state(rig.tcb(0, 0))), ThreadState::Inactive);
}

#[test]
fn console_input_goes_to_the_vm_with_focus() {
    instance!(I);
    let mut rig = Rig::<I>::new("two-vms.toml");
    rig.host.input = vec![b'a', crate::console::ESCAPE, b'2', b'b'];
    I::cell().with(|h| {
        let m = h.kernel_mut();
        m.signal_from(rig.vmm.ntfn, SIGNAL_CONSOLE);
        let r = m.recv(rig.vmm.fault_ep);
        rig.runner.deliver(m, &mut rig.vmm, &mut rig.host, &r, Op::Recv);
    });
    assert_eq!(rig.runner.measured[0].exits(ExitKind::ConsoleInput), 1);
    assert_eq!(rig.runner.measured[1].exits(ExitKind::ConsoleInput), 1);
    assert!(rig.host.log.iter().any(|l| l == "console: input goes to test-guest-b"));
    // The byte is in VM 1's UART: a read of DR returns it.
    rig.set_regs(1, 0, |r| r.pc = 0x4000_0100);
    rig.exit(1, 0, access(0x4000_0100, 0x0900_0000, false, 4));
    assert_eq!(rig.model(|m| m.thread_registers(rig.tcb(1, 0))).x[4] & 0xff, u64::from(b'b'));
}

/// Types `bytes` on the console and lets the loop take them.
fn type_keys<I: HalInstance<Kernel = Model>>(rig: &mut Rig<I>, bytes: &[u8]) {
    rig.host.input = bytes.to_vec();
    I::cell().with(|h| {
        let m = h.kernel_mut();
        m.signal_from(rig.vmm.ntfn, SIGNAL_CONSOLE);
        let r = m.recv(rig.vmm.fault_ep);
        rig.runner.deliver(m, &mut rig.vmm, &mut rig.host, &r, Op::Recv);
    });
}

/// VM `vm` writes `text` to its UART, one store per byte.
fn guest_writes<I: HalInstance<Kernel = Model>>(rig: &mut Rig<I>, vm: usize, text: &[u8]) {
    for b in text {
        rig.set_regs(vm, 0, |r| {
            r.pc = 0x4000_0100;
            r.x[1] = u64::from(*b);
        });
        rig.exit(vm, 0, access(0x4000_0100, 0x0900_0000, true, 1));
    }
}

#[test]
fn two_vms_share_the_terminal_line_by_line_and_a_prompt_comes_back() {
    instance!(I);
    let mut rig = Rig::<I>::new("two-vms.toml");
    guest_writes(&mut rig, 0, b"/ # ");
    assert_eq!(rig.host.console, b"[test-guest] / # ", "a prompt shows without a newline");
    guest_writes(&mut rig, 1, b"up\n");
    let text = String::from_utf8(rig.host.console.clone()).unwrap();
    assert_eq!(text, "[test-guest] / # \r\n[test-guest-b] up\n[test-guest] / # ");
    assert_eq!(rig.runner.console_stats(1).held_lines, 1);
    // A key list, and the prompt written again after it.
    rig.host.console.clear();
    type_keys(&mut rig, &[crate::console::ESCAPE, b'?']);
    assert!(rig.host.log.iter().any(|l| l.contains("Ctrl-A x")), "{:?}", rig.host.log);
    assert!(rig.host.log.iter().any(|l| l == "console: VM 2: test-guest-b (running)"), "{:?}", rig.host.log);
    assert_eq!(rig.host.console, b"\r\n[test-guest] / # ");
    type_keys(&mut rig, &[crate::console::ESCAPE, b'j']);
    assert!(rig.host.log.iter().any(|l| l == "console: Ctrl-A j is no key (Ctrl-A ? lists them)"));
}

#[test]
fn ctrl_a_x_ends_every_vm_with_status_130_and_ctrl_c_goes_to_the_guest() {
    instance!(I);
    let mut rig = Rig::<I>::new("two-vms.toml");
    type_keys(&mut rig, &[0x03]);
    assert_eq!(rig.runner.measured[0].exits(ExitKind::ConsoleInput), 1, "Ctrl-C is input for the VM");
    assert!(!rig.runner.all_stopped());
    type_keys(&mut rig, &[crate::console::ESCAPE, b'x']);
    assert!(rig.runner.all_stopped());
    for vm in 0..2 {
        let e = rig.runner.ended[vm].unwrap();
        assert_eq!((e.reason, e.status), (StopReason::EndedFromConsole, 130));
        let tcb = rig.tcb(vm, 0);
        assert_eq!(rig.model(|m| m.thread_state(tcb)), ThreadState::Inactive, "VM {vm}'s running vCPU suspended");
    }
    assert!(rig.host.log.iter().any(|l| l == "console: Ctrl-A x: ending the run"));
    assert_eq!(rig.runner.next_wait(), Wait::Recv);
}

#[test]
fn counters_table_lists_measured_and_predicted() {
    let mut measured = Counters::default();
    let mut predicted = Counters::default();
    measured.record(ExitKind::MmioWrite, &[Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::ReplyRecv]);
    predicted.record(ExitKind::MmioWrite, &[Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::ReplyRecv]);
    measured.record(ExitKind::Hvc, &[Op::ReplyRecv]);
    let t = alloc::format!("{}", CountersTable { predicted: &predicted, measured: &measured });
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with("MmioWrite") && lines[1].ends_with("3.00      3.00"), "{t}");
    assert!(lines[2].starts_with("Hvc") && lines[2].ends_with("-"), "{t}");
}

/// Completes the loop's last wait as the kernel would (the reply, if any), then delivers a
/// signal with `bits`.
fn signal<I: HalInstance<Kernel = Model>>(rig: &mut Rig<I>, bits: u64) {
    I::cell().with(|h| {
        let m = h.kernel_mut();
        let closing = match rig.runner.next_wait() {
            Wait::ReplyRecv(r) => {
                m.reply(&r);
                Op::ReplyRecv
            }
            Wait::Recv => Op::Recv,
        };
        m.signal_from(rig.vmm.ntfn, bits);
        let r = m.recv(rig.vmm.fault_ep);
        rig.runner.deliver(m, &mut rig.vmm, &mut rig.host, &r, closing);
    });
}

#[test]
fn a_forwarded_interrupt_is_injected_and_acknowledged_only_after_the_guests_eoi() {
    instance!(I);
    // linux-disk.toml forwards host interrupt 79 (its virtio-mmio transport).
    let mut rig = Rig::<I>::new("linux-disk.toml");
    rig.host.irqs = vec![(0, 79)];
    let mut pc = 0x7000_0300;
    // The guest enables the distributor and SPI 79 (GICD_ISENABLER2, bit 15) and targets it
    // at CPU 0 (GICD_ITARGETSR19, byte 3).
    for (addr, value) in [(0x0800_0000u64, 1u64), (0x0800_0108, 1 << 15), (0x0800_084c, 1 << 24)] {
        rig.set_regs(0, 0, |r| {
            r.pc = pc;
            r.x[2] = value;
        });
        rig.exit(0, 0, access(pc, addr, true, 2));
        pc += 4;
    }
    // The device interrupts: its handler signals bit SIGNAL_IRQ_FIRST + 0.
    signal(&mut rig, 1 << SIGNAL_IRQ_FIRST);
    let vcpu = rig.vmm.vms[0].vcpus[0].vcpu;
    rig.model(|m| {
        let inj = m.vcpu_injections(vcpu);
        assert_eq!(inj.len(), 1);
        assert_eq!(inj[0].virq, 79);
    });
    assert_eq!(rig.runner.measured[0].exits(ExitKind::HostIrq), 1);
    assert!(rig.host.acked.is_empty(), "not acknowledged before the guest is done with it");
    // A bit no device owns is ignored.
    signal(&mut rig, 1 << (SIGNAL_IRQ_FIRST + 5));
    assert_eq!(rig.runner.measured[0].exits(ExitKind::HostIrq), 1);
    // The guest EOIs: maintenance for LR 0 acknowledges the host handler (one entry).
    let lr = rig.model(|m| m.vcpu_injections(vcpu)[0].index);
    rig.model(|m| m.set_list_register(vcpu, lr.into(), ListRegister::Invalid));
    let entries = rig.exit(0, 0, Message::new(label::VGIC_MAINTENANCE, &[u64::from(lr)]));
    assert_eq!(rig.host.acked, [(0, 79)]);
    assert_eq!(entries, 0, "the test host's acknowledgement makes no model call");
}

/// test-guest.toml with its 16 MiB of RAM reserved at 0x4000_0000 (device untyped on QEMU
/// virt: the kernel does not zero it) and populated on first touch.
fn on_touch_system(map: vm_config::MapType) -> SystemConfig {
    let mut sys = example("test-guest.toml");
    sys.vms[0].memory[0].map = map;
    sys.vms[0].capvisor.populate_ram = vm_config::PopulateRam::OnTouch;
    sys
}

/// A 32-bit load from `addr` at `pc` whose data fault status is `dfsc`.
fn access_status(pc: u64, addr: u64, dfsc: u32) -> Message {
    let iss = (1 << 24) | (2 << 22) | (1 << 16) | dfsc;
    Message::new(label::VM_FAULT, &[pc, addr, 0, Esr::new(ec::DABT_LOWER, true, iss).0])
}

#[test]
fn on_touch_ram_is_zeroed_mapped_and_retried_at_its_first_touch() {
    instance!(I);
    let mut rig = Rig::<I>::with(on_touch_system(vm_config::MapType::Reserved), TestHost::default());
    let vspace = rig.vmm.vms[0].vspace;
    let mapped =
        |rig: &Rig<I>, gpa: u64| rig.model(|m| m.translate(vspace, sel4::VirtAddr(gpa)).map(|t| t.paddr.get()));
    // The kernel image's frame is in the stage 2, the other seven 2 MiB frames are not.
    assert_eq!(mapped(&rig, 0x4000_0000), Some(0x4000_0000));
    let untouched: Vec<u64> = rig.vmm.vms[0].state.untouched().iter().map(|f| f.gpa).collect();
    assert_eq!(untouched, (1..8).map(|k| 0x4000_0000 + k * 0x20_0000).collect::<Vec<_>>());
    assert!(rig.vmm.vms[0].state.untouched().iter().all(|f| f.zero && f.size == 0x20_0000));
    assert_eq!(mapped(&rig, 0x4020_0010), None);

    // First touch: zeroed through the VMM's window, mapped, cleaned, and the load retried
    // (a bare reply: the PC does not move).
    let pc_before = rig.model(|m| m.thread_registers(rig.vmm.vms[0].vcpus[0].tcb).pc);
    let entries = rig.exit(0, 0, access_status(0x4000_0100, 0x4020_0010, 0x07));
    assert_eq!(rig.runner.next_wait(), Wait::ReplyRecv(Message::new(0, &[])));
    assert_eq!(rig.host.zeroed.len(), 1);
    let (va, len) = rig.host.zeroed[0];
    assert_eq!(len, 0x20_0000);
    let behind = rig.model(|m| m.translate(sel4::init_cap::VSPACE.cap(), sel4::VirtAddr(va)).map(|t| t.paddr.get()));
    assert_eq!(behind, Some(0x4020_0000), "the VMM zeroed the frame the guest gets");
    assert_eq!(mapped(&rig, 0x4020_0010), Some(0x4020_0010));
    assert_eq!(rig.model(|m| m.thread_registers(rig.vmm.vms[0].vcpus[0].tcb).pc), pc_before);
    assert_eq!(entries, 2, "Page_Map and Page_CleanInvalidate_Data");
    assert!(!rig.vmm.vms[0].state.untouched().iter().any(|f| f.gpa == 0x4020_0000));

    // A second vCPU that faulted on the same frame before the map just retries.
    let entries = rig.exit(0, 0, access_status(0x4000_0104, 0x4020_0800, 0x07));
    assert_eq!((entries, rig.host.zeroed.len()), (0, 1));
    assert_eq!(rig.runner.next_wait(), Wait::ReplyRecv(Message::new(0, &[])));
    let c = rig.vmm.vms[0].state.counters();
    assert_eq!(c.exits(ExitKind::FirstTouch), 2);
    assert_eq!(c.exits(ExitKind::UnhandledAccess), 0);

    // A permission fault on mapped RAM is not a first touch.
    rig.exit(0, 0, access_status(0x4000_0108, 0x4020_0800, 0x0f));
    let c = rig.vmm.vms[0].state.counters();
    assert_eq!((c.exits(ExitKind::FirstTouch), c.exits(ExitKind::UnhandledAccess)), (2, 1));

    // An instruction fetch from an untouched frame populates it too.
    let ifetch = Esr::new(ec::IABT_LOWER, true, 0x07);
    rig.exit(0, 0, Message::new(label::VM_FAULT, &[0x4060_0000, 0x4060_0000, 1, ifetch.0]));
    assert_eq!(mapped(&rig, 0x4060_0000), Some(0x4060_0000));
    assert_eq!(rig.host.zeroed.len(), 2);
    // Predicted and measured entries agree for every first touch.
    // (the loop records an exit when the wait that closes it is made: one more exit).
    let kind = ExitKind::FirstTouch;
    rig.exit(0, 0, access_status(0x4000_010c, 0x4000_0000, 0x0f));
    assert_eq!(rig.runner.measured[0].exits(kind), 3);
    assert_eq!(rig.runner.measured[0].syscalls(kind), rig.vmm.vms[0].state.counters().syscalls(kind));
    // Page_Map, Page_CleanInvalidate_Data and ReplyRecv twice; ReplyRecv alone once.
    assert_eq!(rig.vmm.vms[0].state.counters().syscalls(kind), 3 + 1 + 3);
}

#[test]
fn on_touch_ram_the_kernel_zeroed_is_mapped_without_zeroing() {
    instance!(I);
    let mut rig = Rig::<I>::with(on_touch_system(vm_config::MapType::Alloc), TestHost::default());
    assert!(rig.vmm.vms[0].state.untouched().iter().all(|f| !f.zero));
    let gpa = rig.vmm.vms[0].state.untouched()[0].gpa;
    let entries = rig.exit(0, 0, access_status(0x4000_0100, gpa + 8, 0x07));
    assert_eq!((entries, rig.host.zeroed.len()), (1, 0), "Page_Map only");
    let vspace = rig.vmm.vms[0].vspace;
    assert!(rig.model(|m| m.translate(vspace, sel4::VirtAddr(gpa)).is_some()));
}

#[test]
fn a_first_touch_that_cannot_be_zeroed_stops_only_that_vm() {
    instance!(I);
    let host = TestHost { refuse_zero: true, ..TestHost::default() };
    let mut rig = Rig::<I>::with(on_touch_system(vm_config::MapType::Reserved), host);
    rig.exit(0, 0, access_status(0x4000_0100, 0x4020_0010, 0x07));
    let reason = StopReason::PopulateFailed { gpa: 0x4020_0000 };
    assert_eq!(rig.runner.ended[0], Some(Ended { reason, status: 6 }));
    assert_eq!(rig.runner.next_wait(), Wait::Recv, "no reply: the vCPU stays stopped");
    let vspace = rig.vmm.vms[0].vspace;
    assert!(rig.model(|m| m.translate(vspace, sel4::VirtAddr(0x4020_0000)).is_none()), "nothing stale mapped");
}
