//! One VM's state and the pure exit handler: `handle_exit` decides, the run loop performs.
//!
//! [`VmState`] owns everything the VMM knows about a VM between exits: vCPU power states, the
//! distributor and list-register model, the virtual timer flags, the UARTs, the MMIO window
//! table, the unhandled-access policy and its "logged once" sets, and the counters. It never
//! touches the kernel: every exit or event becomes an [`Action`] or [`Effects`] for the run
//! loop, which knows how to perform them with the fewest kernel entries
//! ([`Action::ops`]).
//!
//! Guest-reachable paths never panic: vCPU indices, list register indices and interrupt IDs
//! from the guest or the kernel are looked up with `get`, arithmetic on guest values wraps,
//! and anything not understood stops the VM (never the VMM) or is answered as the hardware
//! would.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sel4::{Op, UserContext};
use vm_config::{EmulatedKind, GicVersion, GuestRange, InterruptMode, UnhandledMmio, VmConfig};

use crate::action::{AbortKind, Action, Effects, FlashRom, Next, Notice, StopReason, VcpuStart};
use crate::counters::{Counters, ExitKind};
use crate::devices::cfi_flash::{CfiFlash, FlashError};
use crate::devices::pl011::Pl011;
use crate::devices::pl031::Pl031;
use crate::devices::psci::{self, Outcome, Power};
use crate::devices::vgic::Vgic;
use crate::devices::vgic::v3::SgiRegister;
use crate::devices::vtimer::{VTIMER_PPI, VTimer};
use crate::esr::{DataAbort, FaultStatus, SysRegAccess, sysreg};
use crate::exit::{Exit, HvcRegs};
use crate::logonce::{LogOnce, Seen};
use crate::mmio::{MmioError, MmioMap};

/// Facts about the machine the VM model needs and the configuration does not give.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Platform {
    /// List registers per virtual CPU interface (GICH_VTR.ListRegs + 1, or ICH_VTR_EL2's;
    /// 4 on QEMU virt).
    pub list_registers: u8,
    /// The host's GIC, which the kernel drives: a VM's interrupt controller must be the same
    /// version (a GICv2 guest's CPU interface is the host's GICV frames; a GICv3 guest's is
    /// the system registers, which only a GICv3 host virtualizes).
    pub gic_version: GicVersion,
    /// Physical cores the kernel runs on (the bootinfo's `numNodes`). With one, every vCPU
    /// shares it and none is pinned (such a kernel has no `TCB_SetAffinity`); with more,
    /// each vCPU is pinned to the core its `phys_cpu_ids` entry names.
    pub cores: u64,
}

impl Platform {
    /// QEMU `virt` with `gic-version=2`, one core.
    pub const QEMU_VIRT: Platform = Platform { list_registers: 4, gic_version: GicVersion::V2, cores: 1 };
    /// QEMU `virt` with `gic-version=3`, one core.
    pub const QEMU_VIRT_GICV3: Platform = Platform { list_registers: 4, gic_version: GicVersion::V3, cores: 1 };

    /// The GIC version of the kernel this crate is built against (its `ARM_GIC_V3_SUPPORT`).
    pub const KERNEL_GIC: GicVersion = if sel4::config::ARM_GIC_V3_SUPPORT { GicVersion::V3 } else { GicVersion::V2 };

    /// QEMU `virt` with the GIC the kernel was built for, one core.
    pub const fn qemu_virt_for_kernel() -> Platform {
        Platform { list_registers: 4, gic_version: Self::KERNEL_GIC, cores: 1 }
    }
}

/// `ICC_SRE_EL1` as a GICv3 guest reads it: SRE (the system-register interface), DFB and
/// DIB (FIQ and IRQ bypass disabled).
pub const ICC_SRE_VALUE: u64 = 0x7;

/// Addresses remembered by "logged once", per set.
pub const LOG_ONCE_CAPACITY: usize = 64;

/// Why a configuration cannot become a VM (each also caught by `vm-config`'s checks; this is
/// the last line).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BuildError {
    /// Two emulated devices overlap, or one is empty.
    Mmio {
        /// The device.
        device: String,
        /// Why.
        error: MmioError,
    },
    /// `cpu_num` is 0 or more than 8.
    Cpus(u8),
    /// The VM's interrupt controller is not the platform's GIC version.
    GicVersion {
        /// What the VM's devices describe.
        vm: GicVersion,
        /// What the host has.
        platform: GicVersion,
    },
    /// A CFI flash bank's size or image does not fit the model.
    Flash {
        /// The device.
        device: String,
        /// Why.
        error: FlashError,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Mmio { device, error } => write!(f, "device {device}: {error}"),
            BuildError::Cpus(n) => write!(f, "{n} vCPUs (1 to 8)"),
            BuildError::GicVersion { vm, platform } => {
                write!(f, "the VM's interrupt controller is a {vm}, the platform's GIC a {platform}")
            }
            BuildError::Flash { device, error } => write!(f, "flash {device}: {error}"),
        }
    }
}

impl core::error::Error for BuildError {}

/// One vCPU as the VMM tracks it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VcpuState {
    /// On or off (PSCI).
    pub power: Power,
    /// Blocked in `WFI` without a reply, waiting for an interrupt or its timer.
    pub parked: bool,
    /// Has been started at least once (so a restart must reset its system registers).
    pub has_run: bool,
    /// The MPIDR affinity it reports.
    pub mpidr: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Device {
    Gicd,
    Gicr,
    Uart(usize),
    Flash(usize),
    Rtc(usize),
    Dummy,
}

/// How a data abort is handled, decided from the address and syndrome alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Device(Device, u64),
    NoSyndrome,
    Unhandled,
}

/// What a PSCI call came to: a value to return to the caller (with side effects), or an
/// action that replaces returning (`CPU_OFF`, `SYSTEM_OFF`, `SYSTEM_RESET`).
enum PsciResult {
    Value(u64, Effects),
    Done(Action),
}

/// One CFI flash bank of a VM.
#[derive(Clone, Debug)]
struct FlashBank {
    model: CfiFlash,
    /// Its `emu_devices` name.
    name: String,
    /// For a bank the guest reads in place ([`VmState::set_flash_rom`]): the frames of its
    /// read-only mapping, and whether the mapping is in the stage 2 now.
    rom: Option<(usize, bool)>,
}

/// The state of one VM.
#[derive(Clone, Debug)]
pub struct VmState {
    name: String,
    vcpus: Vec<VcpuState>,
    vgic: Vgic,
    vtimer: VTimer,
    uarts: Vec<(Pl011, u16)>,
    /// CFI flash banks.
    flashes: Vec<FlashBank>,
    /// Real-time clocks and their interrupt IDs.
    rtcs: Vec<(Pl031, u16)>,
    /// The VMM's clock (ns) as the run loop last read it for a clock access
    /// ([`VmState::needs_clock`]), and whether that read is still to be counted.
    clock_ns: u64,
    clock_read: bool,
    mmio: MmioMap<Device>,
    ram: Vec<GuestRange>,
    entry: u64,
    dtb: u64,
    unhandled: UnhandledMmio,
    logged_addrs: LogOnce,
    logged_sysregs: LogOnce,
    forwarded_irqs: Vec<u16>,
    /// RAM frames not yet in the stage 2 (`populate_ram = "on_touch"`), by guest address.
    untouched: Vec<UntouchedFrame>,
    /// Whether the VM populates RAM on first touch (set by [`VmState::set_untouched`]).
    on_touch: bool,
    counters: Counters,
    stopped: Option<StopReason>,
}

/// A frame of guest RAM that enters the stage 2 when the guest first touches it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UntouchedFrame {
    /// Guest-physical base.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// capvisor zeroes it first (seL4 did not: memory from device untyped).
    pub zero: bool,
}

impl VmState {
    /// The VM a (checked) configuration describes, before it runs: vCPU 0 on (the run loop
    /// starts it with [`VmState::boot`]), the others off until `CPU_ON`.
    pub fn new(config: &VmConfig, platform: Platform) -> Result<Self, BuildError> {
        if config.cpu_num == 0 || config.cpu_num > VmConfig::MAX_CPUS {
            return Err(BuildError::Cpus(config.cpu_num));
        }
        let gic_version = config.gic_version();
        if gic_version != platform.gic_version {
            return Err(BuildError::GicVersion { vm: gic_version, platform: platform.gic_version });
        }
        let vcpus = (0..usize::from(config.cpu_num))
            .map(|i| VcpuState {
                power: if i == 0 { Power::On } else { Power::Off },
                parked: false,
                has_run: i == 0,
                mpidr: config.mpidr(i),
            })
            .collect();
        let mut mmio = MmioMap::new();
        let mut uarts = Vec::new();
        let mut flashes = Vec::new();
        let mut rtcs = Vec::new();
        for d in &config.emulated {
            let dev = match d.kind {
                EmulatedKind::InterruptController | EmulatedKind::GicV3Distributor => Device::Gicd,
                EmulatedKind::GicV3Redistributor => Device::Gicr,
                EmulatedKind::Console => {
                    uarts.push((Pl011::new(), u16::try_from(d.irq).unwrap_or(0)));
                    Device::Uart(uarts.len() - 1)
                }
                EmulatedKind::CfiFlash => {
                    let bank = CfiFlash::new(d.range.size_bytes, Vec::new(), d.writable())
                        .map_err(|error| BuildError::Flash { device: d.name.clone(), error })?;
                    flashes.push(FlashBank { model: bank, name: d.name.clone(), rom: None });
                    Device::Flash(flashes.len() - 1)
                }
                EmulatedKind::Rtc => {
                    rtcs.push((Pl031::new(0, 0), u16::try_from(d.irq).unwrap_or(0)));
                    Device::Rtc(rtcs.len() - 1)
                }
                EmulatedKind::Dummy => Device::Dummy,
            };
            mmio.register(d.range, dev).map_err(|error| BuildError::Mmio { device: d.name.clone(), error })?;
        }
        let forwarded_irqs = if config.interrupt_mode == InterruptMode::NoIrq {
            Vec::new()
        } else {
            config.passthrough.iter().filter_map(|p| u16::try_from(p.irq).ok()).filter(|i| *i != 0).collect()
        };
        Ok(VmState {
            name: config.name.clone(),
            vcpus,
            vgic: match gic_version {
                GicVersion::V2 => Vgic::new(config.capvisor.gic_irq_lines, config.cpu_num, platform.list_registers),
                GicVersion::V3 => {
                    let mpidrs: Vec<u64> = (0..usize::from(config.cpu_num)).map(|i| config.mpidr(i)).collect();
                    Vgic::new_v3(config.capvisor.gic_irq_lines, &mpidrs, platform.list_registers)
                }
            },
            vtimer: VTimer::new(usize::from(config.cpu_num)),
            uarts,
            flashes,
            rtcs,
            clock_ns: 0,
            clock_read: false,
            mmio,
            ram: config.memory.iter().map(|m| m.range).collect(),
            entry: config.entry_point.0,
            dtb: config.dtb.as_ref().map_or(0, |d| d.load_addr.0),
            unhandled: config.capvisor.unhandled_mmio,
            logged_addrs: LogOnce::new(LOG_ONCE_CAPACITY),
            logged_sysregs: LogOnce::new(LOG_ONCE_CAPACITY),
            forwarded_irqs,
            untouched: Vec::new(),
            on_touch: false,
            counters: Counters::default(),
            stopped: None,
        })
    }

    /// Gives the writable flash bank `device` its starting contents (a read-only bank's image
    /// is mapped into the guest as read-only RAM by the setup; its model answers only
    /// commands and the part of the bank past the image, which reads erased).
    pub fn load_flash(&mut self, device: &str, image: &[u8]) -> Result<(), BuildError> {
        let Some(bank) = self.flashes.iter_mut().find(|b| b.name == device) else { return Ok(()) };
        if bank.model.writable() {
            bank.model = CfiFlash::new(bank.model.size_bytes(), image.to_vec(), true)
                .map_err(|error| BuildError::Flash { device: String::from(device), error })?;
        }
        Ok(())
    }

    /// The writable flash bank `device` is also a read-only mapping of its contents in the
    /// guest's stage 2, of `frames` frames, mapped now: reads in read-array mode go to memory
    /// (as on QEMU, and as firmware expects: it copies from flash with any load); a command
    /// takes the mapping away until the bank is back in read-array mode. Returns the bank's
    /// index.
    pub fn set_flash_rom(&mut self, device: &str, frames: usize) -> Option<usize> {
        let i = self.flashes.iter().position(|b| b.name == device)?;
        let bank = self.flashes.get_mut(i)?;
        bank.rom = Some((frames, true));
        // The mapping holds the contents; the model answers commands and hands out changes.
        bank.model.keep_outside();
        Some(i)
    }

    /// Sets every real-time clock to `seconds` since 1970 at the VMM's clock reading
    /// `now_ns` (the bundle's base, when the VM starts).
    pub fn set_rtc_base(&mut self, seconds: u64, now_ns: u64) {
        for (rtc, _) in &mut self.rtcs {
            *rtc = Pl031::new(seconds, now_ns);
        }
        self.clock_ns = now_ns;
    }

    /// Whether [`VmState::handle_exit`] needs the VMM's clock for `exit` (an access to a
    /// real-time clock): the run loop then reads it ([`VmState::set_clock`]) first, one
    /// call to the timer server, counted in the exit's predicted cost.
    pub fn needs_clock(&self, exit: &Exit) -> bool {
        match exit {
            Exit::DataAbort { addr, abort, .. } if self.stopped.is_none() => {
                matches!(self.classify(addr.0, abort), Access::Device(Device::Rtc(_), _))
            }
            _ => false,
        }
    }

    /// The VMM's clock, read for the exit about to be handled.
    pub fn set_clock(&mut self, now_ns: u64) {
        self.clock_ns = now_ns;
        self.clock_read = true;
    }

    /// How the run loop starts vCPU 0: at the entry point, `x0` = the device tree's address
    /// (the Linux arm64 boot protocol; 0 without one).
    pub fn boot(&self) -> VcpuStart {
        VcpuStart { vcpu: 0, entry: self.entry, context: self.dtb, reset_sctlr: false }
    }

    /// Declares the RAM frames that [`crate::setup`] left out of the stage 2 for the guest's
    /// first touch (`populate_ram = "on_touch"`). From then on a translation fault inside
    /// guest RAM is a first touch, not an access to nothing.
    pub fn set_untouched(&mut self, mut frames: Vec<UntouchedFrame>) {
        frames.sort_unstable_by_key(|f| f.gpa);
        self.untouched = frames;
        self.on_touch = true;
    }

    /// The frames still untouched, by guest address.
    pub fn untouched(&self) -> &[UntouchedFrame] {
        &self.untouched
    }

    /// A stage-2 fault at `addr` with `status` that is a first touch of on-demand RAM: the
    /// frame to populate (taken off the untouched list), then the retry. A translation fault
    /// inside RAM that is no longer untouched is a second vCPU that faulted on the same frame
    /// before the first one's populate: it just retries.
    fn first_touch(&mut self, addr: u64, status: FaultStatus) -> Option<Action> {
        if !self.on_touch {
            return None;
        }
        let i = self.untouched.partition_point(|f| f.gpa.saturating_add(f.size) <= addr);
        if let Some(f) = self.untouched.get(i).copied()
            && f.gpa <= addr
        {
            self.untouched.remove(i);
            let mut a = Action::just(Next::Resume);
            a.effects.populate = Some(f);
            return Some(a);
        }
        let in_ram = self.ram.iter().any(|r| r.contains(addr));
        (in_ram && matches!(status, FaultStatus::Translation(_))).then(|| Action::just(Next::Resume))
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Carries counters over from the VM's previous life (a reboot builds a fresh state).
    pub fn set_counters(&mut self, counters: Counters) {
        self.counters = counters;
    }

    /// Why the VM stopped, if it did.
    pub fn stopped(&self) -> Option<StopReason> {
        self.stopped
    }

    /// A vCPU's state.
    pub fn vcpu(&self, index: usize) -> Option<&VcpuState> {
        self.vcpus.get(index)
    }

    /// The distributor model (for inspection).
    pub fn vgic(&self) -> &Vgic {
        &self.vgic
    }

    /// Whether the run loop must read `vcpu`'s registers (`TCB_ReadRegisters`) before
    /// calling [`VmState::handle_exit`] for `exit`: an emulated access moving a register, a
    /// PSCI call over `SMC` (its arguments), a trapped system register (its PC).
    pub fn registers_needed(&self, exit: &Exit) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        match exit {
            Exit::DataAbort { addr, abort, .. } => {
                matches!(self.classify(addr.0, abort), Access::Device(..)) && abort.srt != 31
            }
            Exit::Smc { .. } | Exit::HvcTrap { .. } | Exit::CapFault { .. } | Exit::SysReg { .. } => true,
            // The `WFI`'s address, to go on after it.
            Exit::Wfx { wfe: false, .. } => true,
            _ => false,
        }
    }

    /// Decides what to do about `exit` of `vcpu`, given the registers the run loop read if
    /// [`VmState::registers_needed`] said so. Records the exit and its cost.
    pub fn handle_exit(&mut self, vcpu: usize, exit: &Exit, regs: Option<&UserContext>) -> Action {
        if vcpu >= self.vcpus.len() {
            // A badge naming a vCPU this VM does not have: a routing error in the VMM. Nothing
            // of this VM can be trusted to resume it.
            return Action::just(Next::Stop(StopReason::BadFault { label: u64::MAX }));
        }
        let (kind, action) = match self.stopped {
            Some(r) => (ExitKind::Other, Action::just(Next::Stop(r))),
            None => self.decide(vcpu, exit, regs),
        };
        let mut ops = action.ops(regs.is_some());
        if core::mem::take(&mut self.clock_read) {
            ops.insert(0, Op::Call);
        }
        self.counters.record(kind, &ops);
        action
    }

    fn decide(&mut self, vcpu: usize, exit: &Exit, regs: Option<&UserContext>) -> (ExitKind, Action) {
        match *exit {
            Exit::DataAbort { addr, abort, .. } if let Some(a) = self.first_touch(addr.0, abort.status) => {
                (ExitKind::FirstTouch, a)
            }
            Exit::InstructionAbort { addr, esr, .. }
                if let Some(a) = self.first_touch(addr.0, FaultStatus::from_code(esr.iss() as u8)) =>
            {
                (ExitKind::FirstTouch, a)
            }
            Exit::DataAbort { ip, addr, abort, .. } => self.data_abort(vcpu, ip, addr.0, &abort, regs),
            Exit::InstructionAbort { ip, addr, .. } => {
                let kind = AbortKind { instruction: true, write: false };
                (ExitKind::UnhandledAccess, self.unhandled(vcpu, ip, addr.0, kind, false))
            }
            Exit::Hvc(r) if r.syscall != 0 => (ExitKind::HvcSel4Call, self.hvc(vcpu, &r)),
            Exit::Hvc(r) => (ExitKind::Hvc, self.hvc(vcpu, &r)),
            Exit::CapFault { ip, .. } => (ExitKind::HvcSel4Call, self.psci_from_regs(vcpu, Some(ip), regs)),
            Exit::Smc { .. } | Exit::HvcTrap { .. } => (ExitKind::Smc, self.psci_from_regs(vcpu, None, regs)),
            Exit::Wfx { wfe: false, .. } => (ExitKind::Wfi, self.wfi(vcpu, regs)),
            // Returning to the guest is an exception return, which sets the event register,
            // so the re-executed WFE completes instead of trapping again.
            Exit::Wfx { wfe: true, .. } => (ExitKind::Wfe, Action::just(Next::Resume)),
            Exit::SysReg { access, .. } => {
                let Some(r) = regs else { return (ExitKind::SysReg, self.stop(StopReason::MissingRegisters)) };
                let pc = r.pc.wrapping_add(4);
                if let Some(a) = self.gic_sysreg(vcpu, &access, r, pc) {
                    return (ExitKind::SysReg, a);
                }
                let mut a = Action::just(if access.read && access.rt != 31 {
                    Next::SetRegister { reg: access.rt, value: 0, pc }
                } else {
                    Next::Advance { pc }
                });
                match self.logged_sysregs.see(access.encoding().into()) {
                    Seen::First => a.effects.notices.push(Notice::SysRegIgnored { vcpu, ip: r.pc, access }),
                    Seen::NowSuppressing => a.effects.notices.push(Notice::Suppressed),
                    Seen::Repeat | Seen::Suppressed => {}
                }
                (ExitKind::SysReg, a)
            }
            Exit::VgicMaintenance { lr } => (ExitKind::VgicMaintenance, self.maintenance(vcpu, lr)),
            Exit::Vppi { irq } => (ExitKind::Vppi, self.vppi(vcpu, irq)),
            Exit::UserException { ip, number, .. } => {
                (ExitKind::Other, self.stop(StopReason::UnhandledTrap { ip, esr: number }))
            }
            Exit::VcpuOther { esr } => {
                let ip = regs.map_or(0, |r| r.pc);
                (ExitKind::Other, self.stop(StopReason::UnhandledTrap { ip, esr: esr.0 }))
            }
            Exit::Unknown { label } | Exit::Malformed { label, .. } => {
                (ExitKind::Other, self.stop(StopReason::BadFault { label }))
            }
        }
    }

    /// A trapped access to a GICv3 CPU interface register that the hardware does not
    /// virtualize. `ICC_SGI0R_EL1`, `ICC_SGI1R_EL1` (trapped by `HCR_EL2.IMO`): the SGI is
    /// made pending on the vCPUs the value names and injected where a list register is free.
    /// `ICC_SRE_EL1` (trapped where the hardware honours seL4 leaving `ICC_SRE_EL2.Enable`
    /// clear; QEMU 7.2 lets the guest read it directly): reads as
    /// SRE, DFB and DIB set, the only setting a guest of a GICv3 host can have; writes are
    /// ignored. The vCPU goes on after the instruction. `None` for any other register, or
    /// under GICv2 (where these do not exist): the caller's default applies, as it does to
    /// `ICC_ASGI1R_EL1` (a security state the guest does not have) and to reads of the
    /// write-only SGI registers (ignored, read as zero, logged once).
    fn gic_sysreg(&mut self, vcpu: usize, access: &SysRegAccess, r: &UserContext, pc: u64) -> Option<Action> {
        if self.vgic.version() != GicVersion::V3 {
            return None;
        }
        let which = match (access.encoding(), access.read) {
            (sysreg::ICC_SRE_EL1, true) if access.rt != 31 => {
                return Some(Action::just(Next::SetRegister { reg: access.rt, value: ICC_SRE_VALUE, pc }));
            }
            (sysreg::ICC_SRE_EL1, _) => return Some(Action::just(Next::Advance { pc })),
            (sysreg::ICC_SGI0R_EL1, false) => SgiRegister::Sgi0,
            (sysreg::ICC_SGI1R_EL1, false) => SgiRegister::Sgi1,
            _ => return None,
        };
        // `xzr` (31) reads as zero; x0-x30 are in the register file.
        let value = r.x.get(usize::from(access.rt)).copied().unwrap_or(0);
        let targets = self.vgic.write_sgi(vcpu, which, value);
        let mut effects = Effects::default();
        for t in (0..self.vcpus.len()).filter(|t| targets & (1 << t) != 0) {
            effects.extend(self.fill(t));
        }
        Some(Action { next: Next::Advance { pc }, effects })
    }

    fn classify(&self, addr: u64, abort: &DataAbort) -> Access {
        match self.mmio.lookup(addr) {
            Some(_) if !abort.isv || abort.s1ptw => Access::NoSyndrome,
            Some((dev, off)) => Access::Device(dev, off),
            None => Access::Unhandled,
        }
    }

    fn data_abort(
        &mut self,
        vcpu: usize,
        ip: u64,
        addr: u64,
        abort: &DataAbort,
        regs: Option<&UserContext>,
    ) -> (ExitKind, Action) {
        let (dev, off) = match self.classify(addr, abort) {
            Access::Device(d, o) => (d, o),
            Access::NoSyndrome => {
                let kind = AbortKind { instruction: false, write: abort.write };
                return (ExitKind::UnhandledAccess, self.unhandled(vcpu, ip, addr, kind, true));
            }
            Access::Unhandled => {
                let kind = AbortKind { instruction: false, write: abort.write };
                return (ExitKind::UnhandledAccess, self.unhandled(vcpu, ip, addr, kind, false));
            }
        };
        let size = abort.size.bytes();
        let pc = ip.wrapping_add(4);
        if abort.write {
            let value = if abort.srt == 31 {
                0
            } else {
                match regs.and_then(|r| r.x.get(usize::from(abort.srt))) {
                    Some(v) => *v & abort.size.mask(),
                    None => return (ExitKind::MmioWrite, self.stop(StopReason::MissingRegisters)),
                }
            };
            let effects = self.device_write(vcpu, dev, off, size, value);
            (ExitKind::MmioWrite, Action { next: Next::Advance { pc }, effects })
        } else {
            let (raw, effects) = self.device_read(vcpu, dev, off, size);
            let next = if abort.srt == 31 {
                Next::Advance { pc }
            } else {
                Next::SetRegister { reg: abort.srt, value: abort.load_result(raw), pc }
            };
            (ExitKind::MmioRead, Action { next, effects })
        }
    }

    fn device_read(&mut self, vcpu: usize, dev: Device, off: u64, size: u8) -> (u64, Effects) {
        match dev {
            Device::Gicd => (self.vgic.read(vcpu, off, size), Effects::default()),
            Device::Gicr => (self.vgic.read_redist(off, size), Effects::default()),
            Device::Uart(i) => {
                let Some((u, _)) = self.uarts.get_mut(i) else { return (0, Effects::default()) };
                // A read of DR takes a byte from the queue and may lower the interrupt.
                let v = u.read(off, size);
                (v, self.uart_irq_update(i))
            }
            Device::Flash(i) => {
                let v = self.flashes.get_mut(i).map_or(0, |b| b.model.read(off, size));
                (v, Effects::default())
            }
            Device::Rtc(i) => {
                let now = self.clock_ns;
                let v = self.rtcs.get_mut(i).map_or(0, |(r, _)| r.read(off, size, now));
                (v, self.rtc_irq_update(i))
            }
            Device::Dummy => (0, Effects::default()),
        }
    }

    fn device_write(&mut self, vcpu: usize, dev: Device, off: u64, size: u8, value: u64) -> Effects {
        match dev {
            Device::Gicd => {
                self.vgic.write(vcpu, off, size, value);
                // An enable, priority, target or SGI may have made something deliverable.
                self.fill_all()
            }
            Device::Gicr => {
                self.vgic.write_redist(off, size, value);
                // An enable or priority of that redistributor's vCPU.
                match self.vgic.redist_frame(off) {
                    Some((target, _)) => self.fill(target),
                    None => Effects::default(),
                }
            }
            Device::Uart(i) => {
                if let Some((u, _)) = self.uarts.get_mut(i) {
                    u.write(off, size, value);
                }
                self.uart_irq_update(i)
            }
            Device::Flash(i) => {
                let mut e = Effects::default();
                let Some(FlashBank { model: b, rom, .. }) = self.flashes.get_mut(i) else { return e };
                b.write(off, size, value);
                if let Some((frames, mapped)) = rom {
                    e.flash_ops = b.take_ops().into_iter().map(|op| (i, op)).collect();
                    let array = b.in_read_array_mode();
                    if *mapped && !array {
                        *mapped = false;
                        e.flash_rom = Some(FlashRom { bank: i, frames: *frames, map: None });
                    } else if !*mapped && array {
                        *mapped = true;
                        e.flash_rom = Some(FlashRom { bank: i, frames: *frames, map: Some(b.take_dirty()) });
                    }
                }
                e
            }
            Device::Rtc(i) => {
                let now = self.clock_ns;
                if let Some((r, _)) = self.rtcs.get_mut(i) {
                    r.write(off, size, value, now);
                }
                self.rtc_irq_update(i)
            }
            Device::Dummy => Effects::default(),
        }
    }

    /// The clock's match interrupt as of the last clock reading: checked at each access (no
    /// timer is armed for a future match; a guest that waits for the alarm without reading
    /// the clock sees it at its next access).
    fn rtc_irq_update(&mut self, i: usize) -> Effects {
        let Some((r, irq)) = self.rtcs.get(i) else { return Effects::default() };
        let (level, irq) = (r.irq_level(self.clock_ns), *irq);
        self.device_line(irq, level)
    }

    fn uart_irq_update(&mut self, i: usize) -> Effects {
        let Some((u, irq)) = self.uarts.get(i) else { return Effects::default() };
        let (level, irq) = (u.irq_level(), *irq);
        self.device_line(irq, level)
    }

    /// An emulated device's interrupt line `irq` (0: it has none) is at `level`: the
    /// distributor follows it, and an interrupt that became deliverable is injected.
    fn device_line(&mut self, irq: u16, level: bool) -> Effects {
        if irq == 0 {
            return Effects::default();
        }
        match self.vgic.set_spi_level(irq, level) {
            Some(target) if level => self.fill(target),
            _ => Effects::default(),
        }
    }

    /// Injections for `vcpu`'s free list registers, and a wake-up if it is parked.
    fn fill(&mut self, vcpu: usize) -> Effects {
        let mut e = Effects::default();
        match self.vcpus.get(vcpu) {
            Some(c) if c.power == Power::On => {}
            _ => return e,
        }
        e.injections = self.vgic.fill(vcpu);
        if !e.injections.is_empty()
            && let Some(c) = self.vcpus.get_mut(vcpu)
            && c.parked
        {
            c.parked = false;
            e.wakes.push(vcpu);
        }
        e
    }

    fn fill_all(&mut self) -> Effects {
        let mut e = Effects::default();
        for v in 0..self.vcpus.len() {
            e.extend(self.fill(v));
        }
        e
    }

    /// An access nothing answers: inject an abort or stop the VM, per the configuration;
    /// logged once per address.
    fn unhandled(&mut self, vcpu: usize, ip: u64, addr: u64, kind: AbortKind, no_syndrome: bool) -> Action {
        let notice = match self.logged_addrs.see(addr) {
            Seen::First if no_syndrome => Some(Notice::NoSyndrome { vcpu, ip, addr }),
            Seen::First => {
                Some(Notice::UnhandledAccess { vcpu, ip, addr, write: kind.write, instruction: kind.instruction })
            }
            Seen::NowSuppressing => Some(Notice::Suppressed),
            Seen::Repeat | Seen::Suppressed => None,
        };
        let mut a = match self.unhandled {
            UnhandledMmio::InjectAbort => Action::just(Next::InjectAbort(kind)),
            UnhandledMmio::Stop => {
                self.stop(StopReason::Abort { ip, addr, instruction: kind.instruction, write: kind.write })
            }
        };
        if let Some(n) = notice {
            a.effects.notices.insert(0, n);
        }
        a
    }

    /// Stops the VM: the exiting vCPU is not resumed, and every vCPU that is on is
    /// suspended, the exiting one and any parked one included: neither is sure to be waiting.
    /// A guest can send its own fault endpoint a message that reads as any exit (one that
    /// stops the VM, a `WFI`) and run on, and a VM reported stopped must run nothing.
    fn stop(&mut self, reason: StopReason) -> Action {
        self.stopped = Some(reason);
        let mut e = Effects::default();
        for (i, c) in self.vcpus.iter_mut().enumerate() {
            if c.power == Power::On {
                e.suspends.push(i);
            }
            c.parked = false;
        }
        e.notices.push(Notice::Stopped(reason));
        Action { next: Next::Stop(reason), effects: e }
    }

    /// A PSCI call: its result value, or what happens instead of returning.
    fn psci(&mut self, vcpu: usize, x: [u64; 4]) -> PsciResult {
        let power: Vec<Power> = self.vcpus.iter().map(|c| c.power).collect();
        let mpidrs: Vec<u64> = self.vcpus.iter().map(|c| c.mpidr).collect();
        let ram = &self.ram;
        match psci::call(x, &mpidrs, &power, |e| ram.iter().any(|r| r.contains(e))) {
            Outcome::Return(v) => PsciResult::Value(v, Effects::default()),
            Outcome::CpuOn { target, entry, context } => {
                let Some(c) = self.vcpus.get_mut(target) else {
                    return PsciResult::Value(psci::ret::INVALID_PARAMETERS, Effects::default());
                };
                let reset_sctlr = c.has_run;
                c.power = Power::On;
                c.parked = false;
                c.has_run = true;
                let mut e = Effects::default();
                e.starts.push(VcpuStart { vcpu: target, entry, context, reset_sctlr });
                e.extend(self.fill(target));
                PsciResult::Value(psci::ret::SUCCESS, e)
            }
            Outcome::CpuOff => {
                if let Some(c) = self.vcpus.get_mut(vcpu) {
                    c.power = Power::Off;
                    c.parked = false;
                }
                if self.vcpus.iter().all(|c| c.power == Power::Off) {
                    PsciResult::Done(self.stop(StopReason::AllCpusOff))
                } else {
                    PsciResult::Done(Action::just(Next::Off))
                }
            }
            Outcome::SystemOff => PsciResult::Done(self.stop(StopReason::PoweredOff)),
            Outcome::SystemReset => PsciResult::Done(self.stop(StopReason::Reset)),
        }
    }

    /// PSCI over `HVC`: the result and the next PC go back in the reply itself.
    fn hvc(&mut self, vcpu: usize, r: &HvcRegs) -> Action {
        match self.psci(vcpu, [r.x[0], r.x[1], r.x[2], r.x[3]]) {
            PsciResult::Value(value, effects) => {
                let mut x = r.x;
                x[0] = value;
                Action { next: Next::HvcReply { x, pc: r.ip.wrapping_add(4) }, effects }
            }
            PsciResult::Done(a) => a,
        }
    }

    /// PSCI over `SMC`, or an `HVC` that arrived as a capability fault: arguments from the
    /// register file, result through `TCB_WriteRegisters`. `ip` is the fault PC when the
    /// message has it (else the register file's PC: a trapped `SMC` stops at itself).
    fn psci_from_regs(&mut self, vcpu: usize, ip: Option<u64>, regs: Option<&UserContext>) -> Action {
        let Some(r) = regs else { return self.stop(StopReason::MissingRegisters) };
        let pc = ip.unwrap_or(r.pc).wrapping_add(4);
        match self.psci(vcpu, [r.x[0], r.x[1], r.x[2], r.x[3]]) {
            PsciResult::Value(value, effects) => Action { next: Next::SetRegister { reg: 0, value, pc }, effects },
            PsciResult::Done(a) => a,
        }
    }

    /// `WFI`: park the vCPU unless an interrupt can be delivered to it now, in which case it
    /// is injected and the re-executed `WFI` completes.
    /// A trapped `WFI` completes: the vCPU goes on after it, at once when an interrupt is
    /// ready for it, else once one is (see [`Next::Park`]).
    fn wfi(&mut self, vcpu: usize, regs: Option<&UserContext>) -> Action {
        let after = regs.map(|r| r.pc.wrapping_add(4));
        let effects = self.fill(vcpu);
        // An interrupt already in a list register counts too: with vCPUs on several cores,
        // another vCPU's exit can inject one between this vCPU's WFI trap and its handling
        // here, and nothing would come to wake it. (WFI may always complete early.)
        if !effects.injections.is_empty() || self.vgic.holds_any(vcpu) {
            let next = after.map_or(Next::Resume, |pc| Next::Advance { pc });
            return Action { next, effects };
        }
        if let Some(c) = self.vcpus.get_mut(vcpu) {
            c.parked = true;
        }
        Action { next: Next::Park { resume_at: after, arm_timer: !self.vtimer.is_masked(vcpu) }, effects }
    }

    fn maintenance(&mut self, vcpu: usize, lr: Option<u8>) -> Action {
        let mut e = Effects::default();
        if let Some(virq) = lr.and_then(|lr| self.vgic.maintenance(vcpu, lr)) {
            if self.vtimer.on_eoi(vcpu, virq) {
                e.vppi_acks.push((vcpu, VTIMER_PPI));
            }
            if self.forwarded_irqs.contains(&virq) {
                e.host_irq_acks.push(virq);
            }
        }
        e.extend(self.fill(vcpu));
        Action { next: Next::Resume, effects: e }
    }

    fn vppi(&mut self, vcpu: usize, irq: u64) -> Action {
        if !self.vtimer.on_event(vcpu, irq) {
            // Not the virtual timer: nothing here owns it; it stays masked.
            let mut a = Action::just(Next::Resume);
            a.effects.notices.push(Notice::UnknownPpi { vcpu, irq });
            return a;
        }
        // Pending in the distributor; delivered now if enabled and a list register is free,
        // else when the guest enables it or a list register frees. Acknowledged on EOI.
        self.vgic.raise_ppi(vcpu, VTIMER_PPI);
        Action { next: Next::Resume, effects: self.fill(vcpu) }
    }

    /// Stops the VM for a reason the run loop found (a kernel invocation it needed failed)
    /// while handling an exit of vCPU `_vcpu`: the same clean stop as one `handle_exit`
    /// decides, with its effects (every vCPU suspended alike).
    pub fn fail(&mut self, _vcpu: usize, reason: StopReason) -> Action {
        self.stop(reason)
    }

    /// Stops the VM from outside (no vCPU is waiting for a reply): every running vCPU is
    /// suspended.
    pub fn end(&mut self, reason: StopReason) -> Action {
        self.stop(reason)
    }

    // ---- events that are not faults ----

    /// A forwarded host interrupt arrived (its handler's notification).
    pub fn host_irq(&mut self, irq: u16) -> Effects {
        let e = if self.stopped.is_none() && self.forwarded_irqs.contains(&irq) {
            match self.vgic.raise_spi(irq) {
                Some(target) => self.fill(target),
                None => Effects::default(),
            }
        } else {
            Effects::default()
        };
        self.record_event(ExitKind::HostIrq, &e);
        e
    }

    /// Console input for this VM (it has focus): queued in its first UART.
    pub fn console_input(&mut self, bytes: &[u8]) -> Effects {
        let e = match self.uarts.first_mut() {
            Some((u, _)) if self.stopped.is_none() => {
                u.push_input(bytes);
                self.uart_irq_update(0)
            }
            _ => Effects::default(),
        };
        self.record_event(ExitKind::ConsoleInput, &e);
        e
    }

    /// A parked vCPU's virtual timer deadline passed: restart it (its timer then fires as
    /// a `VPPIEvent` once it runs).
    pub fn timer_wake(&mut self, vcpu: usize) -> Effects {
        let mut e = Effects::default();
        if self.stopped.is_none()
            && let Some(c) = self.vcpus.get_mut(vcpu)
            && c.parked
        {
            c.parked = false;
            e.wakes.push(vcpu);
        }
        self.record_event(ExitKind::TimerWake, &e);
        e
    }

    fn record_event(&mut self, kind: ExitKind, e: &Effects) {
        let mut ops = Vec::new();
        e.ops(&mut ops);
        self.counters.record(kind, &ops);
    }

    /// What the guest wrote to its UARTs since the last call, as written; clears it.
    pub fn take_console_output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for (u, _) in &mut self.uarts {
            out.extend(u.take_output());
        }
        out
    }
}

#[cfg(test)]
#[path = "vm_tests.rs"]
mod tests;
