//! [`Driver`]: HAL operations that each print one trace line, so a run on the real kernel
//! and a run on the model can be compared line by line.
//!
//! # Trace format
//! One line per operation: `<n> <op> <arguments> -> <result> c=<retypes>/<revokes>/<calls>`,
//! where the result carries everything the kernel decided: physical addresses of the frames
//! made (`frames=` runs `<size>@<paddr>x<count>`), the slots they went into, the virtual
//! address of a mapping, the address `Page_GetAddress` reports, or the error (its `Debug`
//! form, which names the kind and every field). `c=` counts the kernel calls the operation
//! made. Lines starting with `#` are notes (scenario names, results). Nothing in a line
//! depends on time or on host addresses, so equal behaviour gives equal text.
//!
//! Owns the HAL under test while it runs and the line counter; never touches capabilities
//! outside the HAL's slot region (its full checks probe free slots of that region only).

use alloc::format;
use alloc::string::String;
use core::fmt::{self, Write as _};

use axvm_hal::{HostPhysAddr, HostVirtAddr};
use hal_sel4::{HalError, KindRequest, MemoryKind, Objects, Sel4Hal};
use sel4::{FrameSize, Kernel, ObjectBlueprint, Op, PhysAddr, Slot, SlotRegion, VirtAddr};

use crate::Failure;
use crate::counting::{Counting, Counts};
use crate::state::{CheckSummary, full_check};

/// Kernel calls one operation made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// `Untyped_Retype` calls.
    pub retypes: u64,
    /// `CNode_Revoke` calls.
    pub revokes: u64,
    /// All calls.
    pub total: u64,
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c={}/{}/{}", self.retypes, self.revokes, self.total)
    }
}

/// What a successful region allocation made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Made {
    /// What backs it.
    pub kind: MemoryKind,
    /// First slot of its capabilities.
    pub first_slot: Slot,
    /// Number of capabilities.
    pub objects: u64,
    /// Kernel calls.
    pub cost: Cost,
}

/// A translation checked against the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// What the HAL answered.
    pub paddr: PhysAddr,
    /// Base of the frame that holds it, as the HAL records it.
    pub frame: PhysAddr,
    /// The frame's address as `Page_GetAddress` reports it.
    pub kernel: Result<PhysAddr, sel4::Error>,
}

/// A hook run after every traced operation (host tests check the model against the pool).
pub type AfterOp<'a, K> = dyn FnMut(&Sel4Hal<Counting<K>>) + 'a;

/// Runs HAL operations and traces them. See the module docs.
pub struct Driver<'s, K: Kernel> {
    hal: Sel4Hal<Counting<K>>,
    region: SlotRegion,
    sink: &'s mut dyn FnMut(&str),
    seq: u64,
    last: Cost,
    after_op: Option<&'s mut AfterOp<'s, K>>,
    /// Whether full checks probe every free slot in the kernel (slow on a large region).
    pub probe_slots: bool,
}

/// `Debug` of a HAL error without the outer `HalError` layer when it adds nothing.
struct ErrText<'a>(&'a HalError);

impl fmt::Display for ErrText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x?}", self.0)
    }
}

fn size_name(s: FrameSize) -> &'static str {
    match s {
        FrameSize::Small => "4k",
        FrameSize::Large => "2m",
        FrameSize::Huge => "1g",
    }
}

impl<'s, K: Kernel> Driver<'s, K> {
    /// A driver over `hal`, whose slots are `region`, writing lines to `sink`.
    pub fn new(hal: Sel4Hal<Counting<K>>, region: SlotRegion, sink: &'s mut dyn FnMut(&str)) -> Self {
        Driver {
            hal,
            region,
            sink,
            seq: 0,
            last: Cost { retypes: 0, revokes: 0, total: 0 },
            after_op: None,
            probe_slots: true,
        }
    }

    /// Runs `hook` after every traced operation.
    pub fn set_after_op(&mut self, hook: &'s mut AfterOp<'s, K>) {
        self.after_op = Some(hook);
    }

    /// The HAL (read only).
    pub fn hal(&self) -> &Sel4Hal<Counting<K>> {
        &self.hal
    }

    /// The HAL, for calls that are not traced.
    pub fn hal_mut(&mut self) -> &mut Sel4Hal<Counting<K>> {
        &mut self.hal
    }

    /// The slot region the HAL owns.
    pub fn region(&self) -> SlotRegion {
        self.region
    }

    /// Gives the HAL back.
    pub fn into_hal(self) -> Sel4Hal<Counting<K>> {
        self.hal
    }

    /// Operation lines written so far.
    pub fn operations(&self) -> u64 {
        self.seq
    }

    /// Writes a note line (`# ...`).
    pub fn note(&mut self, args: fmt::Arguments<'_>) {
        let mut s = String::from("# ");
        let _ = s.write_fmt(args);
        (self.sink)(&s);
    }

    fn emit(&mut self, args: fmt::Arguments<'_>) {
        let mut s = String::new();
        let _ = write!(s, "{} ", self.seq);
        let _ = s.write_fmt(args);
        self.seq += 1;
        (self.sink)(&s);
        if let Some(hook) = self.after_op.as_mut() {
            hook(&self.hal);
        }
    }

    fn counts(&self) -> Counts {
        self.hal.kernel().observer
    }

    fn cost(&mut self, before: Counts) -> Cost {
        let d = self.counts().since(&before);
        self.last = Cost { retypes: d.get(Op::UntypedRetype), revokes: d.get(Op::CNodeRevoke), total: d.total() };
        self.last
    }

    /// Kernel calls of the last traced operation.
    pub fn last_cost(&self) -> Cost {
        self.last
    }

    /// The frames of the allocation at `base` as runs `<size>@<paddr>x<count>`.
    pub fn frames_text(&self, base: PhysAddr) -> String {
        let mut out = String::new();
        let mut run: Option<(FrameSize, u64, u64)> = None;
        let flush = |out: &mut String, r: (FrameSize, u64, u64)| {
            let sep = if out.is_empty() { "" } else { "," };
            let _ = write!(out, "{sep}{}@{:#x}x{}", size_name(r.0), r.1, r.2);
        };
        for (f, _) in self.hal.frames(base) {
            match run {
                Some((s, start, n)) if s == f.size && start + n * s.size_bytes() == f.paddr.get() => {
                    run = Some((s, start, n + 1));
                }
                _ => {
                    if let Some(r) = run {
                        flush(&mut out, r);
                    }
                    run = Some((f.size, f.paddr.get(), 1));
                }
            }
        }
        if let Some(r) = run {
            flush(&mut out, r);
        }
        if out.is_empty() {
            out.push('-');
        }
        out
    }

    /// `alloc_region`.
    pub fn alloc(&mut self, base: u64, size: u64, kind: KindRequest) -> Result<Made, HalError> {
        let c0 = self.counts();
        let r = self.hal.alloc_region(PhysAddr(base), size, kind).map(|a| (a.kind, a.first_slot, a.objects));
        let cost = self.cost(c0);
        match r {
            Ok((mem, first_slot, objects)) => {
                let frames = self.frames_text(PhysAddr(base));
                self.emit(format_args!(
                    "alloc {base:#x}+{size:#x} {kind:?} -> ok {mem:?} slots={}+{objects} frames={frames} {cost}",
                    first_slot.index()
                ));
                Ok(Made { kind: mem, first_slot, objects, cost })
            }
            Err(e) => {
                self.emit(format_args!("alloc {base:#x}+{size:#x} {kind:?} -> err {} {cost}", ErrText(&e)));
                Err(e)
            }
        }
    }

    /// The trait's `alloc_memory_region_at`.
    pub fn alloc_at(&mut self, base: u64, size: u64) -> bool {
        let c0 = self.counts();
        let ok = self.hal.alloc_memory_region_at(HostPhysAddr::from_usize(base as usize), size as usize);
        let cost = self.cost(c0);
        let frames = if ok { self.frames_text(PhysAddr(base)) } else { String::from("-") };
        self.emit(format_args!("alloc_at {base:#x}+{size:#x} -> {ok} frames={frames} {cost}"));
        ok
    }

    /// `dealloc_region`.
    pub fn dealloc(&mut self, base: u64, size: u64) -> Result<Cost, HalError> {
        let c0 = self.counts();
        let r = self.hal.dealloc_region(PhysAddr(base), size);
        let cost = self.cost(c0);
        match r {
            Ok(()) => {
                self.emit(format_args!("dealloc {base:#x}+{size:#x} -> ok {cost}"));
                Ok(cost)
            }
            Err(e) => {
                self.emit(format_args!("dealloc {base:#x}+{size:#x} -> err {} {cost}", ErrText(&e)));
                Err(e)
            }
        }
    }

    /// The trait's `dealloc_memory_region_at` (reports nothing; the line records the cost).
    pub fn dealloc_at(&mut self, base: u64, size: u64) -> Cost {
        let c0 = self.counts();
        self.hal.dealloc_memory_region_at(HostPhysAddr::from_usize(base as usize), size as usize);
        let cost = self.cost(c0);
        let still = self.hal.pool().allocation(PhysAddr(base)).is_some();
        self.emit(format_args!("dealloc_at {base:#x}+{size:#x} -> allocated={still} {cost}"));
        cost
    }

    /// `map_region`.
    pub fn map(&mut self, base: u64) -> Result<VirtAddr, HalError> {
        let c0 = self.counts();
        let r = self.hal.map_region(PhysAddr(base));
        let cost = self.cost(c0);
        match r {
            Ok(va) => self.emit(format_args!("map {base:#x} -> ok va={va} {cost}")),
            Err(e) => self.emit(format_args!("map {base:#x} -> err {} {cost}", ErrText(&e))),
        }
        r
    }

    /// `unmap_region`.
    pub fn unmap(&mut self, base: u64) -> Result<(), HalError> {
        let c0 = self.counts();
        let r = self.hal.unmap_region(PhysAddr(base));
        let cost = self.cost(c0);
        match r {
            Ok(()) => self.emit(format_args!("unmap {base:#x} -> ok {cost}")),
            Err(e) => self.emit(format_args!("unmap {base:#x} -> err {} {cost}", ErrText(&e))),
        }
        r
    }

    /// `try_virt_to_phys`, and for an address the HAL knows, the trait's `virt_to_phys` and
    /// `Page_GetAddress` of the frame behind it.
    pub fn v2p(&mut self, va: u64) -> Result<Translation, HalError> {
        let c0 = self.counts();
        let r = self.hal.try_virt_to_phys(VirtAddr(va));
        let out = match r {
            Ok(p) => {
                let via_trait = self.hal.virt_to_phys(HostVirtAddr::from_usize(va as usize)).as_usize() as u64;
                let frame = self.hal.table().iter().find(|f| f.paddr <= p && p < f.end()).copied();
                match frame {
                    Some(f) if via_trait == p.get() => {
                        let kernel = self.hal.kernel_mut().page_get_address(f.slot.cap());
                        Ok(Translation { paddr: p, frame: f.paddr, kernel })
                    }
                    Some(_) => Err(HalError::Inconsistent { paddr: p, kernel: Some(PhysAddr(via_trait)) }),
                    None => Err(HalError::Inconsistent { paddr: p, kernel: None }),
                }
            }
            Err(e) => Err(HalError::Table(e)),
        };
        let cost = self.cost(c0);
        match &out {
            Ok(t) => {
                let k = match t.kernel {
                    Ok(k) => format!("{k}"),
                    Err(e) => format!("{e:?}"),
                };
                self.emit(format_args!("v2p {va:#x} -> ok {} frame={} kernel={k} {cost}", t.paddr, t.frame));
            }
            Err(e) => self.emit(format_args!("v2p {va:#x} -> err {} {cost}", ErrText(e))),
        }
        out
    }

    /// `alloc_paging_frames`, with where they were mapped.
    pub fn paging(&mut self, num: usize, align: usize) -> Result<PhysAddr, HalError> {
        let c0 = self.counts();
        let r = self.hal.alloc_paging_frames(num, align);
        let cost = self.cost(c0);
        match r {
            Ok(p) => {
                let va = self.hal.try_phys_to_virt(p).map(|v| v.get()).unwrap_or(0);
                self.emit(format_args!("paging {num} {align:#x} -> ok {p} va={va:#x} {cost}"));
            }
            Err(e) => self.emit(format_args!("paging {num} {align:#x} -> err {} {cost}", ErrText(&e))),
        }
        r
    }

    /// `dealloc_paging_frames`.
    pub fn paging_free(&mut self, paddr: PhysAddr, num: usize) -> Result<(), HalError> {
        let c0 = self.counts();
        let r = self.hal.dealloc_paging_frames(paddr, num);
        let cost = self.cost(c0);
        match r {
            Ok(()) => self.emit(format_args!("paging_free {paddr} {num} -> ok {cost}")),
            Err(e) => self.emit(format_args!("paging_free {paddr} {num} -> err {} {cost}", ErrText(&e))),
        }
        r
    }

    /// `alloc_objects`.
    pub fn objects(&mut self, blueprint: ObjectBlueprint, count: u64) -> Result<Objects, HalError> {
        let c0 = self.counts();
        let r = self.hal.alloc_objects(blueprint, count);
        let cost = self.cost(c0);
        match r {
            Ok(o) => self.emit(format_args!(
                "objects {blueprint:?} {count} -> ok {} slots={}+{} {cost}",
                o.base,
                o.first.index(),
                o.count
            )),
            Err(e) => self.emit(format_args!("objects {blueprint:?} {count} -> err {} {cost}", ErrText(&e))),
        }
        r
    }

    /// `free_objects`.
    pub fn objects_free(&mut self, objects: Objects, blueprint: ObjectBlueprint) -> Result<(), HalError> {
        let c0 = self.counts();
        let r = self.hal.free_objects(Objects { blueprint, ..objects });
        let cost = self.cost(c0);
        match r {
            Ok(()) => self.emit(format_args!("objects_free {} {blueprint:?} -> ok {cost}", objects.base)),
            Err(e) => {
                self.emit(format_args!("objects_free {} {blueprint:?} -> err {} {cost}", objects.base, ErrText(&e)))
            }
        }
        r
    }

    /// [`full_check`], traced.
    pub fn check(&mut self) -> Result<CheckSummary, Failure> {
        let r = full_check(&mut self.hal, self.region, self.probe_slots);
        match &r {
            // The probe's count stays out of the line: whether a side probes is its own choice
            // (the model is checked slot by slot in other ways), and a failed probe fails the line.
            Ok(s) => self.emit(format_args!("check -> ok frames={} used_slots={}", s.frames, s.used_slots)),
            Err(f) => self.emit(format_args!("check -> FAILED {}", f.what)),
        }
        r
    }
}
