//! Target `vm_exits`: the fault-message decoder and the exit handler on an evolving VM, as
//! the run loop drives them (`vm_runner::run`): a badge and a fault message become
//! ([`decode_fault`]) a vCPU and an [`Exit`]; the registers are passed when
//! [`VmState::registers_needed`] asks (or not, as when `TCB_ReadRegisters` fails), the clock
//! when [`VmState::needs_clock`] asks; [`VmState::handle_exit`] decides; the action's cost,
//! reply, register write and injected abort are computed. Between exits come the other
//! events: host interrupts, console input, timer wake-ups, a stop from outside.
//!
//! Input: a `u16` length and that many bytes of compact system encoding, which must decode
//! and pass every check ([`vm_config::load_system`]); then the [`Setup`]; then steps until
//! the input ends (at most [`MAX_STEPS`]), each an opcode byte and the values it reads.
//! Addresses, PSCI function IDs and CPU targets are mostly picked from the VM's own
//! devices, RAM and vCPUs, so that exits reach the device models.
//!
//! Invariants: every exit and event of an existing vCPU is counted exactly once; a stopped
//! VM answers every exit with its stop and every event with no effects.

use sel4::fault::label;
use sel4::{Message, MessageInfo, Received, UserContext};
use vm_config::{UnhandledMmio, VmConfig};
use vm_runner::action::{Effects, Next, StopReason};
use vm_runner::devices::psci::fid;
use vm_runner::esr::{Esr, ec};
use vm_runner::inject::abort_entry;
use vm_runner::{Platform, UntouchedFrame, VcpuBadge, VmState, decode_fault};

use crate::input::{Reader, Writer};

/// Steps per input.
pub const MAX_STEPS: usize = 256;

/// PSCI and SMCCC function IDs a guest calls.
const FIDS: [u32; 15] = [
    fid::VERSION,
    fid::CPU_SUSPEND_32,
    fid::CPU_SUSPEND_64,
    fid::CPU_OFF,
    fid::CPU_ON_32,
    fid::CPU_ON_64,
    fid::AFFINITY_INFO_32,
    fid::AFFINITY_INFO_64,
    fid::MIGRATE_32,
    fid::MIGRATE_INFO_TYPE,
    fid::MIGRATE_INFO_UP_CPU_32,
    fid::SYSTEM_OFF,
    fid::SYSTEM_RESET,
    fid::FEATURES,
    fid::SMCCC_VERSION,
];

/// How the VM is set up before its first exit, as `vm_runner::setup` and the run loop's
/// start would.
#[derive(Clone, Copy, Debug, Default)]
pub struct Setup {
    /// Which VM of the system.
    pub vm: u8,
    /// Bit 0: flip the unhandled-access policy; bit 1: RAM populated on first touch (2 MiB
    /// frames); bit 2: those frames need zeroing; bit 3: writable flash banks are mapped
    /// read-only into the guest; bit 4: writable flash banks start with an image.
    pub knobs: u8,
    /// The real-time clocks' base (seconds since 1970).
    pub rtc_base: u64,
    /// The VMM's clock at the start (ns).
    pub now_ns: u64,
}

impl Setup {
    fn read(r: &mut Reader<'_>) -> Self {
        Setup { vm: r.u8(), knobs: r.u8(), rtc_base: r.u64(), now_ns: r.u64() }
    }

    /// Writes the setup (for seeds).
    pub fn write(&self, w: &mut Writer) {
        w.u8(self.vm).u8(self.knobs).u64(self.rtc_base).u64(self.now_ns);
    }
}

/// One input.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let len = usize::from(r.u16());
    let Ok(sys) = vm_config::load_system(r.take(len)) else { return };
    let setup = Setup::read(&mut r);
    let Some(config) = pick(&sys.vms, setup.vm) else { return };
    let mut config = config.clone();
    if setup.knobs & 1 != 0 {
        config.capvisor.unhandled_mmio = match config.capvisor.unhandled_mmio {
            UnhandledMmio::Stop => UnhandledMmio::InjectAbort,
            UnhandledMmio::InjectAbort => UnhandledMmio::Stop,
        };
    }
    // QEMU virt with the GIC the VM has, so GICv3 configurations reach their models too.
    let platform = match config.gic_version() {
        vm_config::GicVersion::V2 => Platform::QEMU_VIRT,
        vm_config::GicVersion::V3 => Platform::QEMU_VIRT_GICV3,
    };
    let Ok(mut vm) = VmState::new(&config, platform) else { return };
    prepare(&mut vm, &config, &setup, &mut r);
    let mut run = Run { now_ns: setup.now_ns, counted: 0 };
    for _ in 0..MAX_STEPS {
        if r.is_empty() {
            break;
        }
        run.step(&mut vm, &config, &mut r);
    }
    assert_eq!(vm.counters().total_exits(), run.counted, "exits and events counted");
}

fn pick<T>(items: &[T], i: u8) -> Option<&T> {
    items.get(usize::from(i).checked_rem(items.len())?)
}

/// What setup and the run loop's start do to a new VM.
fn prepare(vm: &mut VmState, config: &VmConfig, setup: &Setup, r: &mut Reader<'_>) {
    for d in config.emulated.iter().filter(|d| d.writable()) {
        if setup.knobs & (1 << 4) != 0 {
            let len = usize::from(r.u8());
            let _ = vm.load_flash(&d.name, r.take(len));
        }
        if setup.knobs & (1 << 3) != 0 {
            let frames = (d.range.size_bytes >> 21).clamp(1, 64) as usize;
            let _ = vm.set_flash_rom(&d.name, frames);
        }
    }
    if setup.knobs & (1 << 1) != 0 {
        let size = 2 << 20;
        let frames = config
            .memory
            .iter()
            .flat_map(|m| (0..m.range.size_bytes / size).map(move |i| m.range.base.0 + i * size))
            .take(512)
            .map(|gpa| UntouchedFrame { gpa, size, zero: setup.knobs & (1 << 2) != 0 })
            .collect();
        vm.set_untouched(frames);
    }
    vm.set_rtc_base(setup.rtc_base, setup.now_ns);
    let _ = vm.boot();
}

/// The run loop's state between steps.
struct Run {
    now_ns: u64,
    /// Exits and events of existing vCPUs: what the counters must total.
    counted: u64,
}

/// A guest-physical address: in one of the VM's devices or RAM regions, or any.
fn address(config: &VmConfig, r: &mut Reader<'_>) -> u64 {
    let sel = r.u8();
    let within = |base: u64, size: u64, off: u64| base.wrapping_add(off.checked_rem(size).unwrap_or(0));
    match sel % 4 {
        0 | 1 => match pick(&config.emulated, sel >> 2) {
            Some(d) => within(d.range.base.0, d.range.size_bytes, u64::from(r.u16())),
            None => r.u64(),
        },
        2 => match pick(&config.memory, sel >> 2) {
            Some(m) => within(m.range.base.0, m.range.size_bytes, u64::from(r.u32())),
            None => r.u64(),
        },
        _ => r.u64(),
    }
}

/// `x0`-`x3` of a PSCI call: function, target CPU, entry point, context.
fn psci_args(config: &VmConfig, r: &mut Reader<'_>) -> [u64; 4] {
    let sel = r.u8();
    let function = match pick(&FIDS, sel) {
        Some(f) if sel < 0xf0 => u64::from(*f),
        _ => u64::from(r.u32()),
    };
    let target = match r.u8() {
        t if t < 0xf0 => config.mpidr(usize::from(t % (config.cpu_num + 1))),
        _ => r.u64(),
    };
    [function, target, address(config, r), r.u64()]
}

impl Run {
    fn step(&mut self, vm: &mut VmState, config: &VmConfig, r: &mut Reader<'_>) {
        let op = r.u8();
        let vcpu_byte = r.u8();
        let vcpu = usize::from(vcpu_byte % (config.cpu_num + 1));
        match op % 16 {
            13 => {
                let irq = match pick(&config.passthrough, op >> 4) {
                    Some(p) if op & 0x80 == 0 => p.irq as u16,
                    _ => r.u16(),
                };
                let e = vm.host_irq(irq);
                self.event(vm, e);
            }
            14 => {
                let len = usize::from(r.u8() % 32);
                let e = vm.console_input(r.take(len));
                self.event(vm, e);
            }
            15 => match op >> 4 {
                0..=9 => {
                    let e = vm.timer_wake(vcpu);
                    self.event(vm, e);
                }
                10..=13 => {
                    let _ = vm.take_console_output();
                }
                14 => {
                    let _ = vm.fail(vcpu, StopReason::PopulateFailed { gpa: 0 });
                }
                _ => {
                    let _ = vm.end(StopReason::EndedFromConsole);
                }
            },
            kind => self.exit(vm, config, r, op, kind, vcpu_byte),
        }
    }

    fn event(&mut self, vm: &VmState, e: Effects) {
        self.counted += 1;
        if vm.stopped().is_some() {
            assert_eq!(e, Effects::default(), "a stopped VM took an event");
        }
    }

    fn exit(&mut self, vm: &mut VmState, config: &VmConfig, r: &mut Reader<'_>, op: u8, kind: u8, vcpu_byte: u8) {
        let flags = r.u8();
        let pc = address(config, r) & !3;
        let psci = psci_args(config, r);
        let (lbl, words): (u64, Vec<u64>) = match kind {
            0..=4 => {
                let addr = address(config, r);
                let mut iss = r.u32() & 0x1ff_ffff;
                if op & 0x10 == 0 {
                    // A syndrome the devices can emulate: valid, translation fault, no walk.
                    iss = (iss | (1 << 24)) & !(1 << 7) & !0x3f | 0x07;
                }
                let class = if op & 0x20 == 0 { ec::DABT_LOWER } else { r.u8() & 0x3f };
                (label::VM_FAULT, vec![pc, addr, 0, Esr::new(class, true, iss).0])
            }
            5 => {
                let addr = address(config, r);
                let iss = r.u32() & 0x1ff_ffff;
                (label::VM_FAULT, vec![pc, addr, 1, Esr::new(ec::IABT_LOWER, true, iss).0])
            }
            6 => {
                let syscall = if op & 0x10 == 0 { 0 } else { r.u8() as i8 as u64 };
                let (sp, lr) = (r.u64(), r.u64());
                let w = vec![psci[0], psci[1], psci[2], psci[3], 0, 0, 0, syscall, pc, sp, lr, 0x3c5, syscall];
                (label::UNKNOWN_SYSCALL, w)
            }
            7 => {
                let classes = [ec::WFX, ec::WFX, ec::SMC64, ec::SMC64, ec::SYS64, ec::SYS64, ec::HVC64, ec::FP_SIMD];
                let class = if op & 0x80 == 0 { classes[usize::from(op >> 4) % classes.len()] } else { r.u8() & 0x3f };
                (label::VCPU_FAULT, vec![Esr::new(class, true, r.u32() & 0x1ff_ffff).0])
            }
            8 => {
                let lr = match r.u8() {
                    0xff => u64::MAX,
                    i => u64::from(i % 8),
                };
                (label::VGIC_MAINTENANCE, vec![lr])
            }
            9 => (label::VPPI_EVENT, vec![if op & 0x10 == 0 { 27 } else { u64::from(r.u8()) }]),
            10 => (label::CAP_FAULT, vec![pc, psci[0], 0, 1]),
            11 => (label::USER_EXCEPTION, vec![pc, r.u64(), 0x3c5, r.u64(), r.u64()]),
            _ => {
                let lbl = u64::from(r.u8());
                let n = usize::from(r.u8() % 16);
                (lbl, (0..n).map(|_| r.u64()).collect())
            }
        };
        let mut msg = Message::new(lbl, &words);
        if flags & 2 != 0 {
            // A tag whose length is not the words': a message cut short, as a forged or
            // broken fault would be, or one longer than a message holds (7 bits, any value).
            msg.info = MessageInfo::new(lbl, 0, 0, u64::from(r.u8() & 0x7f));
        }
        let badge = if vcpu_byte == 0xff { r.u64() } else { VcpuBadge { vm: 0, vcpu: vcpu_byte % 9 }.to_badge() };
        let (badge, exit) = decode_fault(&Received { badge, msg });
        let Some(badge) = badge else { return };
        let vcpu = usize::from(badge.vcpu);

        let mut regs = UserContext { pc, sp: r.u64(), spsr: u64::from(r.u16()), ..Default::default() };
        let fill = r.u64();
        for (i, x) in regs.x.iter_mut().enumerate() {
            *x = match i {
                0..=3 => psci[i],
                _ => fill.rotate_left(i as u32 * 7) ^ i as u64,
            };
        }
        // Registers as the run loop has them: read when asked for, unless the read failed
        // (flag bit 0); or, to be sure they are not trusted, read when not asked for.
        let regs_given = vm.registers_needed(&exit) != (flags & 1 != 0);
        let regs_ref = regs_given.then_some(&regs);
        if vm.needs_clock(&exit) {
            self.now_ns = self.now_ns.wrapping_add(u64::from(r.u32()));
            vm.set_clock(self.now_ns);
        }
        let stopped = vm.stopped();
        let action = vm.handle_exit(vcpu, &exit, regs_ref);
        if vcpu < usize::from(config.cpu_num) {
            self.counted += 1;
            if let Some(reason) = stopped {
                assert_eq!(action.next, Next::Stop(reason), "a stopped VM resumed");
            }
        }
        let _ = action.ops(regs_given);
        let _ = action.next.reply();
        let _ = action.next.registers_to_write(regs_ref);
        if let Next::InjectAbort(kind) = action.next {
            let _ = abort_entry(kind, regs.pc, regs.spsr, r.u64());
        }
        for s in &action.effects.starts {
            let _ = s.registers();
        }
    }
}
