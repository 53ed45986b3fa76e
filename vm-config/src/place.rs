//! Where every VM's memory and devices sit in host-physical memory, checked against the
//! platform before anything is retyped.
//!
//! One check ([`check_placement`]) over one picture of host-physical memory ([`HostMemory`]),
//! which comes from one of two places:
//! - **predicted**, before boot ([`HostMemory::predicted`]: `capvisor vms`, `image` and `plan`):
//!   the RAM the kernel manages and the device ranges from the kernel build
//!   (`platform_gen.json`), the kernel image from its ELF, the root task and what seL4 makes for
//!   it at boot from the image tool's placement, and capvisor's facts about the platform
//!   ([`Facts`]: `platforms/NAME/placement.txt`, the RAM there is and what the kernel and the root
//!   task keep for themselves);
//! - **booted**, in the root task ([`HostMemory::from_bootinfo`]): RAM and device untyped from the
//!   real bootinfo and the same facts; RAM no untyped covers is what the kernel and the root task
//!   hold.
//!
//! The rules: `MAP_IDENTICAL` RAM only on RAM the kernel manages; `MAP_RESERVED` only on RAM the
//! kernel does not manage (seL4 hands it out as device untyped, never zeroed); passthrough only
//! on device memory the platform lists; nothing of a VM on what the kernel, the root task or the
//! console use; `MAP_ALLOC` RAM and flash banks within the RAM left; on a multicore kernel, every
//! vCPU pinned to a core the kernel runs on ([`HostMemory::cores`], from the kernel's
//! `MAX_NUM_NODES` before boot and the bootinfo's `numNodes` in the root task;
//! [`crate::model::VmConfig::pinned_core`]). Ranges two VMs share are
//! [`crate::check::check_system`]'s rule.
//!
//! Owns: the rules, the picture and the words of each refusal. Never touches: files, the kernel.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use sel4::UntypedDesc;

use crate::addr::GuestRange;
use crate::check::{Field, Part};
use crate::model::{EmulatedKind, MapType, SystemConfig};

/// What a piece of host-physical memory is, as the check sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Use {
    /// RAM the kernel manages (RAM untyped): `MAP_IDENTICAL` and `MAP_ALLOC` RAM come from it.
    Ram,
    /// RAM the kernel does not manage (seL4 hands it out as device untyped): only `MAP_RESERVED`.
    UnmanagedRam,
    /// Device memory the platform lists: only passthrough.
    Device,
    /// Kept by the kernel, the root task or the console: nothing of a VM.
    Taken,
}

impl Use {
    /// Which use wins where the picture's spans overlap.
    const fn rank(self) -> u8 {
        match self {
            Use::Taken => 3,
            Use::UnmanagedRam => 2,
            Use::Ram => 1,
            Use::Device => 0,
        }
    }
}

/// A named stretch of host-physical memory `[start, end)`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Span {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// What it is.
    pub used: Use,
    /// In words, for messages ("the seL4 kernel image").
    pub what: String,
}

/// capvisor's facts about a platform that neither the kernel build nor the bootinfo says:
/// where RAM is, what the kernel and the root task keep, names of devices, and bounds used
/// before the kernel and root task are known. Read from `platforms/NAME/placement.txt`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Facts {
    /// Every RAM range of the machine, managed by the kernel or not.
    pub ram: Vec<Span>,
    /// Ranges kept by the kernel (its own devices) or the root task (the console UART).
    pub taken: Vec<Span>,
    /// Names of device ranges, for messages.
    pub devices: Vec<Span>,
    /// The host's GIC virtual CPU interface (GICV): the only device memory a VM's
    /// `capvisor.gic_cpu_interface` may map (a `gicv` line; it is device memory too).
    pub gicv: Option<Span>,
    /// Bytes the kernel image takes at most from the start of the RAM it manages (used when
    /// no kernel ELF is given).
    pub kernel_at_most: u64,
    /// Bytes the root task takes at most besides its VM bundle: code, data, the device tree
    /// and the objects seL4 makes for it at boot (used when no root-task ELF is given).
    pub root_task_at_most: u64,
}

/// A line of a facts file that does not read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FactsError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FactsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn number(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Facts {
    /// Reads a facts file. Lines: `ram START..END WHAT`, `taken START..END WHAT`,
    /// `device START..END WHAT`, `gicv START..END WHAT`, `kernel-at-most BYTES`, `root-task-at-most BYTES`; `#` starts a
    /// comment.
    pub fn parse(text: &str) -> Result<Facts, FactsError> {
        let mut facts = Facts::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| FactsError { line: i + 1, message };
            let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match key {
                "ram" | "taken" | "device" | "gicv" => {
                    let (range, what) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    let what = what.trim();
                    let (a, b) = range.split_once("..").ok_or_else(|| err(format!("{range:?} is not START..END")))?;
                    let (Some(start), Some(end)) = (number(a), number(b)) else {
                        return Err(err(format!("{range:?}: not numbers")));
                    };
                    if start >= end || what.is_empty() {
                        return Err(err(String::from("needs START < END and words saying what it is")));
                    }
                    let (list, used) = match key {
                        "ram" => (&mut facts.ram, Use::UnmanagedRam),
                        "taken" => (&mut facts.taken, Use::Taken),
                        _ => (&mut facts.devices, Use::Device),
                    };
                    let span = Span { start, end, used, what: what.to_string() };
                    if key == "gicv" {
                        facts.gicv = Some(span.clone());
                    }
                    list.push(span);
                }
                "kernel-at-most" | "root-task-at-most" => {
                    let n = number(rest).ok_or_else(|| err(format!("{rest:?} is not a number")))?;
                    if key == "kernel-at-most" {
                        facts.kernel_at_most = n;
                    } else {
                        facts.root_task_at_most = n;
                    }
                }
                other => return Err(err(format!("unknown fact {other:?}"))),
            }
        }
        if facts.ram.is_empty() {
            return Err(FactsError { line: 0, message: String::from("no `ram` line: where is the machine's RAM?") });
        }
        Ok(facts)
    }
}

/// `ranges` minus `minus`, both as `[start, end)` pairs.
fn subtract(ranges: &[(u64, u64)], minus: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = ranges.to_vec();
    for &(ms, me) in minus {
        let mut next = Vec::with_capacity(out.len() + 1);
        for (s, e) in out {
            if me <= s || e <= ms {
                next.push((s, e));
                continue;
            }
            if s < ms {
                next.push((s, ms));
            }
            if me < e {
                next.push((me, e));
            }
        }
        out = next;
    }
    out
}

/// Host-physical memory as the placement check sees it: named spans, where a span that is
/// [`Use::Taken`] wins over RAM, which wins over device memory, wherever they overlap.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct HostMemory {
    /// The spans, in the order added (the first of equal rank names a piece).
    pub spans: Vec<Span>,
    /// The host's GICV, when the facts name it.
    pub gicv: Option<Span>,
    /// Physical cores the kernel runs on; 0 or 1 is one core, where no vCPU is pinned.
    pub cores: u64,
}

/// A piece of a range and what is there (`None`: nothing the platform lists).
pub type Piece<'a> = (u64, u64, Option<&'a Span>);

impl HostMemory {
    /// Adds a span (empty ones are dropped).
    pub fn add(&mut self, start: u64, end: u64, used: Use, what: &str) {
        if start < end {
            self.spans.push(Span { start, end, used, what: what.to_string() });
        }
    }

    /// The picture before boot. `managed` is the RAM the kernel manages and `devices` the device
    /// ranges (both from the kernel build's `platform_gen.json`); `kept` is what the kernel image
    /// and the root task will occupy, with words.
    pub fn predicted(facts: &Facts, managed: &[(u64, u64)], devices: &[(u64, u64)], kept: &[Span]) -> HostMemory {
        let mut m = HostMemory { gicv: facts.gicv.clone(), ..HostMemory::default() };
        for s in kept.iter().chain(&facts.taken) {
            m.add(s.start, s.end, Use::Taken, &s.what);
        }
        for &(s, e) in managed {
            m.add(s, e, Use::Ram, "RAM the kernel manages");
        }
        let ram: Vec<(u64, u64)> = facts.ram.iter().map(|r| (r.start, r.end)).collect();
        for r in &facts.ram {
            for (s, e) in subtract(&[(r.start, r.end)], managed) {
                m.add(s, e, Use::UnmanagedRam, &format!("RAM the kernel does not manage (part of {})", r.what));
            }
        }
        m.add_devices(facts, &subtract(devices, &ram));
        m
    }

    /// The picture the root task has at boot: RAM and device untyped from the bootinfo, the
    /// facts' RAM ranges (device untyped inside them is RAM the kernel does not manage), what
    /// the facts say is taken, and RAM that no untyped covers (the kernel image, the device
    /// tree, the root task and its boot objects).
    pub fn from_bootinfo(facts: &Facts, untyped: &[UntypedDesc]) -> HostMemory {
        let mut m = HostMemory { gicv: facts.gicv.clone(), ..HostMemory::default() };
        for s in &facts.taken {
            m.add(s.start, s.end, Use::Taken, &s.what);
        }
        let all: Vec<(u64, u64)> = untyped.iter().map(|u| (u.paddr.0, u.end())).collect();
        for r in &facts.ram {
            for (s, e) in subtract(&[(r.start, r.end)], &all) {
                m.add(
                    s,
                    e,
                    Use::Taken,
                    "memory the kernel keeps for itself and the root task (the kernel image, the device tree, \
                     the root task and its boot objects: no untyped covers it)",
                );
            }
        }
        let ram: Vec<(u64, u64)> = facts.ram.iter().map(|r| (r.start, r.end)).collect();
        for u in untyped {
            if u.is_device {
                for r in &facts.ram {
                    let (s, e) = (u.paddr.0.max(r.start), u.end().min(r.end));
                    m.add(s, e, Use::UnmanagedRam, &format!("RAM the kernel does not manage (part of {})", r.what));
                }
            } else {
                m.add(u.paddr.0, u.end(), Use::Ram, "RAM the kernel manages");
            }
        }
        let device: Vec<(u64, u64)> = untyped.iter().filter(|u| u.is_device).map(|u| (u.paddr.0, u.end())).collect();
        m.add_devices(facts, &subtract(&device, &ram));
        m
    }

    /// Device memory: `listed`, with the facts' names for the devices inside it first (the
    /// first span of a rank names a piece).
    fn add_devices(&mut self, facts: &Facts, listed: &[(u64, u64)]) {
        for d in &facts.devices {
            if listed.iter().any(|&(s, e)| s <= d.start && d.end <= e) {
                self.add(d.start, d.end, Use::Device, &d.what);
            }
        }
        for &(s, e) in listed {
            self.add(s, e, Use::Device, "device memory");
        }
    }

    /// The span that decides what `addr` is.
    fn at(&self, addr: u64) -> Option<&Span> {
        let mut best: Option<&Span> = None;
        for s in &self.spans {
            if s.start <= addr && addr < s.end && best.is_none_or(|b| s.used.rank() > b.used.rank()) {
                best = Some(s);
            }
        }
        best
    }

    /// `[start, end)` cut into pieces that each have one deciding span, in address order.
    pub fn pieces(&self, start: u64, end: u64) -> Vec<Piece<'_>> {
        let mut cuts: Vec<u64> = Vec::with_capacity(2 * self.spans.len() + 2);
        cuts.push(start);
        cuts.push(end);
        for s in &self.spans {
            for c in [s.start, s.end] {
                if start < c && c < end {
                    cuts.push(c);
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut out: Vec<Piece<'_>> = Vec::new();
        for w in cuts.windows(2) {
            let span = self.at(w[0]);
            match out.last_mut() {
                Some(last) if last.1 == w[0] && last.2.map(|s| s as *const Span) == span.map(|s| s as *const Span) => {
                    last.1 = w[1];
                }
                _ => out.push((w[0], w[1], span)),
            }
        }
        out
    }

    /// Bytes of `[start, end)` whose deciding span is of `used`.
    fn bytes_of(&self, used: Use) -> u64 {
        let (lo, hi) = self.spans.iter().fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s.start), hi.max(s.end)));
        if lo >= hi {
            return 0;
        }
        self.pieces(lo, hi)
            .iter()
            .filter(|(_, _, s)| s.is_some_and(|s| s.used == used))
            .fold(0u64, |acc, (s, e, _)| acc.saturating_add(e - s))
    }
}

/// What a VM's range needs to sit on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    /// `MAP_IDENTICAL` RAM.
    Ram,
    /// `MAP_RESERVED` RAM.
    UnmanagedRam,
    /// A passthrough window.
    Device,
    /// The host GICV behind a VM's GIC CPU interface.
    Gicv,
}

/// Why a range is refused.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PlaceKind {
    /// It overlaps what the kernel, the root task or the console keep.
    Collides {
        /// What, in words.
        what: String,
        /// The whole of what it collides with.
        start: u64,
        /// One past its end.
        end: u64,
    },
    /// Part of it is memory of the wrong kind.
    WrongMemory {
        /// What the entry needs.
        need: Need,
        /// What is there.
        found: Use,
        /// Its name.
        what: String,
        /// The part of the range.
        start: u64,
        /// One past its end.
        end: u64,
    },
    /// A GIC CPU interface mapped from something other than the host's GICV.
    NotGicv {
        /// The host's GICV, in words.
        what: String,
        /// Its start.
        start: u64,
        /// One past its end.
        end: u64,
    },
    /// Part of it has nothing of the platform behind it.
    Nothing {
        /// The part.
        start: u64,
        /// One past its end.
        end: u64,
    },
    /// A vCPU pinned to a core the kernel does not run on.
    NoSuchCore {
        /// The vCPU.
        vcpu: usize,
        /// The core its `phys_cpu_ids` entry names.
        core: u64,
        /// Cores the kernel runs on.
        cores: u64,
    },
    /// The VMs' `MAP_ALLOC` RAM and flash banks do not fit in the RAM left.
    NotEnoughRam {
        /// Bytes all VMs need up to and including this entry.
        needed: u64,
        /// RAM the kernel manages, less what is taken and the fixed regions.
        available: u64,
    },
}

/// A range of a VM that cannot sit where the configuration puts it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PlaceProblem {
    /// Index of the VM in the system.
    pub vm: usize,
    /// The VM's name.
    pub vm_name: String,
    /// The entry.
    pub field: Field,
    /// The host-physical range of the entry.
    pub host: GuestRange,
    /// Why.
    pub kind: PlaceKind,
}

fn span(start: u64, end: u64) -> String {
    format!("[{start:#x}, {end:#x})")
}

fn mib(n: u64) -> String {
    if n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{}.{} MiB", n >> 20, ((n & 0xf_ffff) * 10) >> 20)
    }
}

impl PlaceKind {
    /// The words, naming the part of the range they are about unless it is `whole`.
    fn words(&self, f: &mut fmt::Formatter<'_>, whole: Option<GuestRange>) -> fmt::Result {
        let part = |start: u64, end: u64| match whole {
            Some(w) if w.base.0 == start && w.end() == Some(end) => String::new(),
            _ => format!("its part {} ", span(start, end)),
        };
        match self {
            PlaceKind::Collides { what, start, end } => write!(f, "collides with {what} {}", span(*start, *end)),
            PlaceKind::WrongMemory { need, found, what, start, end } => {
                let at = format!("{}is", part(*start, *end));
                match (need, found) {
                    (Need::Ram, Use::UnmanagedRam) => write!(
                        f,
                        "{at} {what}: MAP_IDENTICAL needs RAM the kernel manages; give RAM the kernel does not \
                         manage as map_type 2 (MAP_RESERVED)"
                    ),
                    (Need::Ram, _) => write!(f, "{at} {what}, not RAM"),
                    (Need::UnmanagedRam, Use::Ram) => write!(
                        f,
                        "{at} {what}: MAP_RESERVED is only for RAM the kernel does not manage; use map_type 1 \
                         (MAP_IDENTICAL) or 0 (MAP_ALLOC)"
                    ),
                    (Need::UnmanagedRam, _) => write!(
                        f,
                        "{at} {what}, not RAM: a MAP_RESERVED region there would hand the guest a host device; \
                         give a device as devices.passthrough_devices"
                    ),
                    (Need::Device | Need::Gicv, _) => {
                        write!(f, "{at} {what}, not device memory: passthrough is only for devices the platform lists")
                    }
                }
            }
            PlaceKind::NotGicv { what, start, end } => write!(
                f,
                "is not inside {what} {}: a VM's GIC CPU interface is the host's virtual CPU interface, nothing else",
                span(*start, *end)
            ),
            PlaceKind::Nothing { start, end } => {
                write!(f, "{}has no memory or device of this platform behind it", part(*start, *end))
            }
            PlaceKind::NoSuchCore { vcpu, core, cores } => write!(
                f,
                "vCPU {vcpu} is pinned to physical core {core}, but the kernel runs on cores 0 to {} \
                 (build with -DCAPVISOR_NUM_CPUS={}, or name a core below {cores})",
                cores - 1,
                core + 1
            ),
            PlaceKind::NotEnoughRam { needed, available } => write!(
                f,
                "the VMs' MAP_ALLOC RAM and flash banks need {} up to here, but the RAM the kernel manages leaves {} \
                 after the kernel, the root task and the fixed regions",
                mib(*needed),
                mib(*available)
            ),
        }
    }
}

impl fmt::Display for PlaceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.words(f, None)
    }
}

impl fmt::Display for PlaceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PlaceKind::NotEnoughRam { .. } => write!(f, "VM {:?}: guest RAM {}: ", self.vm_name, self.host)?,
            PlaceKind::NoSuchCore { .. } => write!(f, "VM {:?}: ", self.vm_name)?,
            _ => write!(f, "VM {:?}: host {} ", self.vm_name, self.host)?,
        }
        self.kind.words(f, Some(self.host))
    }
}

impl core::error::Error for PlaceProblem {}

/// Every fixed host range of a VM with the entry it comes from and what it needs.
fn claims(vm: &crate::model::VmConfig) -> Vec<(Field, GuestRange, Need)> {
    let mut v = Vec::new();
    for (j, m) in vm.memory.iter().enumerate() {
        let need = match m.map {
            MapType::Alloc => continue,
            MapType::Identical => Need::Ram,
            MapType::Reserved => Need::UnmanagedRam,
        };
        v.push((Field::Memory(j, Part::Whole), m.range, need));
    }
    for (j, d) in vm.passthrough.iter().enumerate() {
        if let Some(r) = &d.region {
            v.push((
                Field::Passthrough(j, Part::Element(2)),
                GuestRange::new(r.host.0, r.guest.size_bytes),
                Need::Device,
            ));
        }
    }
    for (j, r) in vm.passthrough_addresses.iter().enumerate() {
        v.push((Field::PassthroughAddress(j, Part::Whole), *r, Need::Device));
    }
    if let Some(r) = &vm.capvisor.gic_cpu_interface {
        v.push((Field::Key("capvisor.gic_cpu_interface"), GuestRange::new(r.host.0, r.guest.size_bytes), Need::Gicv));
    }
    v
}

fn fits(need: Need, used: Use) -> bool {
    matches!(
        (need, used),
        (Need::Ram, Use::Ram) | (Need::UnmanagedRam, Use::UnmanagedRam) | (Need::Device | Need::Gicv, Use::Device)
    )
}

/// Checks where every VM of `sys` puts host-physical memory against `mem`; every problem
/// found, VM by VM in entry order. Ranges that overflow are left to [`crate::check`].
pub fn check_placement(sys: &SystemConfig, mem: &HostMemory) -> Vec<PlaceProblem> {
    let mut out = Vec::new();
    for (i, vm) in sys.vms.iter().enumerate() {
        for vcpu in 0..usize::from(vm.cpu_num) {
            if let Err(core) = vm.pinned_core(vcpu, mem.cores) {
                let field =
                    if vm.phys_cpu_ids.len() > vcpu { Field::PhysCpuId(vcpu) } else { Field::Key("base.cpu_num") };
                out.push(PlaceProblem {
                    vm: i,
                    vm_name: vm.name.clone(),
                    field,
                    host: GuestRange::new(0, 0),
                    kind: PlaceKind::NoSuchCore { vcpu, core, cores: mem.cores },
                });
            }
        }
    }
    let mut fixed_ram: u64 = 0;
    for (i, vm) in sys.vms.iter().enumerate() {
        for (field, host, need) in claims(vm) {
            let Some(end) = host.end() else { continue };
            let mut push =
                |kind| out.push(PlaceProblem { vm: i, vm_name: vm.name.clone(), field: field.clone(), host, kind });
            let mut wrong = false;
            let mut seen: Vec<*const Span> = Vec::new();
            for (s, e, at) in mem.pieces(host.base.0, end) {
                match at {
                    Some(t) if t.used == Use::Taken => {
                        if !seen.contains(&(t as *const Span)) {
                            seen.push(t);
                            push(PlaceKind::Collides { what: t.what.clone(), start: t.start, end: t.end });
                        }
                    }
                    Some(t) if fits(need, t.used) => {
                        if need == Need::Ram {
                            fixed_ram = fixed_ram.saturating_add(e - s);
                        }
                    }
                    Some(t) if !wrong => {
                        wrong = true;
                        push(PlaceKind::WrongMemory { need, found: t.used, what: t.what.clone(), start: s, end: e });
                    }
                    None if !wrong => {
                        wrong = true;
                        push(PlaceKind::Nothing { start: s, end: e });
                    }
                    _ => {}
                }
            }
            if let (Need::Gicv, Some(g), false) = (need, &mem.gicv, wrong)
                && (host.base.0 < g.start || end > g.end)
            {
                push(PlaceKind::NotGicv { what: g.what.clone(), start: g.start, end: g.end });
            }
        }
    }
    let available = mem.bytes_of(Use::Ram).saturating_sub(fixed_ram);
    let mut needed: u64 = 0;
    let mut reported = false;
    for (i, vm) in sys.vms.iter().enumerate() {
        let alloc = vm.memory.iter().enumerate().filter(|(_, m)| m.map == MapType::Alloc);
        let alloc = alloc.map(|(j, m)| (Field::Memory(j, Part::Whole), m.range));
        let flash = vm.emulated.iter().enumerate().filter(|(_, d)| d.kind == EmulatedKind::CfiFlash);
        let flash = flash.map(|(j, d)| (Field::Emulated(j, Part::Element(2)), d.range));
        for (field, r) in alloc.chain(flash) {
            needed = needed.saturating_add(r.size_bytes);
            if needed > available && !reported {
                reported = true;
                out.push(PlaceProblem {
                    vm: i,
                    vm_name: vm.name.clone(),
                    field,
                    host: r,
                    kind: PlaceKind::NotEnoughRam { needed, available },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MemFlags, MemRegion, PassthroughDevice, PassthroughRegion, VmConfig};
    use alloc::vec;
    use sel4::PhysAddr;

    const FACTS: &str = "\
# a small QEMU virt
ram 0x4000_0000..0xc000_0000 the machine's RAM
taken 0x800_0000..0x800_1000 the GIC distributor the kernel drives
taken 0x900_0000..0x900_1000 the UART the root task uses for the console
device 0xa00_0000..0xa00_4000 the virtio-mmio windows
gicv 0x804_0000..0x805_0000 the GIC virtual CPU interface (GICV)
kernel-at-most 0x40_0000
root-task-at-most 0x100_0000
";

    fn facts() -> Facts {
        Facts::parse(FACTS).expect("facts parse")
    }

    fn predicted() -> HostMemory {
        let kept = [
            Span { start: 0x6000_0000, end: 0x6023_f000, used: Use::Taken, what: "the seL4 kernel image".into() },
            Span { start: 0xbf40_0000, end: 0xc000_0000, used: Use::Taken, what: "the root task".into() },
        ];
        let devices = [(0, 0x800_0000), (0x800_1000, 0x6000_0000), (0xc000_0000, 1 << 44)];
        HostMemory::predicted(&facts(), &[(0x6000_0000, 0xc000_0000)], &devices, &kept)
    }

    fn ut(paddr: u64, size_bits: u32, is_device: bool) -> UntypedDesc {
        UntypedDesc { paddr: PhysAddr(paddr), size_bits, is_device }
    }

    /// The same platform as the root task sees it after boot.
    fn booted() -> HostMemory {
        let untyped = [
            ut(0, 27, true),
            ut(0x800_1000, 12, true),
            ut(0x800_2000, 13, true),
            ut(0x800_4000, 14, true),
            ut(0x800_8000, 15, true),
            ut(0x801_0000, 16, true),
            ut(0x802_0000, 17, true),
            ut(0x804_0000, 18, true),
            ut(0x808_0000, 19, true),
            ut(0x810_0000, 20, true),
            ut(0x820_0000, 21, true),
            ut(0x840_0000, 22, true),
            ut(0x880_0000, 23, true),
            ut(0x900_0000, 24, true),
            ut(0xa00_0000, 25, true),
            ut(0xc00_0000, 26, true),
            ut(0x1000_0000, 28, true),
            ut(0x2000_0000, 29, true),
            ut(0x4000_0000, 29, true),
            ut(0xc000_0000, 30, true),
            ut(0x6000_0000, 16, false),
            ut(0x6024_0000, 18, false),
            ut(0x6028_0000, 19, false),
            ut(0x6030_0000, 20, false),
            ut(0x6040_0000, 22, false),
            ut(0x6080_0000, 23, false),
            ut(0x6100_0000, 24, false),
            ut(0x6200_0000, 25, false),
            ut(0x6400_0000, 26, false),
            ut(0x6800_0000, 27, false),
            ut(0x7000_0000, 28, false),
            ut(0x8000_0000, 29, false),
            ut(0xa000_0000, 28, false),
            ut(0xb000_0000, 27, false),
            ut(0xb800_0000, 26, false),
            ut(0xbc00_0000, 25, false),
            ut(0xbe00_0000, 24, false),
            ut(0xbf00_0000, 22, false),
        ];
        HostMemory::from_bootinfo(&facts(), &untyped)
    }

    fn sys_with(memory: Vec<MemRegion>, passthrough: Vec<PassthroughDevice>) -> SystemConfig {
        let mut vm = VmConfig::minimal(1, "guest", GuestRange::new(0x4000_0000, 0x1000_0000), 0x4000_0000);
        vm.memory = memory;
        vm.passthrough = passthrough;
        SystemConfig { vms: vec![vm] }
    }

    fn region(base: u64, size: u64, map: MapType) -> MemRegion {
        MemRegion { range: GuestRange::new(base, size), flags: MemFlags(0x7), map }
    }

    fn kinds(sys: &SystemConfig, mem: &HostMemory) -> Vec<String> {
        check_placement(sys, mem).iter().map(|p| format!("{}: {}", p.field, p.kind)).collect()
    }

    #[test]
    fn facts_refuse_a_bad_line_by_number() {
        let e = Facts::parse("ram 0x1000..0x2000 RAM\ntaken 0x3000 oops\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("START..END"), "{e}");
        assert!(Facts::parse("frobnicate 1\n").unwrap_err().message.contains("unknown fact"));
        assert_eq!(Facts::parse("# nothing\n").unwrap_err().line, 0);
    }

    #[test]
    fn good_placements_pass_in_both_pictures() {
        let sys = sys_with(
            vec![
                region(0x4000_0000, 0x1000_0000, MapType::Reserved),
                region(0x7000_0000, 0x100_0000, MapType::Identical),
                region(0x8000_0000, 0x1000_0000, MapType::Alloc),
            ],
            vec![PassthroughDevice {
                name: "virtio".into(),
                region: Some(PassthroughRegion {
                    guest: GuestRange::new(0xa00_0000, 0x1000),
                    host: PhysAddr(0xa00_0000),
                }),
                irq: 0,
            }],
        );
        for mem in [predicted(), booted()] {
            assert_eq!(kinds(&sys, &mem), Vec::<String>::new());
        }
    }

    #[test]
    fn each_wrong_placement_is_refused_with_what_it_hits_in_both_pictures() {
        let cases: [(MemRegion, &str); 6] = [
            (region(0x6001_0000, 0x10_0000, MapType::Identical), "collides with "),
            (region(0xbf50_0000, 0x10_0000, MapType::Identical), "collides with "),
            (
                region(0x900_0000, 0x1000, MapType::Reserved),
                "collides with the UART the root task uses for the console",
            ),
            (region(0xa00_0000, 0x1000, MapType::Reserved), "would hand the guest a host device"),
            (region(0x7000_0000, 0x1000, MapType::Reserved), "MAP_RESERVED is only for RAM the kernel does not manage"),
            (region(0x4000_0000, 0x1000, MapType::Identical), "give RAM the kernel does not manage as map_type 2"),
        ];
        for (r, words) in cases {
            for (name, mem) in [("predicted", predicted()), ("booted", booted())] {
                let sys = sys_with(vec![r], vec![]);
                let got = kinds(&sys, &mem);
                assert!(
                    got.len() == 1 && got[0].starts_with("kernel.memory_regions[0]: ") && got[0].contains(words),
                    "{name}: {r:?}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn ram_past_the_end_and_too_much_alloc_are_refused() {
        let past = sys_with(vec![region(0xb000_0000, 0x2000_0000, MapType::Identical)], vec![]);
        let got = kinds(&past, &predicted());
        assert!(got.iter().any(|k| k.contains("collides with the root task")), "{got:?}");
        assert!(
            got.iter().any(|k| k.contains("its part [0xc0000000, 0xd0000000) is device memory, not RAM")),
            "{got:?}"
        );
        let big = sys_with(vec![region(0x4000_0000, 0x8000_0000, MapType::Alloc)], vec![]);
        for mem in [predicted(), booted()] {
            let got = kinds(&big, &mem);
            assert!(got.len() == 1 && got[0].contains("need 2048 MiB up to here"), "{got:?}");
        }
    }

    #[test]
    fn passthrough_only_on_listed_devices() {
        let on_ram = PassthroughDevice {
            name: "x".into(),
            region: Some(PassthroughRegion {
                guest: GuestRange::new(0x1000_0000, 0x1000),
                host: PhysAddr(0x7000_0000),
            }),
            irq: 0,
        };
        let on_gic = PassthroughDevice {
            name: "y".into(),
            region: Some(PassthroughRegion { guest: GuestRange::new(0x1001_0000, 0x1000), host: PhysAddr(0x800_0000) }),
            irq: 0,
        };
        let sys = sys_with(vec![region(0x4000_0000, 0x1000, MapType::Alloc)], vec![on_ram, on_gic]);
        for mem in [predicted(), booted()] {
            let got = kinds(&sys, &mem);
            assert_eq!(got.len(), 2, "{got:?}");
            assert!(got[0].contains("RAM the kernel manages, not device memory"), "{got:?}");
            assert!(got[1].contains("collides with the GIC distributor the kernel drives"), "{got:?}");
        }
    }

    #[test]
    fn a_gic_cpu_interface_maps_only_the_hosts_gicv() {
        let mut sys = sys_with(vec![region(0x4000_0000, 0x1000, MapType::Alloc)], vec![]);
        let gicc =
            |host: u64| Some(PassthroughRegion { guest: GuestRange::new(0x801_0000, 0x2000), host: PhysAddr(host) });
        for mem in [predicted(), booted()] {
            sys.vms[0].capvisor.gic_cpu_interface = gicc(0x804_0000);
            assert_eq!(kinds(&sys, &mem), Vec::<String>::new());
            sys.vms[0].capvisor.gic_cpu_interface = gicc(0xa00_0000);
            let got = kinds(&sys, &mem);
            assert!(
                got.len() == 1 && got[0].contains("is not inside the GIC virtual CPU interface (GICV) [0x8040000"),
                "{got:?}"
            );
        }
    }

    #[test]
    fn pieces_follow_the_ranking_and_merge() {
        let mem = predicted();
        let p = mem.pieces(0x5fff_f000, 0x6030_0000);
        let used: Vec<_> = p.iter().map(|(s, e, sp)| (*s, *e, sp.map(|x| x.used))).collect();
        assert_eq!(
            used,
            vec![
                (0x5fff_f000, 0x6000_0000, Some(Use::UnmanagedRam)),
                (0x6000_0000, 0x6023_f000, Some(Use::Taken)),
                (0x6023_f000, 0x6030_0000, Some(Use::Ram)),
            ]
        );
    }
}
