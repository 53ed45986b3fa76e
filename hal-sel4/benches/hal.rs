//! HAL benchmark on the seL4 model booted from the QEMU virt platform description: kernel
//! invocations per `alloc_memory_region_at` against the lower bound, and a 4 KiB-pages-only
//! baseline.
//!
//! Each case starts from a freshly booted model, so the untyped is fresh, as the bound assumes.
//! Reference of an `alloc` row: the lower bound, per untyped the range touches, of the
//! padding retypes that bring a fresh untyped's watermark to the range's start plus one
//! retype per 256 frames of the fewest frames that cover it (`hal_sel4::plan::lower_bound_piece`).
//! The baseline rows price the same with 4 KiB frames only (computed, not run: 1 GiB of 4 KiB
//! frames would need 262144 slots, four times the root CNode). `free` rows: revokes measured
//! against one `CNode_Delete` per frame.
//!
//! `cargo bench -p hal-sel4 --bench hal` prints a table; `-- --json` prints one JSON object
//! per row instead (`name`, `value`, `unit`, `reference`, `ratio`).

use hal_sel4::plan;
use hal_sel4::{HalConfig, KindRequest, Sel4Hal};
use sel4::{Op, PhysAddr, UntypedDesc};
use sel4_model::Model;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

struct Case {
    name: &'static str,
    base: u64,
    size: u64,
}

const CASES: &[Case] = &[
    Case { name: "4KiB inside an untyped (0x6800_3000)", base: 0x6800_3000, size: 4 * KIB },
    Case { name: "4KiB at an untyped's start (0x6800_0000)", base: 0x6800_0000, size: 4 * KIB },
    Case { name: "4KiB, a whole untyped (0x6023_f000)", base: 0x6023_f000, size: 4 * KIB },
    Case { name: "2MiB inside an untyped (0x6060_0000)", base: 0x6060_0000, size: 2 * MIB },
    Case { name: "2MiB at an untyped's start (0x7000_0000)", base: 0x7000_0000, size: 2 * MIB },
    Case { name: "64MiB inside an untyped (0x6c00_0000)", base: 0x6c00_0000, size: 64 * MIB },
    Case { name: "64MiB at an untyped's start (0x6800_0000)", base: 0x6800_0000, size: 64 * MIB },
    Case { name: "64MiB, a whole untyped (0x6400_0000)", base: 0x6400_0000, size: 64 * MIB },
    Case { name: "1GiB RAM, three whole untypeds (0x7000_0000)", base: 0x7000_0000, size: GIB },
    Case { name: "1GiB device, one untyped (0xc000_0000)", base: 0xc000_0000, size: GIB },
];

struct Row {
    name: String,
    value: u64,
    unit: &'static str,
    reference: u64,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.value as f64 / self.reference as f64
    }
}

/// The untyped pieces `[s, t)` of the range, with each untyped's base.
fn pieces(untyped: &[(sel4::Slot, UntypedDesc)], base: u64, size: u64) -> Vec<(PhysAddr, PhysAddr, PhysAddr)> {
    let (base, end) = (PhysAddr(base), PhysAddr(base + size));
    let mut out = Vec::new();
    for (_, d) in untyped {
        let (us, ue) = (d.paddr, PhysAddr(d.end()));
        let (s, t) = (base.max(us), end.min(ue));
        if s < t {
            out.push((us, s, t));
        }
    }
    out
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let fan = sel4::config::RETYPE_FAN_OUT_LIMIT;
    let mut rows = Vec::new();
    for c in CASES {
        let m = Model::qemu_arm_virt();
        let untyped = m.untyped_slots();
        let empty = m.bootinfo().empty();
        let mut hal = Sel4Hal::new(m, untyped.iter().map(|(s, d)| (s.cap(), *d)), HalConfig::new(empty))
            .expect("the model's untyped list is valid");
        let ps = pieces(&untyped, c.base, c.size);
        let bound: u64 = ps.iter().map(|&(u, s, t)| plan::lower_bound_piece(u, s, t, fan)).sum();
        let baseline: u64 = ps.iter().map(|&(u, s, t)| plan::small_pages_only_piece(u, s, t, fan)).sum();

        let before = hal.kernel().counters().total();
        hal.alloc_region(PhysAddr(c.base), c.size, KindRequest::Uniform).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let used = hal.kernel().counters().total() - before;
        let frames = hal.frames(PhysAddr(c.base)).count() as u64;

        let before = hal.kernel().counters().get(Op::CNodeRevoke);
        let total_before = hal.kernel().counters().total();
        hal.dealloc_region(PhysAddr(c.base), c.size).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let revokes = hal.kernel().counters().get(Op::CNodeRevoke) - before;
        assert_eq!(hal.kernel().counters().total() - total_before, revokes, "free makes only revokes");

        let reuse_before = hal.kernel().counters().total();
        hal.alloc_region(PhysAddr(c.base), c.size, KindRequest::Uniform).expect("same range again");
        let reuse = hal.kernel().counters().total() - reuse_before;

        rows.push(Row { name: format!("alloc {}", c.name), value: used, unit: "invocations", reference: bound });
        rows.push(Row {
            name: format!("4KiB-pages-only baseline {}", c.name),
            value: baseline,
            unit: "invocations",
            reference: bound,
        });
        rows.push(Row {
            name: format!("alloc again after free {}", c.name),
            value: reuse,
            unit: "invocations",
            reference: bound,
        });
        rows.push(Row {
            name: format!("free {} (reference: one delete per frame)", c.name),
            value: revokes,
            unit: "invocations",
            reference: frames,
        });
    }
    if json {
        for r in &rows {
            println!(
                "{{\"name\":{},\"value\":{},\"unit\":\"{}\",\"reference\":{},\"ratio\":{:.3}}}",
                json_string(&r.name),
                r.value,
                r.unit,
                r.reference,
                r.ratio()
            );
        }
        return;
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4);
    println!("{:<w$}  {:>8}  {:>11}  {:>9}  {:>6}", "name", "value", "unit", "reference", "ratio");
    for r in &rows {
        println!("{:<w$}  {:>8}  {:>11}  {:>9}  {:>6.2}", r.name, r.value, r.unit, r.reference, r.ratio());
    }
    let allocs: Vec<&Row> =
        rows.iter().filter(|r| r.name.starts_with("alloc ") && !r.name.starts_with("alloc again")).collect();
    let worst = allocs.iter().map(|r| r.ratio()).fold(0.0, f64::max);
    let within = allocs.iter().filter(|r| r.ratio() <= 1.1).count();
    println!("\nalloc rows within 1.1x of the bound: {within} of {}; worst ratio {worst:.2}", allocs.len());
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
