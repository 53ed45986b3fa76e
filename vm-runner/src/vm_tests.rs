//! `handle_exit` for every exit kind, from the fault message the kernel would send to the
//! action, its cost, and what the VM state became.

use alloc::vec;
use alloc::vec::Vec;

use sel4::fault::label;
use sel4::{Message, Op, UserContext};
use vm_config::{EmulatedDevice, GuestPhysAddr, GuestRange, Image, PassthroughDevice, VmConfig};

use super::*;
use crate::action::{AbortKind, Next, Notice, StopReason, VcpuStart};
use crate::devices::pl011;
use crate::devices::psci::{fid, ret};
use crate::devices::vgic::{Injection, reg as gicd};
use crate::esr::{Esr, ec};

const RAM: u64 = 0x4000_0000;
const GICD: u64 = 0x0800_0000;
const UART: u64 = 0x0900_0000;
const UART_IRQ: u16 = 33;
const PC: u64 = 0x4000_1000;

fn config(policy: UnhandledMmio) -> VmConfig {
    let mut c = VmConfig::minimal(1, "test", GuestRange::new(RAM, 0x100_0000), RAM);
    c.cpu_num = 2;
    c.dtb = Some(Image { path: "x.dtb".into(), load_addr: GuestPhysAddr(RAM + 0x80_0000) });
    c.emulated = vec![
        EmulatedDevice {
            name: "gicd".into(),
            range: GuestRange::new(GICD, 0x1_0000),
            irq: 0,
            kind: EmulatedKind::InterruptController,
            cfg: vec![],
        },
        EmulatedDevice {
            name: "uart".into(),
            range: GuestRange::new(UART, 0x1000),
            irq: UART_IRQ.into(),
            kind: EmulatedKind::Console,
            cfg: vec![],
        },
        EmulatedDevice {
            name: "dummy".into(),
            range: GuestRange::new(0x0a00_0000, 0x1000),
            irq: 0,
            kind: EmulatedKind::Dummy,
            cfg: vec![],
        },
    ];
    c.passthrough = vec![PassthroughDevice { name: "rtc".into(), region: None, irq: 40 }];
    c.capvisor.unhandled_mmio = policy;
    c
}

fn vm() -> VmState {
    VmState::new(&config(UnhandledMmio::Stop), Platform::QEMU_VIRT).unwrap()
}

fn vm_abort() -> VmState {
    VmState::new(&config(UnhandledMmio::InjectAbort), Platform::QEMU_VIRT).unwrap()
}

/// A data abort as the kernel reports it: `size` bytes (SAS), register `srt`, write or read.
fn dabt(addr: u64, size: u32, srt: u32, write: bool) -> Exit {
    let iss = (1 << 24) | (size << 22) | (srt << 16) | (1 << 15) | (u32::from(write) << 6) | 0x07;
    Exit::decode(&Message::new(label::VM_FAULT, &[PC, addr, 0, Esr::new(ec::DABT_LOWER, true, iss).0]))
}

/// A guest `HVC` with `x0`-`x3` and `x7` 0, as seL4 reports it (an unknown system call 0).
fn hvc(x: [u64; 4]) -> Exit {
    hvc_x7(x, 0)
}

/// A guest `HVC` whose `x7` seL4 read as system call number `x7` and does not have.
fn hvc_x7(x: [u64; 4], x7: i64) -> Exit {
    let mut w = [0u64; 13];
    w[..4].copy_from_slice(&x);
    w[7] = x7 as u64;
    w[8] = PC;
    w[11] = 0x3c5;
    w[12] = x7 as u64;
    Exit::decode(&Message::new(label::UNKNOWN_SYSCALL, &w))
}

fn vcpu_fault(ec: u8, iss: u32) -> Exit {
    Exit::decode(&Message::new(label::VCPU_FAULT, &[Esr::new(ec, true, iss).0]))
}

fn regs_with(pairs: &[(usize, u64)]) -> UserContext {
    let mut r = UserContext { pc: PC, sp: 0x4100_0000, spsr: 0x3c5, ..Default::default() };
    for &(i, v) in pairs {
        r.x[i] = v;
    }
    r
}

/// Runs one exit the way the run loop does: registers read only when asked for.
fn run(vm: &mut VmState, vcpu: usize, exit: &Exit, regs: &UserContext) -> (Action, Vec<Op>) {
    let fetched = vm.registers_needed(exit);
    let a = vm.handle_exit(vcpu, exit, fetched.then_some(regs));
    let ops = a.ops(fetched);
    (a, ops)
}

fn gicd_write(vm: &mut VmState, vcpu: usize, offset: u64, value: u64) -> Action {
    run(vm, vcpu, &dabt(GICD + offset, 2, 1, true), &regs_with(&[(1, value)])).0
}

fn enable_irq(vm: &mut VmState, vcpu: usize, id: u16) {
    gicd_write(vm, vcpu, gicd::CTLR, 1);
    gicd_write(vm, vcpu, gicd::ISENABLER + u64::from(id / 32) * 4, 1 << (id % 32));
    if id >= 32 {
        run(vm, vcpu, &dabt(GICD + gicd::ITARGETSR + u64::from(id), 0, 1, true), &regs_with(&[(1, 1)]));
    }
}

// ---- MMIO ----

#[test]
fn mmio_read_into_a_register_costs_three_and_extends_the_value() {
    let mut vm = vm();
    let exit = dabt(UART + pl011::reg::FR, 2, 1, false);
    assert!(vm.registers_needed(&exit));
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[]));
    let fr = u64::from(pl011::fr::TXFE | pl011::fr::RXFE);
    assert_eq!(a.next, Next::SetRegister { reg: 1, value: fr, pc: PC + 4 });
    assert_eq!(ops, [Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::ReplyRecv]);
    assert_eq!((vm.counters().exits(ExitKind::MmioRead), vm.counters().syscalls(ExitKind::MmioRead)), (1, 3));
    // The register write is a prefix through x1 of what was read.
    let (c, n) = a.next.registers_to_write(Some(&regs_with(&[(1, 7)]))).unwrap();
    assert_eq!((c.x[1], c.pc, c.sp, n), (fr, PC + 4, 0x4100_0000, 5));
}

#[test]
fn mmio_read_into_xzr_costs_two() {
    let mut vm = vm();
    let exit = dabt(UART + pl011::reg::FR, 2, 31, false);
    assert!(!vm.registers_needed(&exit));
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 });
    assert_eq!(ops, [Op::TcbWriteRegisters, Op::ReplyRecv]);
}

#[test]
fn mmio_write_takes_the_value_from_the_register_and_costs_three() {
    let mut vm = vm();
    for (i, b) in b"hi\n".iter().enumerate() {
        let exit = dabt(UART + pl011::reg::DR, 0, 2, true);
        assert!(vm.registers_needed(&exit));
        // Bits above the access size are not part of the store.
        let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[(2, 0xffff_ff00 | u64::from(*b))]));
        assert_eq!(a.next, Next::Advance { pc: PC + 4 }, "byte {i}");
        assert_eq!(ops, [Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::ReplyRecv]);
    }
    assert_eq!(vm.take_console_output(), b"hi\n");
    assert_eq!(vm.counters().syscalls(ExitKind::MmioWrite), 9);
}

#[test]
fn mmio_write_of_wzr_costs_two() {
    let mut vm = vm();
    let exit = dabt(UART + pl011::reg::IMSC, 2, 31, true);
    assert!(!vm.registers_needed(&exit));
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 });
    assert_eq!(ops, [Op::TcbWriteRegisters, Op::ReplyRecv]);
}

#[test]
fn a_write_without_the_registers_it_needs_stops_the_vm_instead_of_guessing() {
    let mut vm = vm();
    let a = vm.handle_exit(0, &dabt(UART, 0, 2, true), None);
    assert_eq!(a.next, Next::Stop(StopReason::MissingRegisters));
    assert_eq!(vm.stopped(), Some(StopReason::MissingRegisters));
}

#[test]
fn the_dummy_device_reads_zero_and_ignores_writes() {
    let mut vm = vm();
    let (a, _) = run(&mut vm, 0, &dabt(0x0a00_0010, 3, 4, false), &regs_with(&[]));
    assert_eq!(a.next, Next::SetRegister { reg: 4, value: 0, pc: PC + 4 });
    let (a, _) = run(&mut vm, 0, &dabt(0x0a00_0010, 3, 4, true), &regs_with(&[(4, 9)]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 });
}

// ---- accesses nothing answers ----

#[test]
fn unhandled_access_stops_the_vm_under_the_stop_policy() {
    let mut vm = vm();
    let exit = dabt(0x1000_0000, 2, 1, true);
    assert!(!vm.registers_needed(&exit), "the value of a store to nothing is not needed");
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[]));
    let reason = StopReason::Abort { ip: PC, addr: 0x1000_0000, instruction: false, write: true };
    assert_eq!(a.next, Next::Stop(reason));
    assert_eq!(
        a.effects.notices[0],
        Notice::UnhandledAccess { vcpu: 0, ip: PC, addr: 0x1000_0000, write: true, instruction: false }
    );
    // The exiting vCPU is suspended too (it may not be waiting: see `VmState::stop`).
    assert_eq!(ops, [Op::TcbSuspend, Op::Recv]);
    // The VM stays stopped: any later exit says so again, at the cost of a Recv.
    let (a, _) = run(&mut vm, 0, &hvc([fid::VERSION.into(), 0, 0, 0]), &regs_with(&[]));
    assert_eq!(a.next, Next::Stop(reason));
    assert_eq!(vm.counters().exits(ExitKind::UnhandledAccess), 1);
}

#[test]
fn unhandled_access_injects_an_abort_logged_once_per_address_with_bounded_memory() {
    let mut vm = vm_abort();
    let (a, ops) = run(&mut vm, 0, &dabt(0x1000_0000, 2, 1, false), &regs_with(&[]));
    assert_eq!(a.next, Next::InjectAbort(AbortKind { instruction: false, write: false }));
    assert_eq!(a.effects.notices.len(), 1);
    assert_eq!(ops.len(), 7, "read registers, VBAR, three EL1 registers, write registers, reply");
    let (a, _) = run(&mut vm, 0, &dabt(0x1000_0000, 2, 1, false), &regs_with(&[]));
    assert_eq!(a.effects.notices, [], "same address: not logged again");
    // Many distinct addresses: notices stop after the set fills, with one "suppressed".
    let mut notices = 0;
    let mut suppressed = 0;
    for i in 1..10_000u64 {
        let (a, _) = run(&mut vm, 0, &dabt(0x1000_0000 + i * 8, 3, 1, false), &regs_with(&[]));
        assert_eq!(a.next, Next::InjectAbort(AbortKind { instruction: false, write: false }));
        for n in &a.effects.notices {
            match n {
                Notice::Suppressed => suppressed += 1,
                _ => notices += 1,
            }
        }
    }
    assert_eq!((notices, suppressed), (LOG_ONCE_CAPACITY - 1, 1));
    assert_eq!(vm.stopped(), None);
}

#[test]
fn device_accesses_without_a_syndrome_are_not_emulated() {
    let mut vm = vm_abort();
    // ISV clear (e.g. `ldp`): nothing says which register.
    let esr = Esr::new(ec::DABT_LOWER, true, 0x07);
    let exit = Exit::decode(&Message::new(label::VM_FAULT, &[PC, UART, 0, esr.0]));
    assert!(!vm.registers_needed(&exit));
    let (a, _) = run(&mut vm, 0, &exit, &regs_with(&[]));
    assert_eq!(a.next, Next::InjectAbort(AbortKind { instruction: false, write: false }));
    assert_eq!(a.effects.notices, [Notice::NoSyndrome { vcpu: 0, ip: PC, addr: UART }]);
    assert_eq!(vm.counters().exits(ExitKind::UnhandledAccess), 1);
}

#[test]
fn instruction_aborts_follow_the_policy() {
    let exit = Exit::decode(&Message::new(label::VM_FAULT, &[0x1000, 0x1000, 1, Esr::new(ec::IABT_LOWER, true, 7).0]));
    let mut aborting = vm_abort();
    let (a, _) = run(&mut aborting, 0, &exit, &regs_with(&[]));
    assert_eq!(a.next, Next::InjectAbort(AbortKind { instruction: true, write: false }));
    let mut stopping = vm();
    let (a, _) = run(&mut stopping, 0, &exit, &regs_with(&[]));
    assert_eq!(a.next, Next::Stop(StopReason::Abort { ip: 0x1000, addr: 0x1000, instruction: true, write: false }));
}

// ---- PSCI ----

#[test]
fn psci_over_hvc_returns_in_the_reply_for_one_system_call() {
    let mut vm = vm();
    let exit = hvc([fid::VERSION.into(), 11, 22, 33]);
    assert!(!vm.registers_needed(&exit));
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[]));
    assert_eq!(a.next, Next::HvcReply { x: [0x1_0000, 11, 22, 33, 0, 0, 0, 0], pc: PC + 4 });
    assert_eq!(ops, [Op::ReplyRecv]);
    let (a, _) = run(&mut vm, 0, &hvc([0xc200_0001, 0, 0, 0]), &regs_with(&[]));
    assert!(matches!(a.next, Next::HvcReply { x: [ret::NOT_SUPPORTED, ..], .. }));
    assert_eq!(vm.counters().syscalls(ExitKind::Hvc), 2);
}

#[test]
fn cpu_on_starts_the_vcpu_and_cpu_off_stops_it() {
    let mut vm = vm();
    assert_eq!(vm.vcpu(1).unwrap().power, Power::Off);
    let (a, ops) = run(&mut vm, 0, &hvc([fid::CPU_ON_64.into(), 1, RAM + 0x100, 0x77]), &regs_with(&[]));
    assert!(matches!(a.next, Next::HvcReply { x: [ret::SUCCESS, ..], .. }));
    assert_eq!(a.effects.starts, [VcpuStart { vcpu: 1, entry: RAM + 0x100, context: 0x77, reset_sctlr: false }]);
    assert_eq!(ops, [Op::TcbWriteRegisters, Op::ReplyRecv]);
    assert_eq!(vm.vcpu(1).unwrap().power, Power::On);
    // Again: already on.
    let (a, _) = run(&mut vm, 0, &hvc([fid::CPU_ON_64.into(), 1, RAM, 0]), &regs_with(&[]));
    assert!(matches!(a.next, Next::HvcReply { x: [ret::ALREADY_ON, ..], .. }));
    // vCPU 1 turns itself off: no reply.
    let (a, ops) = run(&mut vm, 1, &hvc([fid::CPU_OFF.into(), 0, 0, 0]), &regs_with(&[]));
    assert_eq!((a.next, ops), (Next::Off, vec![Op::Recv]));
    // Started again, it must come up with its MMU off.
    let (a, ops) = run(&mut vm, 0, &hvc([fid::CPU_ON_64.into(), 1, RAM, 0]), &regs_with(&[]));
    assert!(a.effects.starts[0].reset_sctlr);
    assert_eq!(ops, [Op::VCpuWriteReg, Op::TcbWriteRegisters, Op::ReplyRecv]);
    // Both off: the VM is done.
    run(&mut vm, 1, &hvc([fid::CPU_OFF.into(), 0, 0, 0]), &regs_with(&[]));
    let (a, _) = run(&mut vm, 0, &hvc([fid::CPU_OFF.into(), 0, 0, 0]), &regs_with(&[]));
    assert_eq!(a.next, Next::Stop(StopReason::AllCpusOff));
}

#[test]
fn system_off_and_reset_stop_the_vm_and_suspend_its_vcpus() {
    let mut vm = vm();
    run(&mut vm, 0, &hvc([fid::CPU_ON_64.into(), 1, RAM, 0]), &regs_with(&[]));
    // An unfinished console line is there as written when the VM stops.
    run(&mut vm, 0, &dabt(UART, 0, 1, true), &regs_with(&[(1, u64::from(b'z'))]));
    let (a, ops) = run(&mut vm, 0, &hvc([fid::SYSTEM_OFF.into(), 0, 0, 0]), &regs_with(&[]));
    assert_eq!(a.next, Next::Stop(StopReason::PoweredOff));
    assert_eq!(a.effects.suspends, [0, 1]);
    assert_eq!(ops, [Op::TcbSuspend, Op::TcbSuspend, Op::Recv]);
    assert_eq!(vm.take_console_output(), b"z");
    assert_eq!(StopReason::PoweredOff.status(), 0);
    let mut vm2 = vm_abort();
    let (a, _) = run(&mut vm2, 0, &hvc([fid::SYSTEM_RESET.into(), 0, 0, 0]), &regs_with(&[]));
    assert_eq!((a.next, a.effects.suspends.len()), (Next::Stop(StopReason::Reset), 1));
}

#[test]
fn psci_over_smc_reads_its_arguments_and_writes_x0() {
    let mut vm = vm();
    let exit = vcpu_fault(ec::SMC64, 0);
    assert!(vm.registers_needed(&exit));
    let regs = regs_with(&[(0, fid::AFFINITY_INFO_64.into()), (1, 1), (2, 0)]);
    let (a, ops) = run(&mut vm, 0, &exit, &regs);
    assert_eq!(a.next, Next::SetRegister { reg: 0, value: ret::AFFINITY_OFF, pc: PC + 4 });
    assert_eq!(ops, [Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::ReplyRecv]);
    assert_eq!(vm.counters().syscalls(ExitKind::Smc), 3);
    assert_eq!(vm.handle_exit(0, &exit, None).next, Next::Stop(StopReason::MissingRegisters));
}

#[test]
fn an_hvc_reported_as_a_vcpu_fault_is_psci_like_an_smc() {
    let mut vm = vm();
    let exit = vcpu_fault(ec::HVC64, 0);
    assert!(vm.registers_needed(&exit));
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[(0, fid::MIGRATE_INFO_TYPE.into())]));
    assert_eq!(a.next, Next::SetRegister { reg: 0, value: ret::MIGRATE_NOT_REQUIRED, pc: PC + 4 });
    assert_eq!(ops.len(), 3);
    assert_eq!(vm.counters().exits(ExitKind::Smc), 1);
}

#[test]
fn an_hvc_that_collided_with_a_sel4_syscall_number_is_still_psci() {
    let mut vm = vm();
    let exit = Exit::decode(&Message::new(label::CAP_FAULT, &[PC, fid::VERSION.into(), 0, 1]));
    assert!(vm.registers_needed(&exit));
    let (a, _) = run(&mut vm, 0, &exit, &regs_with(&[(0, fid::VERSION.into())]));
    assert_eq!(a.next, Next::SetRegister { reg: 0, value: 0x1_0000, pc: PC + 4 });
    assert_eq!(vm.counters().exits(ExitKind::HvcSel4Call), 1);
    assert_eq!(vm.counters().exits(ExitKind::Hvc), 0);
}

#[test]
fn an_hvc_with_a_sel4_debug_call_number_the_kernel_lacks_is_psci_counted_apart() {
    let mut vm = vm();
    // DebugHalt (-11) on a kernel without KernelDebugBuild: an unknown system call.
    let exit = hvc_x7([fid::VERSION.into(), 0, 0, 0], -11);
    assert!(!vm.registers_needed(&exit));
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[]));
    assert_eq!(a.next, Next::HvcReply { x: [0x1_0000, 0, 0, 0, 0, 0, 0, -11i64 as u64], pc: PC + 4 });
    assert_eq!(ops, [Op::ReplyRecv]);
    assert_eq!((vm.counters().exits(ExitKind::HvcSel4Call), vm.counters().exits(ExitKind::Hvc)), (1, 0));
    assert_eq!(vm.counters().syscalls(ExitKind::HvcSel4Call), 1);
}

// ---- WFI / WFE / system registers ----

#[test]
fn wfi_parks_until_an_interrupt_is_injected() {
    let mut vm = vm();
    enable_irq(&mut vm, 0, UART_IRQ);
    run(&mut vm, 0, &dabt(UART + pl011::reg::IMSC, 2, 1, true), &regs_with(&[(1, u64::from(pl011::int::RX))]));
    let (a, ops) = run(&mut vm, 0, &vcpu_fault(ec::WFX, 0), &regs_with(&[]));
    assert_eq!(a.next, Next::Park { resume_at: Some(PC + 4), arm_timer: true }, "it goes on after the WFI");
    assert_eq!(
        ops,
        [Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::VCpuReadReg, Op::VCpuReadReg, Op::Call, Op::Recv]
    );
    assert!(vm.vcpu(0).unwrap().parked);
    // Console input raises the UART's interrupt: injected, and the parked vCPU woken.
    let e = vm.console_input(b"x");
    assert_eq!(e.injections, [Injection { vcpu: 0, lr: 0, virq: UART_IRQ, priority: 0, group: 0 }]);
    assert_eq!(e.wakes, [0]);
    assert!(!vm.vcpu(0).unwrap().parked);
    assert_eq!(vm.counters().syscalls(ExitKind::ConsoleInput), 2);
}

#[test]
fn wfi_with_an_interrupt_waiting_injects_it_and_resumes() {
    let mut vm = vm();
    for id in 40..45u16 {
        enable_irq(&mut vm, 0, id);
    }
    // Every list register busy, so the forwarded interrupt queues.
    for id in 41..45u16 {
        vm.vgic.raise_spi(id);
    }
    assert_eq!(vm.vgic.fill(0).len(), 4);
    assert_eq!(vm.host_irq(40).injections, [], "queued: no free list register");
    vm.vgic.maintenance(0, 2);
    let (a, ops) = run(&mut vm, 0, &vcpu_fault(ec::WFX, 0), &regs_with(&[]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 }, "the WFI completes");
    assert_eq!(a.effects.injections, [Injection { vcpu: 0, lr: 2, virq: 40, priority: 0, group: 0 }]);
    assert_eq!(ops, [Op::TcbReadRegisters, Op::VCpuInjectIrq, Op::TcbWriteRegisters, Op::ReplyRecv]);
}

#[test]
fn wfi_with_an_interrupt_already_in_a_list_register_does_not_park() {
    // vCPUs on two cores: another vCPU's exit injected this one's interrupt after its WFI
    // trapped and before the VMM took that exit. Parked, nothing would wake it.
    let mut vm = vm();
    enable_irq(&mut vm, 0, 40);
    vm.vgic.raise_spi(40);
    assert_eq!(vm.vgic.fill(0).len(), 1);
    let (a, ops) = run(&mut vm, 0, &vcpu_fault(ec::WFX, 0), &regs_with(&[]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 }, "the WFI completes");
    assert_eq!(a.effects.injections, []);
    assert_eq!(ops, [Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::ReplyRecv]);
    assert!(!vm.vcpu(0).unwrap().parked);
    // Once the guest is done with it (maintenance), a WFI parks again.
    vm.vgic.maintenance(0, 0);
    let (a, _) = run(&mut vm, 0, &vcpu_fault(ec::WFX, 0), &regs_with(&[]));
    assert!(matches!(a.next, Next::Park { .. }), "{:?}", a.next);
}

#[test]
fn wfe_resumes_for_one_system_call() {
    let mut vm = vm();
    let (a, ops) = run(&mut vm, 0, &vcpu_fault(ec::WFX, 1), &regs_with(&[]));
    assert_eq!((a.next, ops), (Next::Resume, vec![Op::ReplyRecv]));
    assert_eq!(vm.counters().exits(ExitKind::Wfe), 1);
}

#[test]
fn trapped_system_registers_read_as_zero_and_ignore_writes_logged_once() {
    let mut vm = vm();
    // MRS x3, S3_0_C15_C0_0 (an IMPLEMENTATION DEFINED register).
    let mrs = (3 << 20) | (15 << 10) | (3 << 5) | 1;
    let (a, ops) = run(&mut vm, 0, &vcpu_fault(ec::SYS64, mrs), &regs_with(&[(3, 99)]));
    assert_eq!(a.next, Next::SetRegister { reg: 3, value: 0, pc: PC + 4 });
    assert!(matches!(a.effects.notices[..], [Notice::SysRegIgnored { vcpu: 0, ip: PC, .. }]));
    assert_eq!(ops.len(), 3);
    let (a, _) = run(&mut vm, 0, &vcpu_fault(ec::SYS64, mrs & !1), &regs_with(&[]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 });
    assert_eq!(a.effects.notices, [], "same register: logged once");
    let (a, _) = run(&mut vm, 0, &vcpu_fault(ec::SYS64, (mrs & !(0x1f << 5)) | (31 << 5)), &regs_with(&[]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 }, "a read into xzr only advances");
}

// ---- interrupts ----

#[test]
fn virtual_timer_is_injected_and_acknowledged_on_eoi() {
    let mut vm = vm();
    enable_irq(&mut vm, 0, 27);
    let vppi = Exit::decode(&Message::new(label::VPPI_EVENT, &[27]));
    let (a, ops) = run(&mut vm, 0, &vppi, &regs_with(&[]));
    assert_eq!(a.next, Next::Resume);
    assert_eq!(a.effects.injections, [Injection { vcpu: 0, lr: 0, virq: 27, priority: 0, group: 0 }]);
    assert_eq!(ops, [Op::VCpuInjectIrq, Op::ReplyRecv]);
    let eoi = Exit::decode(&Message::new(label::VGIC_MAINTENANCE, &[0]));
    let (a, ops) = run(&mut vm, 0, &eoi, &regs_with(&[]));
    assert_eq!((a.next, a.effects.vppi_acks.clone()), (Next::Resume, vec![(0, 27)]));
    assert_eq!(ops, [Op::VCpuAckVppi, Op::ReplyRecv]);
    // A second EOI of the same list register acknowledges nothing.
    let (a, _) = run(&mut vm, 0, &eoi, &regs_with(&[]));
    assert_eq!(a.effects.vppi_acks, []);
    assert_eq!(vm.counters().syscalls(ExitKind::Vppi), 2);
}

#[test]
fn a_disabled_timer_ppi_waits_masked_until_the_guest_enables_it() {
    let mut vm = vm();
    gicd_write(&mut vm, 0, gicd::CTLR, 1);
    let (a, ops) = run(&mut vm, 0, &Exit::decode(&Message::new(label::VPPI_EVENT, &[27])), &regs_with(&[]));
    assert_eq!((a.effects.injections.len(), ops), (0, vec![Op::ReplyRecv]));
    let a = gicd_write(&mut vm, 0, gicd::ISENABLER, 1 << 27);
    assert_eq!(a.effects.injections.len(), 1, "enabling it delivers it");
    let (_, ops) = run(&mut vm, 0, &dabt(GICD + gicd::ISENABLER, 2, 1, true), &regs_with(&[(1, 1 << 27)]));
    assert_eq!(ops.len(), 3, "nothing more to inject");
}

#[test]
fn a_vcpu_whose_timer_ppi_awaits_acknowledgement_parks_without_a_deadline() {
    let mut vm = vm();
    // The guest keeps PPI 27 disabled, so the expiry stays pending in the model, unacknowledged.
    gicd_write(&mut vm, 0, gicd::CTLR, 1);
    run(&mut vm, 0, &Exit::decode(&Message::new(label::VPPI_EVENT, &[27])), &regs_with(&[]));
    let (a, ops) = run(&mut vm, 0, &vcpu_fault(ec::WFX, 0), &regs_with(&[]));
    assert_eq!(
        (a.next, ops),
        (
            Next::Park { resume_at: Some(PC + 4), arm_timer: false },
            vec![Op::TcbReadRegisters, Op::TcbWriteRegisters, Op::Recv]
        )
    );
    assert!(vm.vcpu(0).unwrap().parked);
}

#[test]
fn an_unknown_ppi_is_noted_and_left_masked() {
    let mut vm = vm();
    let (a, _) = run(&mut vm, 0, &Exit::decode(&Message::new(label::VPPI_EVENT, &[26])), &regs_with(&[]));
    assert_eq!(a.next, Next::Resume);
    assert_eq!(a.effects.notices, [Notice::UnknownPpi { vcpu: 0, irq: 26 }]);
    assert_eq!(a.effects.vppi_acks, []);
}

#[test]
fn maintenance_refills_from_the_overflow_and_acknowledges_forwarded_interrupts() {
    let mut vm = vm();
    enable_irq(&mut vm, 0, 40);
    for id in 41..45u16 {
        enable_irq(&mut vm, 0, id);
    }
    // Four list registers: four injected, the forwarded host interrupt 40 waits.
    for id in 41..45u16 {
        vm.vgic.raise_spi(id);
    }
    assert_eq!(vm.vgic.fill(0).len(), 4);
    assert_eq!(vm.host_irq(40).injections, []);
    assert_eq!(vm.vgic.queued(0), [40]);
    let (a, ops) = run(&mut vm, 0, &Exit::decode(&Message::new(label::VGIC_MAINTENANCE, &[1])), &regs_with(&[]));
    assert_eq!(a.effects.injections, [Injection { vcpu: 0, lr: 1, virq: 40, priority: 0, group: 0 }]);
    assert_eq!(a.effects.host_irq_acks, [0u16; 0], "42 was not forwarded");
    assert_eq!(ops, [Op::VCpuInjectIrq, Op::ReplyRecv]);
    let (a, ops) = run(&mut vm, 0, &Exit::decode(&Message::new(label::VGIC_MAINTENANCE, &[1])), &regs_with(&[]));
    assert_eq!(a.effects.host_irq_acks, [40], "the guest finished with the host's interrupt");
    assert_eq!(ops, [Op::IrqHandlerAck, Op::ReplyRecv]);
    // The kernel could not tell which list register: nothing freed, nothing acknowledged.
    let (a, ops) = run(&mut vm, 0, &Exit::decode(&Message::new(label::VGIC_MAINTENANCE, &[u64::MAX])), &regs_with(&[]));
    assert_eq!((a.next, ops), (Next::Resume, vec![Op::ReplyRecv]));
    assert_eq!(vm.host_irq(7).injections, [], "not a forwarded interrupt");
}

#[test]
fn an_sgi_to_a_parked_vcpu_injects_and_wakes_it() {
    let mut vm = vm();
    run(&mut vm, 0, &hvc([fid::CPU_ON_64.into(), 1, RAM, 0]), &regs_with(&[]));
    enable_irq(&mut vm, 1, 3);
    let (a, _) = run(&mut vm, 1, &vcpu_fault(ec::WFX, 0), &regs_with(&[]));
    assert_eq!(a.next, Next::Park { resume_at: Some(PC + 4), arm_timer: true });
    let a = gicd_write(&mut vm, 0, gicd::SGIR, (0b10 << 16) | 3);
    assert_eq!(a.effects.injections, [Injection { vcpu: 1, lr: 0, virq: 3, priority: 0, group: 0 }]);
    assert_eq!(a.effects.wakes, [1]);
}

#[test]
fn a_parked_vcpu_wakes_for_its_timer() {
    let mut vm = vm();
    run(&mut vm, 0, &vcpu_fault(ec::WFX, 0), &regs_with(&[]));
    let e = vm.timer_wake(0);
    assert_eq!(e.wakes, [0]);
    assert_eq!(vm.timer_wake(0).wakes, [0usize; 0], "already awake");
    assert_eq!(vm.timer_wake(9).wakes, [0usize; 0], "no such vCPU");
    assert_eq!(vm.counters().exits(ExitKind::TimerWake), 3);
    assert_eq!(vm.counters().syscalls(ExitKind::TimerWake), 1);
}

// ---- everything else ----

#[test]
fn traps_and_faults_capvisor_does_not_handle_stop_the_vm() {
    let mut one = vm();
    let (a, _) = run(
        &mut one,
        0,
        &Exit::decode(&Message::new(label::USER_EXCEPTION, &[PC, 0, 0, 0x200_0000, 0])),
        &regs_with(&[]),
    );
    assert_eq!(a.next, Next::Stop(StopReason::UnhandledTrap { ip: PC, esr: 0x200_0000 }));
    let mut two = vm_abort();
    let (a, _) = run(&mut two, 0, &vcpu_fault(ec::FP_SIMD, 0), &regs_with(&[]));
    assert!(matches!(a.next, Next::Stop(StopReason::UnhandledTrap { .. })));
    for (exit, lbl) in [
        (Exit::decode(&Message::new(label::NULL_FAULT, &[])), 0),
        (Exit::decode(&Message::new(label::VM_FAULT, &[1])), label::VM_FAULT),
    ] {
        let mut v = vm_abort();
        let (a, _) = run(&mut v, 0, &exit, &regs_with(&[]));
        assert_eq!(a.next, Next::Stop(StopReason::BadFault { label: lbl }));
        assert_eq!(v.counters().exits(ExitKind::Other), 1);
    }
}

#[test]
fn a_vcpu_index_the_vm_does_not_have_is_refused_without_stopping_the_vm() {
    let mut vm = vm();
    let a = vm.handle_exit(5, &hvc([fid::VERSION.into(), 0, 0, 0]), None);
    assert!(matches!(a.next, Next::Stop(StopReason::BadFault { .. })));
    assert_eq!(vm.stopped(), None);
}

#[test]
fn a_stopped_vm_takes_no_more_events() {
    let mut vm = vm();
    run(&mut vm, 0, &hvc([fid::SYSTEM_OFF.into(), 0, 0, 0]), &regs_with(&[]));
    assert_eq!(vm.console_input(b"abc"), Effects::default());
    assert_eq!(vm.host_irq(40), Effects::default());
    assert!(!vm.registers_needed(&dabt(UART, 0, 1, true)));
}

#[test]
fn boot_starts_vcpu_0_at_the_entry_with_the_dtb_in_x0() {
    let vm = vm();
    assert_eq!(vm.boot(), VcpuStart { vcpu: 0, entry: RAM, context: RAM + 0x80_0000, reset_sctlr: false });
    assert_eq!(vm.name(), "test");
}

#[test]
fn overlapping_devices_are_refused_when_the_vm_is_built() {
    let mut c = config(UnhandledMmio::Stop);
    c.emulated[1].range = GuestRange::new(GICD + 0x8000, 0x1000);
    assert!(matches!(VmState::new(&c, Platform::QEMU_VIRT), Err(BuildError::Mmio { .. })));
    c.cpu_num = 0;
    assert_eq!(VmState::new(&c, Platform::QEMU_VIRT).unwrap_err(), BuildError::Cpus(0));
}

/// SplitMix64, fixed seed (the exit decoder's tests use the same one).
use crate::exit::tests::Rng;

#[test]
fn random_exits_and_events_never_panic() {
    let mut rng = Rng(0xcafe);
    let mut stops = 0;
    for round in 0..200 {
        let mut v = if round % 2 == 0 { vm() } else { vm_abort() };
        let mut counted = 0u64;
        for _ in 0..1000 {
            let r = rng.next();
            // Fault messages with real labels and random words, biased to hit the devices.
            let lbl = [
                label::VM_FAULT,
                label::UNKNOWN_SYSCALL,
                label::VCPU_FAULT,
                label::VGIC_MAINTENANCE,
                label::VPPI_EVENT,
                label::CAP_FAULT,
                label::USER_EXCEPTION,
                r % 16,
            ][(r % 8) as usize];
            let mut words = [0u64; 13];
            for w in words.iter_mut() {
                *w = rng.next();
            }
            if lbl == label::VM_FAULT {
                words[1] = [GICD, UART, 0x0a00_0000, RAM, 0][(r >> 8) as usize % 5] + (words[1] & 0xfff);
                words[2] &= 1;
                words[3] = (words[3] & 0x1ff_ffff) | (u64::from(ec::DABT_LOWER) << 26);
            }
            if lbl == label::VCPU_FAULT {
                let class = [ec::WFX, ec::SMC64, ec::SYS64, ec::HVC64, rng.next() as u8 & 0x3f][(r >> 12) as usize % 5];
                words[0] = (words[0] & 0x1ff_ffff) | (u64::from(class) << 26);
            }
            if lbl == label::UNKNOWN_SYSCALL || lbl == label::CAP_FAULT {
                words[0] = [
                    fid::CPU_ON_64,
                    fid::CPU_OFF,
                    fid::AFFINITY_INFO_64,
                    fid::SYSTEM_OFF,
                    fid::VERSION,
                    rng.next() as u32,
                ][(r >> 16) as usize % 6]
                    .into();
                words[1] = rng.next() % 3;
            }
            if lbl == label::VGIC_MAINTENANCE {
                words[0] %= 6;
            }
            let len = if r >> 60 == 0 { (r >> 20) as usize % 14 } else { 13 };
            let exit = Exit::decode(&Message::new(lbl, &words[..len]));
            let mut regs = UserContext::default();
            for x in regs.x.iter_mut() {
                *x = rng.next();
            }
            regs.pc = rng.next();
            let vcpu = (rng.next() % 3) as usize;
            if vcpu < 2 {
                counted += 1;
            }
            let fetched = v.registers_needed(&exit);
            let a = v.handle_exit(vcpu, &exit, (fetched || r & 1 == 0).then_some(&regs));
            let _ = a.ops(fetched);
            let _ = a.next.reply();
            let _ = a.next.registers_to_write(Some(&regs));
            match rng.next() % 8 {
                0 => {
                    v.host_irq((rng.next() % 1100) as u16);
                    counted += 1;
                }
                1 => {
                    v.console_input(&rng.next().to_le_bytes());
                    counted += 1;
                }
                2 => {
                    v.timer_wake((rng.next() % 3) as usize);
                    counted += 1;
                }
                _ => {}
            }
            let _ = v.take_console_output();
        }
        if v.stopped().is_some() {
            stops += 1;
        }
        // Every exit and event of an existing vCPU was counted once.
        assert_eq!(v.counters().total_exits(), counted);
    }
    assert!(stops > 0, "the random guests reached a stop");
}

// ---- GICv3 ----

const GICR: u64 = 0x080a_0000;

/// `config` with a GICv3: the distributor at GICD, two redistributors at GICR.
fn config_v3() -> VmConfig {
    let mut c = config(UnhandledMmio::Stop);
    c.emulated[0].kind = EmulatedKind::GicV3Distributor;
    c.emulated.push(EmulatedDevice {
        name: "gicr".into(),
        range: GuestRange::new(GICR, 2 * vm_config::GICR_BYTES_PER_CPU),
        irq: 0,
        kind: EmulatedKind::GicV3Redistributor,
        cfg: vec![],
    });
    c
}

fn vm_v3() -> VmState {
    VmState::new(&config_v3(), Platform::QEMU_VIRT_GICV3).unwrap()
}

/// `MSR`/`MRS` of `S3_0_C12_C<crm>_<op2>` with `x<rt>`.
fn icc(crm: u32, op2: u32, rt: u32, read: bool) -> Exit {
    vcpu_fault(ec::SYS64, (3 << 20) | (op2 << 17) | (12 << 10) | (rt << 5) | (crm << 1) | u32::from(read))
}

fn mmio_write_v3(vm: &mut VmState, vcpu: usize, addr: u64, value: u64) -> Action {
    run(vm, vcpu, &dabt(addr, 2, 1, true), &regs_with(&[(1, value)])).0
}

/// The distributor on for group 1, and SGIs 0-15 in group 1 and enabled on both vCPUs.
fn v3_sgis_ready(vm: &mut VmState) {
    mmio_write_v3(vm, 0, GICD + gicd::CTLR, 2);
    for n in 0..2 {
        let sgi = GICR + n * vm_config::GICR_BYTES_PER_CPU + 0x1_0000;
        mmio_write_v3(vm, 0, sgi + gicd::IGROUPR, 0xffff_ffff);
        mmio_write_v3(vm, 0, sgi + gicd::ISENABLER, 0xffff);
    }
}

#[test]
fn the_gic_version_must_be_the_platforms() {
    assert_eq!(
        VmState::new(&config_v3(), Platform::QEMU_VIRT).unwrap_err(),
        BuildError::GicVersion { vm: GicVersion::V3, platform: GicVersion::V2 }
    );
    let e = VmState::new(&config(UnhandledMmio::Stop), Platform::QEMU_VIRT_GICV3).unwrap_err();
    assert_eq!(e, BuildError::GicVersion { vm: GicVersion::V2, platform: GicVersion::V3 });
    assert!(alloc::format!("{e}").contains("GICv2") && alloc::format!("{e}").contains("GICv3"));
    assert_eq!(vm_v3().vgic().version(), GicVersion::V3);
}

#[test]
fn redistributor_accesses_reach_the_frame_of_their_vcpu() {
    let mut vm = vm_v3();
    // GICR_TYPER of vCPU 1, read by vCPU 0: affinity 1, processor 1, Last.
    let (a, _) = run(&mut vm, 0, &dabt(GICR + 0x2_0008, 3, 2, false), &regs_with(&[]));
    assert_eq!(a.next, Next::SetRegister { reg: 2, value: (1 << 32) | (1 << 8) | (1 << 4), pc: PC + 4 });
    // Enabling the timer PPI in vCPU 1's SGI frame, with it pending: injected into vCPU 1.
    mmio_write_v3(&mut vm, 0, GICD + gicd::CTLR, 1);
    vm.vgic.raise_ppi(1, VTIMER_PPI);
    vm.vcpus[1].power = Power::On;
    let a = mmio_write_v3(&mut vm, 0, GICR + 0x3_0000 + gicd::ISENABLER, 1 << VTIMER_PPI);
    assert_eq!(a.effects.injections, [Injection { vcpu: 1, lr: 0, virq: 27, priority: 0, group: 0 }]);
    // The top word of the window: nothing there, reads as zero.
    let (a, _) = run(&mut vm, 0, &dabt(GICR + 0x3_fffc, 2, 2, false), &regs_with(&[]));
    assert_eq!(a.next, Next::SetRegister { reg: 2, value: 0, pc: PC + 4 });
}

#[test]
fn icc_sgi1r_raises_the_sgi_on_its_target_and_advances() {
    let mut vm = vm_v3();
    vm.vcpus[1].power = Power::On;
    v3_sgis_ready(&mut vm);
    // MSR ICC_SGI1R_EL1, x5: SGI 3 to Aff0 1 (vCPU 1).
    let exit = icc(11, 5, 5, false);
    assert!(vm.registers_needed(&exit));
    let (a, ops) = run(&mut vm, 0, &exit, &regs_with(&[(5, (3 << 24) | 0b10)]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 });
    assert_eq!(a.effects.injections, [Injection { vcpu: 1, lr: 0, virq: 3, priority: 0, group: 1 }]);
    assert_eq!(ops, [Op::TcbReadRegisters, Op::VCpuInjectIrq, Op::TcbWriteRegisters, Op::ReplyRecv]);
    assert!(a.effects.notices.is_empty());
    // IRM: everyone but the sender (vCPU 1 sends to vCPU 0).
    let (a, _) = run(&mut vm, 1, &icc(11, 5, 2, false), &regs_with(&[(2, (1 << 40) | (4 << 24))]));
    assert_eq!(a.effects.injections.iter().map(|i| (i.vcpu, i.virq)).collect::<Vec<_>>(), [(0, 4)]);
    // An affinity with no vCPU, and xzr: nothing raised, the PC still advances.
    let (a, _) = run(&mut vm, 0, &icc(11, 5, 2, false), &regs_with(&[(2, (7 << 32) | (5 << 24) | 1)]));
    assert_eq!((a.next, a.effects.injections.len()), (Next::Advance { pc: PC + 4 }, 0));
    let (a, _) = run(&mut vm, 0, &icc(11, 5, 31, false), &regs_with(&[]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 });
    assert!(vm.stopped().is_none());
}

#[test]
fn a_parked_target_of_an_sgi_is_woken() {
    let mut vm = vm_v3();
    vm.vcpus[1].power = Power::On;
    vm.vcpus[1].parked = true;
    v3_sgis_ready(&mut vm);
    let (a, _) = run(&mut vm, 0, &icc(11, 5, 1, false), &regs_with(&[(1, (1 << 24) | 0b10)]));
    assert_eq!(a.effects.wakes, [1]);
}

#[test]
fn icc_sre_reads_as_enabled_and_other_gic_sysregs_fall_to_the_default() {
    let mut vm = vm_v3();
    let (a, _) = run(&mut vm, 0, &icc(12, 5, 4, true), &regs_with(&[]));
    assert_eq!(a.next, Next::SetRegister { reg: 4, value: ICC_SRE_VALUE, pc: PC + 4 });
    let (a, _) = run(&mut vm, 0, &icc(12, 5, 4, false), &regs_with(&[(4, 0)]));
    assert_eq!((a.next, a.effects.notices.len()), (Next::Advance { pc: PC + 4 }, 0));
    // ICC_ASGI1R_EL1: ignored, logged once; a read of ICC_SGI1R_EL1: zero, logged once.
    let (a, _) = run(&mut vm, 0, &icc(11, 6, 1, false), &regs_with(&[(1, u64::MAX)]));
    assert_eq!(a.next, Next::Advance { pc: PC + 4 });
    assert!(matches!(a.effects.notices[..], [Notice::SysRegIgnored { .. }]));
    assert!(a.effects.injections.is_empty());
    let (a, _) = run(&mut vm, 0, &icc(11, 5, 1, true), &regs_with(&[]));
    assert_eq!(a.next, Next::SetRegister { reg: 1, value: 0, pc: PC + 4 });
    // Under GICv2 none of these is the VMM's: ICC_SRE_EL1 reads as zero there.
    let mut v2 = self::vm();
    let (a, _) = run(&mut v2, 0, &icc(12, 5, 4, true), &regs_with(&[]));
    assert_eq!(a.next, Next::SetRegister { reg: 4, value: 0, pc: PC + 4 });
    let (a, _) = run(&mut v2, 0, &icc(11, 5, 1, false), &regs_with(&[(1, (1 << 24) | 0b10)]));
    assert!(a.effects.injections.is_empty());
}
