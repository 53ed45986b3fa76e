//! The console protocol between the root task's `selftest-hal` mode and the host test, and
//! the comparison of two traces.
//!
//! The root task prints its platform description (the format of
//! `platforms/qemu-arm-virt/README.md`, so `sel4_model::Model::from_platform` boots the
//! same layout) with [`PLATFORM_PREFIX`], what of it the HAL is given ([`HalShare`]) with
//! [`SHARE_PREFIX`], the trace with [`TRACE_PREFIX`] and benchmark rows with
//! [`BENCH_PREFIX`]. Owns only these strings and pure functions over them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use sel4::cap_type::Untyped;
use sel4::{BootInfo, Cap, PhysAddr, Slot, SlotRegion, UntypedDesc, VirtAddr};

/// Prefix of a trace line on the console.
pub const TRACE_PREFIX: &str = "HALTRACE ";
/// Prefix of a platform-description line on the console.
pub const PLATFORM_PREFIX: &str = "HALPLAT ";
/// Prefix of a benchmark row on the console.
pub const BENCH_PREFIX: &str = "HALBENCH ";
/// Prefix of the line that says what of the bootinfo the HAL is given.
pub const SHARE_PREFIX: &str = "HALSHARE ";

/// What of a boot's bootinfo the HAL is given: its slot region and every untyped but the
/// withheld ones. The platform lines describe the bootinfo as the kernel wrote it; the root
/// task's runtime keeps some of it before the HAL starts (the console's untyped and the
/// first empty slots, `sel4_root_task::Reserved`), and the model's HAL must be given exactly
/// what the kernel's was, or the traces part at the first address or slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HalShare {
    /// The HAL's slots.
    pub slots: SlotRegion,
    /// Slots of untyped the HAL is not given.
    pub withheld_untyped: Vec<Slot>,
}

impl HalShare {
    /// All of `bi`: every empty slot and every untyped.
    pub fn whole(bi: &BootInfo<'_>) -> Self {
        HalShare { slots: bi.empty(), withheld_untyped: Vec::new() }
    }

    /// The untyped of `bi` the HAL is given, with their capabilities.
    pub fn untyped<'a>(&'a self, bi: &BootInfo<'a>) -> impl Iterator<Item = (Cap<Untyped>, UntypedDesc)> + 'a {
        let first = bi.untyped().start.index();
        bi.untyped_list()
            .enumerate()
            .map(move |(i, d)| (Slot::new(first + i as u64), d))
            .filter(|(s, _)| !self.withheld_untyped.contains(s))
            .map(|(s, d)| (s.cap(), d))
    }

    /// The line (without [`SHARE_PREFIX`]): `slots=START..END withheld_untyped=S,S` (or
    /// `withheld_untyped=none`).
    pub fn line(&self) -> String {
        let withheld = if self.withheld_untyped.is_empty() {
            String::from("none")
        } else {
            self.withheld_untyped.iter().map(|s| format!("{}", s.index())).collect::<Vec<_>>().join(",")
        };
        format!("slots={}..{} withheld_untyped={withheld}", self.slots.start.index(), self.slots.end.index())
    }

    /// Parses [`HalShare::line`]'s output.
    pub fn parse(line: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{SHARE_PREFIX}line {line:?}: {why}");
        let mut slots = None;
        let mut withheld = None;
        for word in line.split_whitespace() {
            match word.split_once('=') {
                Some(("slots", r)) => {
                    let (a, b) = r.split_once("..").ok_or_else(|| bad("slots is not START..END"))?;
                    let n = |x: &str| x.parse::<u64>().map_err(|_| bad("slot is not a number"));
                    slots = Some(SlotRegion { start: Slot::new(n(a)?), end: Slot::new(n(b)?) });
                }
                Some(("withheld_untyped", "none")) => withheld = Some(Vec::new()),
                Some(("withheld_untyped", list)) => {
                    let v: Result<Vec<Slot>, String> = list
                        .split(',')
                        .map(|x| x.parse::<u64>().map(Slot::new).map_err(|_| bad("untyped slot is not a number")))
                        .collect();
                    withheld = Some(v?);
                }
                _ => return Err(bad(&format!("unknown field {word:?}"))),
            }
        }
        Ok(HalShare {
            slots: slots.ok_or_else(|| bad("no slots="))?,
            withheld_untyped: withheld.ok_or_else(|| bad("no withheld_untyped="))?,
        })
    }
}

/// The lines of `console` that start with `prefix`, without it (and without a trailing
/// carriage return).
pub fn extract<'a>(console: impl IntoIterator<Item = &'a str>, prefix: &str) -> Vec<&'a str> {
    console.into_iter().filter_map(|l| l.trim_end_matches('\r').strip_prefix(prefix)).collect()
}

/// The `ROOTSERVER` line: where seL4 16's `create_rootserver_objects` put the objects it
/// makes for the root task, from the one of them a root task can ask about, its IPC buffer
/// (`Page_GetAddress` of `init_cap::IPC_BUFFER`). The kernel carves them, in this order,
/// from one block aligned to the largest: the root CNode (`2^(ROOT_CNODE_SIZE_BITS +
/// SLOT_BITS)` bytes), the extra bootinfo (`n_extra` pages rounded up to a power of two,
/// as `calculate_extra_bi_size_bits` sizes it: a 7-page DTB takes 8), the VSpace, the
/// ASID pool, the IPC buffer, the bootinfo frame, the `n_paging` page tables, the TCB. `None`
/// when the arithmetic leaves the address space.
pub fn rootserver_line(ipc_buffer: PhysAddr, n_paging: u64, n_extra: u64) -> Option<String> {
    let page = 1u64 << sel4::object::PAGE_BITS;
    let cnode_bytes = 1u64 << (sel4::config::ROOT_CNODE_SIZE_BITS + u64::from(sel4::object::SLOT_BITS));
    let p = ipc_buffer.get();
    let asid_pool = p.checked_sub(page)?;
    let vspace = asid_pool.checked_sub(page)?;
    let extra_bytes = match n_extra {
        0 => 0,
        n => n.checked_mul(page)?.checked_next_power_of_two()?,
    };
    let extra_bi = vspace.checked_sub(extra_bytes)?;
    let cnode = extra_bi.checked_sub(cnode_bytes)?;
    let bootinfo = p.checked_add(page)?;
    let paging = bootinfo.checked_add(page)?;
    let tcb = paging.checked_add(n_paging * page)?;
    Some(format!(
        "ROOTSERVER cnode={cnode:#x} extra_bi={extra_bi:#x} vspace={vspace:#x} asid_pool={asid_pool:#x} \
         ipc_buffer={p:#x} bootinfo={bootinfo:#x} paging={paging:#x} tcb={tcb:#x}"
    ))
}

/// The platform description of a boot, from its bootinfo, in the model's format: slot
/// ranges, every untyped, where the root task's image is (`image_paddr`: the physical
/// address of its first frame, from `Page_GetAddress`; its virtual start follows from the IPC
/// buffer, which the kernel maps right after the image frames) and where the root server
/// objects are (`ipc_buffer_paddr`, see [`rootserver_line`]).
pub fn platform_lines(
    bi: &BootInfo<'_>,
    image_paddr: Option<PhysAddr>,
    ipc_buffer_paddr: Option<PhysAddr>,
) -> Vec<String> {
    let r = |s: sel4::SlotRegion| format!("{}..{}", s.start.index(), s.end.index());
    let mut out = Vec::new();
    out.push(format!("EMPTY {}", r(bi.empty())));
    out.push(format!("UNTYPED_SLOTS {}", r(bi.untyped())));
    for (i, u) in bi.untyped_list().enumerate() {
        out.push(format!("UT {i} paddr={:#x} size_bits={} device={}", u.paddr.get(), u.size_bits, u.is_device));
    }
    if let Some(p) = image_paddr {
        let frames = bi.user_image_frames();
        let vaddr = VirtAddr(bi.ipc_buffer_addr() - frames.len() * 4096);
        out.push(format!("USER_IMAGE_PAGING {}", r(bi.user_image_paging())));
        out.push(format!("EXTRA_BI_PAGES {}", r(bi.extra_bi_pages())));
        out.push(format!("USER_IMAGE_FRAMES {}", r(frames)));
        out.push(format!("IMAGE paddr={p} vaddr={vaddr}"));
    }
    if let Some(line) =
        ipc_buffer_paddr.and_then(|p| rootserver_line(p, bi.user_image_paging().len(), bi.extra_bi_pages().len()))
    {
        out.push(line);
    }
    out
}

/// Where two traces disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Lines compared (the longer trace's length).
    pub lines: usize,
    /// Lines that differ, a missing line counting as different.
    pub disagreements: usize,
    /// The first few differences: `(line index, left, right)`.
    pub first: Vec<(usize, Option<String>, Option<String>)>,
}

/// Compares `left` and `right` line by line.
pub fn compare(left: &[&str], right: &[&str], keep: usize) -> Comparison {
    let lines = left.len().max(right.len());
    let mut disagreements = 0;
    let mut first = Vec::new();
    for i in 0..lines {
        let (a, b) = (left.get(i), right.get(i));
        if a != b {
            disagreements += 1;
            if first.len() < keep {
                first.push((i, a.map(|s| String::from(*s)), b.map(|s| String::from(*s))));
            }
        }
    }
    Comparison { lines, disagreements, first }
}
