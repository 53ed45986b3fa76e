//! The VMM in the root task: the target-only pieces around `vm_runner` (the embedded VM
//! bundle, the HAL instance, copying images through the HAL's window, the console) and the
//! run from bundle to exit status.
//!
//! # Where the guests come from
//! `capvisor vms CONFIG --search DIR -o BUNDLE` packs a system's configuration and images;
//! building the root task with `CAPVISOR_VMS=BUNDLE` embeds it (`build.rs`). A root task
//! built without it has an empty bundle and runs no VM.
//!
//! # Console
//! Output: each VM's finished UART lines, prefixed with its name, through the root task's
//! console (the runtime's PL011 driver, `sel4_root_task::console_write`; no debug system
//! call). Input: the same UART, whose registers the runtime mapped before `main`
//! ([`Start::console`]); the VMM takes its receive interrupt (SPI 1, IRQ 33, level) through an
//! IRQ handler that signals the VMM's notification ([`vm_runner::run::SIGNAL_CONSOLE`]); the
//! run loop drains the receive FIFO and routes each byte to the VM with focus (`Ctrl-A n`).
//! An interrupt rather than polling, because the VMM sleeps in `Recv` while guests run.
//!
//! # Waking vCPUs parked in `WFI`
//! With the feature `vmm-timer` (default), the root task starts the timer server
//! (`src/timer.rs`, objects from an untyped of its own that the HAL never sees) and registers
//! the VMM as its client 0, with the VMM's notification and badge
//! [`vm_runner::run::SIGNAL_TIMER`]: a vCPU that parks in `WFI` with its virtual timer armed
//! gets a timeout (id `8 * vm + vcpu`) at its `CNTV_CVAL`, converted to the server's
//! nanoseconds (the guests' virtual counter is the physical one: every VCPU's `CNTVOFF` is 0).
//! Without it, the loop restarts a parked vCPU at once.
//!
//! # Status
//! The run ends when every VM has stopped; the exit status (semihosting) is the first
//! non-zero VM status in configuration order: for `SYSTEM_OFF` the low byte of the guest's
//! `x1`, otherwise the stop reason's status.
//!
//! Owns: the HAL instance ([`HAL`]) while the VMs run, and the UART's receive side (its
//! interrupt mask and handler). Never touches: capabilities the HAL and the VMM setup did not
//! make, nor what the runtime reserved (the console's untyped and slots: the HAL is given
//! only [`Start::untyped`] and [`Start::empty`]).

use core::fmt;

use axvm_hal::AxVMHal;
use hal_sel4::{GlobalHal, GlobalPaging, HalCell, HalConfig, HalInstance, Sel4Hal};
use sel4::cap_type::IrqHandler;
use sel4::{Cap, Kernel, RealKernel, VirtAddr, init_cap};
use sel4_root_task::pl011::{ICR, IMSC, Pl011, RX_INTERRUPTS};
use sel4_root_task::{Start, debug_println};
use vm_runner::bundle::Bundle;
#[cfg(feature = "vmm-timer")]
use vm_runner::run::WakeKey;
use vm_runner::run::{CountersTable, Host, Rebuild, Runner, SIGNAL_CONSOLE, SIGNAL_IRQ_FIRST};
use vm_runner::setup::{CopyIn, DEFAULT_VMM_SLOTS, SetupOptions, Vmm, split_slots};
use vm_runner::vm::Platform;

/// Page-aligned storage for the bundle: its images start 8-byte aligned relative to the
/// bundle, so with the bundle aligned they are 8-byte aligned in memory too, and
/// [`copy_words`] can move them a 64-byte block at a time.
#[repr(C, align(4096))]
struct Aligned<T: ?Sized>(T);

static BUNDLE_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/vms.bundle")));

/// capvisor's facts about the platform (its RAM, what the kernel and the console keep), which
/// the placement check reads beside this boot's untyped list: the same file `capvisor vms` and
/// `capvisor image` predict from (`platforms/NAME/placement.txt` of the kernel's platform,
/// which build.rs picks).
const PLATFORM_FACTS: &str = include_str!(concat!(env!("OUT_DIR"), "/placement.txt"));
/// That platform's name, for messages.
const PLATFORM: &str = include_str!(concat!(env!("OUT_DIR"), "/platform"));

/// The bundle `capvisor vms` wrote, or nothing.
static BUNDLE: &[u8] = &BUNDLE_BYTES.0;

/// Whether this build carries VMs to run.
pub fn configured() -> bool {
    !BUNDLE.is_empty()
}

/// The HAL while the VMs run.
static HAL: HalCell<RealKernel> = HalCell::new();

/// Names [`HAL`] for `GlobalHal` and `GlobalPaging`.
pub struct RootHal;

/// The HAL as the VM layer sees it: `AxVMHal` and `VmObjects` over [`HAL`].
type Hal = GlobalHal<RootHal>;

impl HalInstance for RootHal {
    type Kernel = RealKernel;
    fn cell() -> &'static HalCell<RealKernel> {
        &HAL
    }
}

/// Copies images through the HAL's window.
struct WindowCopy;

impl CopyIn for WindowCopy {
    fn copy(&mut self, dst: VirtAddr, bytes: &[u8]) {
        // SAFETY: `CopyIn`'s contract: the HAL mapped `[dst, dst + len)` writable into this
        // address space just before the call, for this copy only; nothing else refers to it,
        // and it cannot overlap the bundle (guest RAM is not part of this image).
        unsafe { copy_words(dst.get() as *mut u8, bytes) };
    }

    fn zero(&mut self, dst: VirtAddr, len: u64) {
        // SAFETY: as for `copy`: the HAL mapped `[dst, dst + len)` writable for the VMM (guest
        // RAM, kept mapped for on-demand zeroing), and nothing in this image lies there.
        unsafe { zero_words(dst.get() as *mut u8, len as usize) };
    }
}

/// Writes `len` zero bytes at `dst`: 64-byte blocks of `stp xzr, xzr` when `dst` is 8-byte
/// aligned, then the rest with `write_bytes` (same reason as [`copy_words`]).
///
/// # Safety
/// `dst..dst + len` must be writable and mapped.
unsafe fn zero_words(dst: *mut u8, len: usize) {
    let blocks = if (dst as usize).is_multiple_of(8) { len / 64 } else { 0 };
    let done = blocks * 64;
    if blocks > 0 {
        // SAFETY: `dst` is 8-byte aligned (checked above), so every `stp` of two x registers
        // is aligned; `blocks * 64 <= len` bytes are written, which the caller guarantees
        // are writable.
        unsafe {
            core::arch::asm!(
                "2:",
                "stp xzr, xzr, [{t}], #16",
                "stp xzr, xzr, [{t}], #16",
                "stp xzr, xzr, [{t}], #16",
                "stp xzr, xzr, [{t}], #16",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                t = inout(reg) dst => _,
                n = inout(reg) blocks => _,
                options(nostack),
            );
        }
    }
    // SAFETY: the tail `[done, len)` lies in the caller's writable range.
    unsafe { core::ptr::write_bytes(dst.add(done), 0, len - done) };
}

/// Copies `src` to `dst`: 64-byte blocks of 8-byte-aligned load/store pairs when both are
/// 8-byte aligned, then the rest with `copy_nonoverlapping`.
///
/// Why not `copy_nonoverlapping` alone: this target is built with `strict-align`, and the
/// builtin `memcpy` moves a word per load/store pair; placing a 33 MB Linux kernel that way
/// is a visible part of a VM's start under QEMU, where every instruction counts. Four
/// `ldp`/`stp` pairs per 64 bytes take about a third of the instructions.
///
/// # Safety
/// `dst..dst + src.len()` must be writable, mapped, and disjoint from `src`.
unsafe fn copy_words(dst: *mut u8, src: &[u8]) {
    let blocks = if (dst as usize | src.as_ptr() as usize).is_multiple_of(8) { src.len() / 64 } else { 0 };
    let done = blocks * 64;
    if blocks > 0 {
        // SAFETY: both pointers are 8-byte aligned (checked above), so every `ldp`/`stp` of
        // two x registers is aligned; `blocks * 64 <= src.len()` bytes are read from `src`
        // and written to `dst`, which the caller guarantees is writable and disjoint.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldp {a}, {b}, [{s}], #16",
                "ldp {c}, {d}, [{s}], #16",
                "stp {a}, {b}, [{t}], #16",
                "stp {c}, {d}, [{t}], #16",
                "ldp {a}, {b}, [{s}], #16",
                "ldp {c}, {d}, [{s}], #16",
                "stp {a}, {b}, [{t}], #16",
                "stp {c}, {d}, [{t}], #16",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                s = inout(reg) src.as_ptr() => _,
                t = inout(reg) dst => _,
                n = inout(reg) blocks => _,
                a = out(reg) _,
                b = out(reg) _,
                c = out(reg) _,
                d = out(reg) _,
                options(nostack),
            );
        }
    }
    // SAFETY: the tail `[done, len)` lies in both ranges, as above.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr().add(done), dst.add(done), src.len() - done) };
}

/// The console UART's interrupt: the `interrupts` of the same device-tree node whose `reg`
/// the runtime mapped (`crate::target::console_uart` picks the first PL011).
fn console_irq(start: &Start) -> Result<u64, &'static str> {
    let dtb = start.bootinfo.device_tree().ok_or("no device tree in the bootinfo")?;
    let fdt = boot_image::fdt::Fdt::from_bytes(dtb).map_err(|_| "the device tree does not parse")?;
    match fdt.compatible_gic_irq("arm,pl011") {
        Ok(Some(irq)) => Ok(u64::from(irq)),
        Ok(None) => Err("the PL011's node has no interrupt the GIC binding reads"),
        Err(_) => Err("the device tree does not parse"),
    }
}

/// The console UART's receive side: the runtime's mapping of its registers, and the VMM's
/// handler of its interrupt.
struct Uart {
    regs: Pl011,
    irq: Cap<IrqHandler>,
}

/// The VMM's client of the timer server.
#[cfg(feature = "vmm-timer")]
struct Timer {
    client: timer_server::TimerClient,
    freq: timer_server::Frequency,
}

/// A passthrough device's interrupt, forwarded to its VM: its handler signals the VMM's
/// notification with bit `SIGNAL_IRQ_FIRST` + its index in [`RootHost::irqs`].
struct Forwarded {
    vm: usize,
    irq: u16,
    handler: Cap<IrqHandler>,
}

struct RootHost {
    /// VM names, for the reboot lines.
    names: alloc::vec::Vec<alloc::string::String>,
    uart: Option<Uart>,
    irqs: alloc::vec::Vec<Forwarded>,
    #[cfg(feature = "vmm-timer")]
    timer: Option<Timer>,
}

/// Timeout id of a vCPU: 8 per VM (a VM has at most 8), below the client's sleep id.
#[cfg(feature = "vmm-timer")]
fn timeout_id(key: WakeKey) -> Option<u8> {
    let id = key.vm.checked_mul(8)?.checked_add(key.vcpu)?;
    u8::try_from(id).ok().filter(|i| *i < timer_server::protocol::SLEEP_ID)
}

impl Host for RootHost {
    fn console_out(&mut self, bytes: &[u8]) {
        sel4_root_task::console_write(bytes);
    }

    fn log(&mut self, line: fmt::Arguments<'_>) {
        debug_println!("capvisor: {line}");
    }

    fn vm_rebooted(&mut self, vm: usize, count: u32) {
        let name = self.names.get(vm).map_or("?", |n| n.as_str());
        debug_println!("capvisor: VM \"{name}\" rebooted ({count}): {}", resources());
    }

    fn zero(&mut self, va: VirtAddr, len: u64) -> bool {
        // SAFETY: the run loop passes only `UntouchedCaps::zero_at` ranges: a frame of the
        // VM's RAM inside an allocation the setup keeps mapped writable in the HAL's window
        // while the VM lives; the guest cannot see the frame until the loop maps it after
        // this returns.
        unsafe { zero_words(va.get() as *mut u8, len as usize) };
        true
    }

    fn update_flash(&mut self, va: VirtAddr, data: Option<&[u8]>, len: u64) -> bool {
        // SAFETY: the run loop passes only ranges inside a `FlashRomMapping`: a writable
        // flash bank's contents, which the setup keeps mapped writable in the HAL's window
        // while the VM lives (the guest maps them read-only); `data` is the VMM's heap.
        let dst = unsafe { core::slice::from_raw_parts_mut(va.get() as *mut u8, len as usize) };
        match data {
            Some(d) => dst.iter_mut().zip(d).for_each(|(b, &v)| *b &= v),
            None => dst.fill(0xff),
        }
        true
    }

    fn forwarded(&self, bits: u64) -> alloc::vec::Vec<(usize, u16)> {
        self.irqs
            .iter()
            .enumerate()
            .filter(|(i, _)| bits >> (SIGNAL_IRQ_FIRST as usize + i) & 1 != 0)
            .map(|(_, f)| (f.vm, f.irq))
            .collect()
    }

    fn ack_irq<K: Kernel>(&mut self, kernel: &mut K, vm: usize, irq: u16) -> bool {
        match self.irqs.iter().find(|f| f.vm == vm && f.irq == irq) {
            Some(f) => kernel.irq_handler_ack(f.handler).is_ok(),
            None => false,
        }
    }

    fn console_in<K: Kernel>(&mut self, kernel: &mut K, buf: &mut [u8]) -> usize {
        let Some(u) = &self.uart else { return 0 };
        // Clear first, then drain: QEMU's PL011 raises RX only as its FIFO goes from empty to
        // one byte, so a byte that arrived after the drain and before a clear would leave
        // the interrupt cleared with the FIFO non-empty, and input would stop for good.
        u.regs.write(ICR, RX_INTERRUPTS);
        let mut n = 0;
        while n < buf.len()
            && let Some(b) = u.regs.get()
        {
            buf[n] = b;
            n += 1;
        }
        // The FIFO is drained (it holds 16 bytes, `buf` more): the next byte raises RX again.
        let _ = kernel.irq_handler_ack(u.irq);
        n
    }

    #[cfg(feature = "vmm-timer")]
    fn arm_wake<K: Kernel>(&mut self, kernel: &mut K, key: WakeKey, cntv_cval: u64) -> bool {
        let (Some(t), Some(id)) = (self.timer.as_mut(), timeout_id(key)) else { return false };
        let ns = timer_server::clock::ticks_to_ns(cntv_cval, t.freq);
        t.client.set_timeout(kernel, id, ns).is_ok()
    }

    /// The VMM's own client, through the loop's metered kernel, so the call counts to the
    /// exit that needed it (the HAL's `current_time_nanos` reads the same clock through its
    /// own client, outside the meter).
    #[cfg(feature = "vmm-timer")]
    fn now_ns<K: Kernel>(&mut self, kernel: &mut K) -> Option<u64> {
        self.timer.as_mut()?.client.now(kernel).ok()
    }

    #[cfg(feature = "vmm-timer")]
    fn fired<K: Kernel>(&mut self, kernel: &mut K) -> alloc::vec::Vec<WakeKey> {
        let Some(t) = self.timer.as_mut() else { return alloc::vec::Vec::new() };
        let mask = t.client.fired(kernel).unwrap_or(0);
        (0..64u64)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| WakeKey { vm: (i / 8) as usize, vcpu: (i % 8) as usize })
            .collect()
    }
}

/// The timer server, started before the HAL takes the untyped list, with an untyped of its
/// own (the smallest RAM untyped of the root task's of at least 1 MiB) and slots from the end
/// of the VMM's.
#[cfg(feature = "vmm-timer")]
struct TimerStart {
    server: crate::timer::ServerHandle,
    arena: timer_server::setup::UntypedArena,
    untyped: sel4::Slot,
}

#[cfg(feature = "vmm-timer")]
fn start_timer(k: &mut RealKernel, start: &Start, slots: sel4::SlotRegion) -> Result<TimerStart, &'static str> {
    let (untyped, _) = start
        .untyped()
        .filter(|(_, u)| !u.is_device && u.size_bits >= 20)
        .min_by_key(|(_, u)| u.size_bits)
        .ok_or("no RAM untyped of 1 MiB for the timer server")?;
    let mut arena = timer_server::setup::UntypedArena::new(untyped.cap(), slots);
    let server = crate::timer::start(k, start.bootinfo, &mut arena).map_err(|_| "the timer server did not start")?;
    Ok(TimerStart { server, arena, untyped })
}

/// Takes the interrupt of every VM's passthrough devices (level-triggered, as QEMU virt's
/// virtio-mmio lines are) and routes each to the VMM's notification with a bit of its own.
fn forward_irqs(vmm: &mut Vmm<GlobalPaging<RootHal>>) -> Result<alloc::vec::Vec<Forwarded>, &'static str> {
    let mut out = alloc::vec::Vec::new();
    let wanted: alloc::vec::Vec<(usize, u16)> = vmm
        .vms
        .iter()
        .filter(|vm| vm.config.interrupt_mode != vm_config::InterruptMode::NoIrq)
        .flat_map(|vm| {
            vm.config
                .passthrough
                .iter()
                .filter_map(move |p| u16::try_from(p.irq).ok().filter(|i| *i != 0).map(|i| (vm.index, i)))
        })
        .collect();
    for (vm, irq) in wanted {
        let bit = SIGNAL_IRQ_FIRST as usize + out.len();
        if bit >= 64 {
            return Err("more forwarded interrupts than notification bits");
        }
        let r = vmm.route_irq::<Hal>(u64::from(irq), false, 1 << bit).map_err(|e| {
            debug_println!("capvisor: VM {vm}: host interrupt {irq}: {e}");
            "routing a passthrough interrupt"
        })?;
        debug_println!("capvisor: VM {vm}: host interrupt {irq} forwarded");
        out.push(Forwarded { vm, irq, handler: r.handler });
    }
    Ok(out)
}

/// Routes the console UART's receive interrupt to the VMM's notification (the registers are
/// the runtime's mapping).
fn console_input(vmm: &mut Vmm<GlobalPaging<RootHal>>, regs: Pl011, irq: u64) -> Result<Uart, &'static str> {
    regs.write(ICR, RX_INTERRUPTS);
    regs.write(IMSC, regs.read(IMSC) | RX_INTERRUPTS);
    // Input typed before now sits in the receive holding register with its interrupt
    // already cleared, and the UART takes no more until it is read: drop it, so the next
    // byte raises the interrupt.
    let mut early = 0;
    while early < 64 && regs.get().is_some() {
        early += 1;
    }
    regs.write(ICR, RX_INTERRUPTS);
    if early > 0 {
        debug_println!("capvisor: console: {early} byte(s) typed before the VMs started were dropped");
    }
    // Routed (and acknowledged) after the drain, so the next byte raises it.
    let r = vmm.route_irq::<Hal>(irq, false, SIGNAL_CONSOLE).map_err(|e| {
        debug_println!("capvisor: console interrupt {irq}: {e}");
        "routing the console interrupt"
    })?;
    Ok(Uart { regs, irq: r.handler })
}

/// Free slots (the HAL's pool, the VM layer's) and untyped bytes: the counts a reboot must
/// give back.
fn resources() -> alloc::string::String {
    let (pool, loose, u) = HAL.with(|h| (h.pool().free_slots(), h.loose_free(), h.usage().untyped_bytes_free));
    alloc::format!("hal-slots-free={pool} untyped-bytes-free={u} vmm-slots-free={loose}")
}

/// Builds and runs the bundle's VMs; returns the exit status.
pub fn run(start: &Start) -> u32 {
    let bundle = match Bundle::decode(BUNDLE) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("capvisor: VM bundle: {e}");
            return 1;
        }
    };
    let untyped: alloc::vec::Vec<_> = start.untyped().map(|(_, d)| d).collect();
    let facts = match vm_config::Facts::parse(PLATFORM_FACTS) {
        Ok(f) => f,
        Err(e) => {
            debug_println!("capvisor: platforms/{PLATFORM}/placement.txt: {e}");
            return 1;
        }
    };
    // The cores this boot runs on: every vCPU is pinned to one of them (one core: none is).
    let cores = start.bootinfo.num_nodes();
    let mut host = vm_config::HostMemory::from_bootinfo(&facts, &untyped);
    host.cores = cores;
    let problems = vm_config::check_placement(&bundle.system, &host);
    if !problems.is_empty() {
        for p in &problems {
            debug_println!("capvisor: {}: {p}", p.field);
        }
        debug_println!(
            "capvisor: {} VM placement problems against this boot's untyped memory: no VM started",
            problems.len()
        );
        return 1;
    }
    let Some(kernel) = RealKernel::from_registered_ipc_buffer() else {
        debug_println!("capvisor: the IPC buffer is taken: no kernel handle for the VMM");
        return 1;
    };
    let (hal_slots, vmm_slots) = split_slots(start.empty(), DEFAULT_VMM_SLOTS);
    #[cfg(feature = "vmm-timer")]
    let (vmm_slots, kernel, mut timer) = {
        let mut kernel = kernel;
        let cut = sel4::Slot::new(vmm_slots.end.index() - 512);
        let timer_slots = sel4::SlotRegion { start: cut, end: vmm_slots.end };
        let timer = match start_timer(&mut kernel, start, timer_slots) {
            Ok(t) => Some(t),
            Err(e) => {
                debug_println!("capvisor: {e}: parked vCPUs will be restarted at once");
                None
            }
        };
        (sel4::SlotRegion { start: vmm_slots.start, end: cut }, kernel, timer)
    };
    #[cfg(feature = "vmm-timer")]
    let reserved = timer.as_ref().map(|t| t.untyped);
    #[cfg(not(feature = "vmm-timer"))]
    let reserved: Option<sel4::Slot> = None;
    let untyped = start.untyped().filter(|(s, _)| Some(*s) != reserved).map(|(s, d)| (s.cap(), d));
    let hal = match Sel4Hal::new(kernel, untyped, HalConfig::with_loose_slots(hal_slots, vmm_slots)) {
        Ok(h) => h,
        Err(e) => {
            debug_println!("capvisor: HAL: {e}");
            return 1;
        }
    };
    if HAL.install(hal).is_err() {
        debug_println!("capvisor: a HAL is installed already");
        return 1;
    }
    let options = SetupOptions {
        platform: Platform { cores, ..Platform::qemu_virt_for_kernel() },
        asid_pool: init_cap::ASID_POOL.cap(),
        vmm_tcb: init_cap::TCB.cap(),
    };
    let mut vmm = match Vmm::<GlobalPaging<RootHal>>::build::<Hal>(&bundle, &options, &mut WindowCopy) {
        Ok(v) => v,
        Err(e) => {
            debug_println!("capvisor: building VMs: {e}");
            return 1;
        }
    };
    for vm in &vmm.vms {
        let ram = vm.mappings.first().map_or((0, 0, 0), |m| (m.gpa.get(), m.hpa.get(), m.size_bytes));
        debug_println!(
            "capvisor: VM {} \"{}\": {} vCPU(s), RAM {:#x}+{:#x} at host {:#x}, {} stage-2 tables, {} frames mapped, {} at first touch",
            vm.index,
            vm.config.name,
            vm.vcpus.len(),
            ram.0,
            ram.2,
            ram.1,
            vm.tables.len(),
            vm.frames.len(),
            vm.untouched.len()
        );
        if cores > 1 {
            let pinned: alloc::vec::Vec<u64> =
                (0..vm.vcpus.len()).filter_map(|j| vm.config.pinned_core(j, cores).ok().flatten()).collect();
            debug_println!(
                "capvisor: VM {}: vCPUs on physical cores {pinned:?} of {cores}; faults handled on core 0",
                vm.index
            );
        }
    }
    let mut host = RootHost {
        names: vmm.vms.iter().map(|v| v.config.name.clone()).collect(),
        uart: None,
        irqs: alloc::vec::Vec::new(),
        #[cfg(feature = "vmm-timer")]
        timer: None,
    };
    #[cfg(feature = "vmm-timer")]
    if let Some(t) = timer.as_mut() {
        let ntfn = vmm.ntfn;
        let client = HAL.with(|h| {
            let k = h.kernel_mut();
            let ep =
                t.server.spawned.add_client(k, &mut t.arena, 0, Some((ntfn, vm_runner::run::SIGNAL_TIMER))).ok()?;
            timer_server::client::add_client(k, t.server.spawned.admin, 0, true).ok()?;
            Some(ep)
        });
        // A second client for the HAL itself: `current_time_nanos` is one call to it.
        let hal_client = HAL.with(|h| {
            let k = h.kernel_mut();
            let ep = t.server.spawned.add_client(k, &mut t.arena, 1, None).ok()?;
            timer_server::client::add_client(k, t.server.spawned.admin, 1, false).ok()?;
            Some(ep)
        });
        if let Some(ep) = hal_client {
            HAL.with(|h| h.set_timer(ep));
            debug_println!(
                "capvisor: the HAL's clock (current_time_nanos) reads the timer server: {} ns",
                Hal::current_time_nanos()
            );
        }
        match client {
            Some(ep) => {
                host.timer = Some(Timer { client: timer_server::TimerClient::new(ep), freq: t.server.freq });
                debug_println!("capvisor: parked vCPUs wake through the timer server");
            }
            None => debug_println!("capvisor: timer server client refused: parked vCPUs will be restarted at once"),
        }
    }
    match forward_irqs(&mut vmm) {
        Ok(irqs) => host.irqs = irqs,
        Err(e) => {
            debug_println!("capvisor: forwarding passthrough interrupts: {e}");
            return 1;
        }
    }
    match console_irq(start).and_then(|irq| console_input(&mut vmm, start.console, irq)) {
        Ok(u) => host.uart = Some(u),
        Err(e) => debug_println!("capvisor: console input off: {e}"),
    }
    // After everything the run keeps (timer clients, interrupt handlers): what each reboot
    // must come back to.
    debug_println!("capvisor: resources after build: {}", resources());
    let names: alloc::vec::Vec<&str> = vmm.vms.iter().map(|v| v.config.name.as_str()).collect();
    let mut runner = Runner::new(&names);
    runner.trace = cfg!(feature = "vmm-trace");
    debug_println!(
        "capvisor: starting {} VM(s); typing goes to VM 1 ({}); Ctrl-A ? lists the console keys",
        vmm.vms.len(),
        names.first().copied().unwrap_or("none")
    );
    // No lock is held while the VMs run: the loop borrows the HAL's kernel per invocation,
    // and a reset rebuilds its VM through the HAL from inside the loop.
    runner.run::<Hal, _>(&mut vmm, &mut host, &mut Rebuild { bundle: &bundle, copy: &mut WindowCopy });
    let mut status = 0u32;
    for vm in &vmm.vms {
        let ended = runner.ended.get(vm.index).copied().flatten();
        let (reason, st) = ended.map_or(("not stopped".into(), 0), |e| (alloc::format!("{}", e.reason), e.status));
        debug_println!("capvisor: VM \"{}\" ended: {reason}, status {st}", vm.config.name);
        let table = CountersTable { predicted: vm.state.counters(), measured: &runner.measured[vm.index] };
        debug_println!(
            "capvisor: counters of \"{}\" (VMM system calls per exit, measured; predicted):",
            vm.config.name
        );
        for line in alloc::format!("{table}").lines() {
            debug_println!("capvisor:   {line}");
        }
        let c = runner.console_stats(vm.index);
        debug_println!(
            "capvisor: console of \"{}\": {} bytes written, {} lines waited for another VM's line, {} cut at the {}-byte hold bound",
            vm.config.name,
            c.bytes,
            c.held_lines,
            c.cut_lines,
            vm_runner::console::HOLD_MAX
        );
        if status == 0 {
            status = u32::from(st);
        }
    }
    if runner.stray != 0 {
        debug_println!("capvisor: {} faults with badges naming no vCPU were ignored", runner.stray);
    }
    #[cfg(feature = "vmm-timer")]
    if let Some(t) = timer.take()
        && HAL.with(|h| t.server.shutdown(h.kernel_mut())).is_err()
    {
        debug_println!("capvisor: the timer server did not stop");
    }
    debug_println!("capvisor: all VMs stopped, exit status {status}");
    status
}
