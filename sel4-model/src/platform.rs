//! Platform descriptions: what the kernel hands the root task at boot (untyped list, slot
//! ranges) plus the few hardware facts the model needs (IRQ numbers, GIC list registers).
//!
//! Owns parsing and validation of the text format documented in
//! `platforms/qemu-arm-virt/README.md`; never touches model state. Errors name the file and
//! line.

use core::fmt;

use sel4::bootinfo::UntypedDesc;
use sel4::cap::{Slot, SlotRegion};
use sel4::config;
use sel4::object::{MAX_UNTYPED_BITS, MIN_UNTYPED_BITS, PAGE_BITS, SLOT_BITS};
use sel4::{PhysAddr, VirtAddr};

/// Physical addresses of the objects the kernel creates for the root task before it runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RootServerLayout {
    /// Root CNode (`2^(ROOT_CNODE_SIZE_BITS + SLOT_BITS)` bytes).
    pub cnode: PhysAddr,
    /// Extra bootinfo (the DTB); its frames are the `EXTRA_BI_PAGES` slots.
    pub extra_bi: PhysAddr,
    /// Root VSpace.
    pub vspace: PhysAddr,
    /// Initial ASID pool.
    pub asid_pool: PhysAddr,
    /// IPC buffer frame.
    pub ipc_buffer: PhysAddr,
    /// Bootinfo frame.
    pub bootinfo: PhysAddr,
    /// First of the paging tables (one per `USER_IMAGE_PAGING` slot, consecutive 4 KiB).
    pub paging: PhysAddr,
    /// Initial TCB.
    pub tcb: PhysAddr,
}

/// A parsed, validated platform description.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Platform {
    /// Empty root CNode slots.
    pub empty: SlotRegion,
    /// Slots of the untyped caps, `untyped[i]` in `untyped_slots.start + i`.
    pub untyped_slots: SlotRegion,
    /// The untyped list, in index order.
    pub untyped: Vec<UntypedDesc>,
    /// Caps of the root task's paging tables.
    pub user_image_paging: SlotRegion,
    /// Caps of the extra bootinfo frames.
    pub extra_bi_pages: SlotRegion,
    /// Caps of the root task's image frames.
    pub user_image_frames: SlotRegion,
    /// Where the root server objects live.
    pub rootserver: RootServerLayout,
    /// Physical address of the first image frame.
    pub image_paddr: PhysAddr,
    /// Virtual address the root task's image starts at.
    pub image_vaddr: VirtAddr,
    /// Highest IRQ number (`maxIRQ`).
    pub max_irq: u64,
    /// IRQs the kernel owns (timer) or reserves (VGIC maintenance, virtual timer).
    pub kernel_irqs: Vec<u64>,
    /// The virtual timer PPI, the only IRQ `VCPU_AckVPPI` accepts.
    pub vtimer_irq: u64,
    /// Number of GIC virtual CPU interface list registers.
    pub gic_list_regs: u64,
}

/// What is wrong with a platform description, and where.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PlatformError {
    /// File name as given to the parser.
    pub file: String,
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for PlatformError {}

/// Where the root task's image starts when the description does not say.
const DEFAULT_IMAGE_VADDR: u64 = 0x40_0000;

/// The root task's initial virtual address space, as `init_kernel` lays it out: image frames,
/// then the IPC buffer, the bootinfo frame and the extra bootinfo frames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VirtualLayout {
    pub start: u64,
    pub ipc_buffer: u64,
    pub bootinfo: u64,
    pub extra_bi: u64,
    pub end: u64,
}

impl VirtualLayout {
    pub fn new(image: VirtAddr, n_frames: u64, n_extra: u64) -> Self {
        let page = 1u64 << PAGE_BITS;
        let ipc_buffer = image.0 + n_frames * page;
        let bootinfo = ipc_buffer + page;
        let extra_bi = bootinfo + page;
        VirtualLayout { start: image.0, ipc_buffer, bootinfo, extra_bi, end: extra_bi + n_extra * page }
    }

    /// `(vaddr, level)` of each table `create_it_address_space` makes, in its order: level 1
    /// tables (under the root) first, then level 2, then level 3.
    pub fn tables(&self) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        let levels = crate::vspace::UPT_LEVELS;
        for level in 1..levels {
            // A table at `level` translates the region its parent slot covers.
            let bits = sel4::object::PAGE_TABLE_INDEX_BITS * (levels - level) + PAGE_BITS;
            let mut v = self.start & !((1u64 << bits) - 1);
            while v < self.end {
                out.push((v, level));
                v += 1 << bits;
            }
        }
        out
    }

    pub fn tables_needed(&self) -> u64 {
        self.tables().len() as u64
    }
}

/// Root CNode slots (`2^ROOT_CNODE_SIZE_BITS`).
pub(crate) const ROOT_SLOTS: u64 = 1 << config::ROOT_CNODE_SIZE_BITS;

/// Bytes of the rootserver block when the description does not place it: root CNode, 8 KiB
/// extra bootinfo, VSpace, ASID pool, IPC buffer, bootinfo, the paging tables and the TCB.
fn default_rootserver(untyped: &[UntypedDesc], n_paging: u64) -> Option<RootServerLayout> {
    let cnode_bytes = ROOT_SLOTS << SLOT_BITS;
    let page = 1u64 << PAGE_BITS;
    let total = cnode_bytes + 2 * page + 4 * page + n_paging * page + page;
    // Lowest cnode-aligned base whose block overlaps no untyped (untyped sorted by base).
    let mut candidates: Vec<u64> = vec![cnode_bytes];
    candidates.extend(untyped.iter().map(|u| u.end().div_ceil(cnode_bytes) * cnode_bytes));
    candidates.sort_unstable();
    let base = candidates
        .into_iter()
        .find(|&b| b.checked_add(total).is_some_and(|end| untyped.iter().all(|u| end <= u.paddr.0 || b >= u.end())))?;
    let extra_bi = base + cnode_bytes;
    let vspace = extra_bi + 2 * page;
    Some(RootServerLayout {
        cnode: PhysAddr(base),
        extra_bi: PhysAddr(extra_bi),
        vspace: PhysAddr(vspace),
        asid_pool: PhysAddr(vspace + page),
        ipc_buffer: PhysAddr(vspace + 2 * page),
        bootinfo: PhysAddr(vspace + 3 * page),
        paging: PhysAddr(vspace + 4 * page),
        tcb: PhysAddr(vspace + 4 * page + n_paging * page),
    })
}

/// Stores the value of a line that may appear once.
fn once<T>(slot: &mut Option<T>, v: T, p: &Parser<'_>, key: &str) -> Result<(), PlatformError> {
    if slot.is_some() {
        return Err(p.err(format!("{key} given twice")));
    }
    *slot = Some(v);
    Ok(())
}

struct Parser<'a> {
    file: &'a str,
    line: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> PlatformError {
        PlatformError { file: self.file.to_string(), line: self.line, message: message.into() }
    }

    fn num(&self, s: &str, what: &str) -> Result<u64, PlatformError> {
        let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
            None => s.replace('_', "").parse::<u64>(),
        };
        r.map_err(|_| self.err(format!("{what}: `{s}` is not a number")))
    }

    fn region(&self, s: Option<&str>, what: &str) -> Result<SlotRegion, PlatformError> {
        let s = s.ok_or_else(|| self.err(format!("{what}: missing `start..end`")))?;
        let (a, b) = s.split_once("..").ok_or_else(|| self.err(format!("{what}: `{s}` is not `start..end`")))?;
        let (start, end) = (self.num(a, what)?, self.num(b, what)?);
        if end < start {
            return Err(self.err(format!("{what}: range {start}..{end} ends before it starts")));
        }
        if end > ROOT_SLOTS {
            return Err(self.err(format!("{what}: range {start}..{end} runs past the root CNode ({ROOT_SLOTS} slots)")));
        }
        Ok(SlotRegion { start: Slot::new(start), end: Slot::new(end) })
    }

    /// `key=value` pairs; every key in `keys` must appear exactly once and no other.
    fn fields<'s>(&self, words: &[&'s str], keys: &[&str], what: &str) -> Result<Vec<&'s str>, PlatformError> {
        let mut out = vec![None; keys.len()];
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(|| self.err(format!("{what}: `{w}` is not `key=value`")))?;
            let i =
                keys.iter().position(|x| *x == k).ok_or_else(|| self.err(format!("{what}: unknown field `{k}`")))?;
            if out[i].replace(v).is_some() {
                return Err(self.err(format!("{what}: field `{k}` given twice")));
            }
        }
        out.iter().zip(keys).map(|(v, k)| v.ok_or_else(|| self.err(format!("{what}: missing field `{k}`")))).collect()
    }
}

impl Platform {
    /// Parses and validates a description; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Platform, PlatformError> {
        let mut p = Parser { file, line: 0 };
        let mut empty = None;
        let mut untyped_slots = None;
        let mut untyped: Vec<(usize, UntypedDesc)> = Vec::new();
        let mut paging = None;
        let mut extra = None;
        let mut frames = None;
        let mut rootserver = None;
        let mut image = None;
        let mut max_irq = None;
        let mut kernel_irqs = None;
        let mut vtimer = None;
        let mut lrs = None;

        for (i, raw) in text.lines().enumerate() {
            p.line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let words: Vec<&str> = content.split_whitespace().collect();
            let key = words[0];
            let rest = &words[1..];
            match key {
                "EMPTY" | "UNTYPED_SLOTS" | "USER_IMAGE_PAGING" | "EXTRA_BI_PAGES" | "USER_IMAGE_FRAMES" => {
                    if rest.len() != 1 {
                        return Err(p.err(format!("{key}: expected one `start..end`")));
                    }
                    let r = p.region(rest.first().copied(), key)?;
                    let target = match key {
                        "EMPTY" => &mut empty,
                        "UNTYPED_SLOTS" => &mut untyped_slots,
                        "USER_IMAGE_PAGING" => &mut paging,
                        "EXTRA_BI_PAGES" => &mut extra,
                        _ => &mut frames,
                    };
                    once(target, (r, p.line), &p, key)?;
                }
                "UT" => {
                    let idx = rest.first().ok_or_else(|| p.err("UT: missing index"))?;
                    let idx = p.num(idx, "UT index")?;
                    let f = p.fields(&rest[1..], &["paddr", "size_bits", "device"], "UT")?;
                    let paddr = p.num(f[0], "UT paddr")?;
                    let size_bits = p.num(f[1], "UT size_bits")?;
                    let is_device = match f[2] {
                        "true" => true,
                        "false" => false,
                        other => return Err(p.err(format!("UT device: `{other}` is not true or false"))),
                    };
                    if idx != untyped.len() as u64 {
                        return Err(
                            p.err(format!("UT index {idx}: expected {} (indices count up from 0)", untyped.len()))
                        );
                    }
                    if !(MIN_UNTYPED_BITS as u64..=MAX_UNTYPED_BITS as u64).contains(&size_bits) {
                        return Err(p.err(format!(
                            "UT {idx}: size_bits {size_bits} outside {MIN_UNTYPED_BITS}..={MAX_UNTYPED_BITS}"
                        )));
                    }
                    let d = UntypedDesc { paddr: PhysAddr(paddr), size_bits: size_bits as u32, is_device };
                    // The kernel checks alignment in its window's virtual addresses.
                    if !PhysAddr(crate::untyped::pptr(paddr)).is_aligned(d.size_bits) {
                        return Err(p.err(format!(
                            "UT {idx}: paddr {paddr:#x} is not aligned to 2^{size_bits} in the kernel window"
                        )));
                    }
                    if paddr.checked_add(d.size_bytes()).is_none_or(|end| end > config::PADDR_USER_DEVICE_TOP) {
                        return Err(p.err(format!("UT {idx}: region runs past the physical address space")));
                    }
                    untyped.push((p.line, d));
                }
                "ROOTSERVER" => {
                    let keys = ["cnode", "extra_bi", "vspace", "asid_pool", "ipc_buffer", "bootinfo", "paging", "tcb"];
                    let f = p.fields(rest, &keys, "ROOTSERVER")?;
                    let mut v = [0u64; 8];
                    for (i, s) in f.iter().enumerate() {
                        v[i] = p.num(s, keys[i])?;
                    }
                    let l = RootServerLayout {
                        cnode: PhysAddr(v[0]),
                        extra_bi: PhysAddr(v[1]),
                        vspace: PhysAddr(v[2]),
                        asid_pool: PhysAddr(v[3]),
                        ipc_buffer: PhysAddr(v[4]),
                        bootinfo: PhysAddr(v[5]),
                        paging: PhysAddr(v[6]),
                        tcb: PhysAddr(v[7]),
                    };
                    once(&mut rootserver, (l, p.line), &p, key)?;
                }
                "IMAGE" => {
                    let f = p.fields(rest, &["paddr", "vaddr"], "IMAGE")?;
                    let v = (PhysAddr(p.num(f[0], "IMAGE paddr")?), VirtAddr(p.num(f[1], "IMAGE vaddr")?));
                    if !v.0.is_aligned(PAGE_BITS) || !v.1.is_aligned(PAGE_BITS) {
                        return Err(p.err("IMAGE: paddr and vaddr must be page aligned"));
                    }
                    once(&mut image, (v, p.line), &p, key)?;
                }
                "MAX_IRQ" | "VTIMER_IRQ" | "GIC_LIST_REGS" => {
                    let [w] = rest else { return Err(p.err(format!("{key}: expected one number"))) };
                    let n = p.num(w, key)?;
                    let target = match key {
                        "MAX_IRQ" => &mut max_irq,
                        "VTIMER_IRQ" => &mut vtimer,
                        _ => &mut lrs,
                    };
                    once(target, n, &p, key)?;
                }
                "KERNEL_IRQS" => {
                    let v = rest.iter().map(|w| p.num(w, key)).collect::<Result<Vec<_>, _>>()?;
                    once(&mut kernel_irqs, v, &p, key)?;
                }
                other => return Err(p.err(format!("unknown line kind `{other}`"))),
            }
        }

        p.line = 0;
        let (empty, em_line) = empty.ok_or_else(|| p.err("missing EMPTY line"))?;
        let (untyped_slots, us_line) = untyped_slots.ok_or_else(|| p.err("missing UNTYPED_SLOTS line"))?;
        if untyped_slots.len() != untyped.len() as u64 {
            p.line = us_line;
            return Err(p.err(format!(
                "UNTYPED_SLOTS holds {} slots but there are {} UT lines",
                untyped_slots.len(),
                untyped.len()
            )));
        }
        if untyped.len() > sel4::bootinfo::MAX_UNTYPED {
            p.line = us_line;
            return Err(p.err(format!(
                "{} untyped, the bootinfo list holds {}",
                untyped.len(),
                sel4::bootinfo::MAX_UNTYPED
            )));
        }
        // Untyped regions never overlap.
        let mut sorted: Vec<&(usize, UntypedDesc)> = untyped.iter().collect();
        sorted.sort_by_key(|(_, d)| d.paddr);
        for w in sorted.windows(2) {
            if w[1].1.paddr.0 < w[0].1.end() {
                p.line = w[1].0;
                return Err(p.err(format!("untyped at {} overlaps the one on line {}", w[1].1.paddr, w[0].0)));
            }
        }
        let untyped: Vec<UntypedDesc> = untyped.into_iter().map(|(_, d)| d).collect();
        let none = SlotRegion { start: Slot::new(0), end: Slot::new(0) };
        let region = |r: Option<(SlotRegion, usize)>| r.map_or((none, 0), |x| x);
        let (paging, pg_line) = region(paging);
        let (extra, ex_line) = region(extra);
        let (frames, fr_line) = region(frames);
        // Slot regions must not collide with each other or with the initial caps.
        let named = [
            ("EMPTY", empty, em_line),
            ("UNTYPED_SLOTS", untyped_slots, us_line),
            ("USER_IMAGE_PAGING", paging, pg_line),
            ("EXTRA_BI_PAGES", extra, ex_line),
            ("USER_IMAGE_FRAMES", frames, fr_line),
        ];
        for (i, (na, a, la)) in named.iter().enumerate() {
            if !a.is_empty() && a.start.index() < sel4::init_cap::NUM_INITIAL_CAPS {
                p.line = *la;
                return Err(p.err(format!("{na} overlaps the initial caps (slots below 16)")));
            }
            for (nb, b, _) in &named[i + 1..] {
                if !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end {
                    p.line = *la;
                    return Err(p.err(format!("{na} overlaps {nb}")));
                }
            }
        }
        p.line = 0;
        let n_paging = paging.len();
        let rootserver = match rootserver {
            Some((l, line)) => {
                p.line = line;
                let cnode_bits = config::ROOT_CNODE_SIZE_BITS as u32 + SLOT_BITS;
                let page = 1u64 << PAGE_BITS;
                let tcb_bits = sel4::generated::object_bits::TCB;
                let objs = [
                    ("cnode", l.cnode, 1u64 << cnode_bits, cnode_bits),
                    ("extra_bi", l.extra_bi, extra.len() * page, PAGE_BITS),
                    ("vspace", l.vspace, page, PAGE_BITS),
                    ("asid_pool", l.asid_pool, page, PAGE_BITS),
                    ("ipc_buffer", l.ipc_buffer, page, PAGE_BITS),
                    ("bootinfo", l.bootinfo, page, PAGE_BITS),
                    ("paging", l.paging, n_paging * page, PAGE_BITS),
                    ("tcb", l.tcb, 1 << tcb_bits, tcb_bits),
                ];
                check_rootserver(&p, &objs, &untyped)?;
                l
            }
            None => default_rootserver(&untyped, n_paging)
                .ok_or_else(|| p.err("no room for the root server objects outside the untyped regions"))?,
        };
        let (image_paddr, image_vaddr) = image.map_or((PhysAddr(0), VirtAddr(DEFAULT_IMAGE_VADDR)), |(v, _)| v);
        if !frames.is_empty() && image.is_none() {
            p.line = fr_line;
            return Err(p.err("USER_IMAGE_FRAMES needs an IMAGE line (where the frames are)"));
        }
        let layout = VirtualLayout::new(image_vaddr, frames.len(), extra.len());
        let needed = layout.tables_needed();
        if n_paging != 0 && n_paging != needed {
            p.line = pg_line;
            return Err(p.err(format!(
                "USER_IMAGE_PAGING holds {n_paging} tables, but mapping {:#x}..{:#x} (image, IPC buffer, bootinfo, \
                 extra bootinfo) needs {needed}",
                layout.start, layout.end
            )));
        }
        Ok(Platform {
            empty,
            untyped_slots,
            untyped,
            user_image_paging: paging,
            extra_bi_pages: extra,
            user_image_frames: frames,
            rootserver,
            image_paddr,
            image_vaddr,
            max_irq: max_irq.unwrap_or(159),
            kernel_irqs: kernel_irqs.unwrap_or_default(),
            vtimer_irq: vtimer.unwrap_or(27),
            gic_list_regs: lrs.unwrap_or(4),
        })
    }
}

/// Each object: name, base, length in bytes, required alignment (log2).
type RootObj<'a> = (&'a str, PhysAddr, u64, u32);

fn check_rootserver(p: &Parser<'_>, objs: &[RootObj<'_>], untyped: &[UntypedDesc]) -> Result<(), PlatformError> {
    for (i, (name, base, len, align)) in objs.iter().enumerate() {
        if *len == 0 {
            continue;
        }
        let end = base.0.checked_add(*len).ok_or_else(|| p.err(format!("ROOTSERVER {name}: overflows")))?;
        if !base.is_aligned(*align) {
            return Err(p.err(format!("ROOTSERVER {name}: {base} is not aligned to 2^{align}")));
        }
        if let Some(u) = untyped.iter().find(|u| base.0 < u.end() && u.paddr.0 < end) {
            return Err(p.err(format!("ROOTSERVER {name}: {base} overlaps the untyped at {}", u.paddr)));
        }
        for (other, ob, ol, _) in &objs[i + 1..] {
            if *ol != 0 && base.0 < ob.0 + ol && ob.0 < end {
                return Err(p.err(format!("ROOTSERVER {name} overlaps {other}")));
            }
        }
    }
    Ok(())
}
