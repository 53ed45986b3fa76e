//! `capvisor plan --svg FILE`: a picture of what the placement check sees.
//!
//! Left, host-physical memory: the platform's RAM and devices, what the kernel, the root task
//! and the console keep, every fixed range a VM claims (identity-mapped and reserved RAM,
//! passthrough windows) and, when the system builds on the model, where capvisor placed each
//! VM's other RAM and flash contents, in address order. Right, one column per VM: its guest-physical map
//! (RAM, emulated devices, passthrough). A range the check refuses is red, with the reason.
//! Rows are in address order, not to scale (host memory spans 2^44 bytes; a page would vanish).
//!
//! Owns: the drawing. Never touches: the rules (`vm_config::place`).

use std::fmt::Write as _;

use vm_config::place::{HostMemory, Use};
use vm_config::{EmulatedKind, Field, MapType, Part, SystemConfig};

const ROW: u32 = 22;
/// Width of the host column and of each guest column, in pixels (monospace 11 px: ~6.6 px a character).
const HOST_COL: u32 = 860;
const GUEST_COL: u32 = 520;
const INDENT: u32 = 14;
/// What a guest row of a refused fixed range says (the reason is on its host row).
const REFUSED: &str = "refused: the reason is beside its host range";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn size(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

struct Row {
    start: u64,
    end: u64,
    label: String,
    fill: &'static str,
    bad: Option<String>,
}

fn fill_of(used: Use) -> &'static str {
    match used {
        Use::Ram => "#cfe8cf",
        Use::UnmanagedRam => "#e6f2d0",
        Use::Device => "#d4e1f5",
        Use::Taken => "#c8c8c8",
    }
}

const VM_FILLS: [&str; 4] = ["#ffe4b3", "#f3d1f0", "#d1f0ee", "#f0ead1"];

fn column(out: &mut String, x: u32, width: u32, title: &str, rows: &[Row]) -> u32 {
    let _ = writeln!(out, r#"<text x="{x}" y="20" font-weight="bold">{}</text>"#, esc(title));
    let mut y = 32;
    for (k, r) in rows.iter().enumerate() {
        // Rows inside a wider earlier row are indented under it.
        let depth = rows[..k]
            .iter()
            .filter(|o| o.start <= r.start && r.end <= o.end && (o.start, o.end) != (r.start, r.end))
            .count();
        let dx = INDENT * u32::try_from(depth.min(4)).unwrap_or(4);
        let (stroke, fill) = if r.bad.is_some() { ("#d00000", "#ffb3b3") } else { ("#555555", r.fill) };
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{y}" width="{}" height="{}" fill="{fill}" stroke="{stroke}"/>"#,
            x + dx,
            width - 20 - dx,
            ROW - 2
        );
        let text = format!("{:#012x}-{:#012x} {:>9}  {}", r.start, r.end, size(r.end - r.start), r.label);
        let _ = writeln!(out, r#"<text x="{}" y="{}">{}</text>"#, x + dx + 4, y + 15, esc(&text));
        y += ROW;
        if let Some(why) = &r.bad {
            let _ = writeln!(out, r##"<text x="{}" y="{}" fill="#d00000">{}</text>"##, x + dx + 8, y + 12, esc(why));
            y += ROW - 4;
        }
    }
    y
}

/// Host memory the model build gave a VM (RAM capvisor placed, flash contents): which VM,
/// where, how much, and what.
pub struct Placed {
    /// Index of the VM.
    pub vm: usize,
    /// Host-physical base.
    pub hpa: u64,
    /// Bytes.
    pub size: u64,
    /// What it is, in words.
    pub what: String,
}

/// The SVG text for `sys` placed on `mem`, with `placed` the RAM a model build of the system
/// gave each VM (empty when the check refused it).
pub fn draw(sys: &SystemConfig, mem: &HostMemory, placed: &[Placed]) -> String {
    let problems = vm_config::check_placement(sys, mem);
    let why = |vm: usize, field: &Field| {
        let mine: Vec<String> =
            problems.iter().filter(|p| p.vm == vm && &p.field == field).map(|p| p.kind.to_string()).collect();
        (!mine.is_empty()).then(|| mine.join("; "))
    };
    // Host: the platform's spans, then each VM's fixed claims and what the model placed.
    let mut host: Vec<Row> = Vec::new();
    for s in &mem.spans {
        host.push(Row { start: s.start, end: s.end, label: s.what.clone(), fill: fill_of(s.used), bad: None });
    }
    let mut guests: Vec<(String, Vec<Row>)> = Vec::new();
    for (i, vm) in sys.vms.iter().enumerate() {
        let fill = VM_FILLS[i % VM_FILLS.len()];
        let mut rows = Vec::new();
        for (j, m) in vm.memory.iter().enumerate() {
            let field = Field::Memory(j, Part::Whole);
            let (kind, fixed) = match m.map {
                MapType::Alloc => ("RAM, placed by capvisor (MAP_ALLOC)", false),
                MapType::Identical => ("RAM at the same host address (MAP_IDENTICAL)", true),
                MapType::Reserved => ("RAM the kernel does not manage (MAP_RESERVED)", true),
            };
            let (s, e) = (m.range.base.get(), m.range.end_saturating());
            let bad = why(i, &field);
            // A fixed range's reason is written beside its host range; here only that it is refused.
            let short = if fixed { bad.as_ref().map(|_| REFUSED.to_string()) } else { bad.clone() };
            rows.push(Row { start: s, end: e, label: kind.into(), fill, bad: short });
            if fixed {
                host.push(Row { start: s, end: e, label: format!("{}: {field}", vm.name), fill, bad });
            }
        }
        for d in &vm.emulated {
            let kind = match d.kind {
                EmulatedKind::InterruptController => "GICv2 distributor",
                EmulatedKind::GicV3Distributor => "GICv3 distributor",
                EmulatedKind::GicV3Redistributor => "GICv3 redistributors",
                EmulatedKind::Console => "PL011 UART",
                EmulatedKind::Dummy => "dummy device",
                EmulatedKind::CfiFlash => "CFI flash",
                EmulatedKind::Rtc => "PL031 clock",
            };
            let (s, e) = (d.range.base.get(), d.range.end_saturating());
            rows.push(Row {
                start: s,
                end: e,
                label: format!("{kind} {:?} (emulated)", d.name),
                fill: "#ffffff",
                bad: None,
            });
        }
        for (j, d) in vm.passthrough.iter().enumerate() {
            let Some(r) = &d.region else { continue };
            let field = Field::Passthrough(j, Part::Element(2));
            let bad = why(i, &field);
            let (s, e) = (r.guest.base.get(), r.guest.end_saturating());
            let host_end = r.host.0.saturating_add(r.guest.size_bytes);
            rows.push(Row {
                start: s,
                end: e,
                label: format!("{} (passthrough)", d.name),
                fill,
                bad: bad.as_ref().map(|_| REFUSED.to_string()),
            });
            host.push(Row {
                start: r.host.0,
                end: host_end,
                label: format!("{}: passthrough {}", vm.name, d.name),
                fill,
                bad,
            });
        }
        for (j, r) in vm.passthrough_addresses.iter().enumerate() {
            let field = Field::PassthroughAddress(j, Part::Whole);
            let bad = why(i, &field);
            let (s, e) = (r.base.get(), r.end_saturating());
            rows.push(Row {
                start: s,
                end: e,
                label: "passthrough address".into(),
                fill,
                bad: bad.as_ref().map(|_| REFUSED.to_string()),
            });
            host.push(Row { start: s, end: e, label: format!("{}: {field}", vm.name), fill, bad });
        }
        if let Some(g) = &vm.capvisor.gic_cpu_interface {
            let field = Field::Key("capvisor.gic_cpu_interface");
            let bad = why(i, &field);
            let (s, e) = (g.guest.base.get(), g.guest.end_saturating());
            rows.push(Row {
                start: s,
                end: e,
                label: "GIC CPU interface (host GICV)".into(),
                fill,
                bad: bad.as_ref().map(|_| REFUSED.to_string()),
            });
            let host_end = g.host.0.saturating_add(g.guest.size_bytes);
            host.push(Row { start: g.host.0, end: host_end, label: format!("{}: GICV", vm.name), fill, bad });
        }
        for p in placed.iter().filter(|p| p.vm == i) {
            host.push(Row {
                start: p.hpa,
                end: p.hpa.saturating_add(p.size),
                label: format!("{}: {}", vm.name, p.what),
                fill,
                bad: None,
            });
        }
        rows.sort_by_key(|r| (r.start, r.end));
        guests.push((format!("guest-physical memory of {}", vm.name), rows));
    }
    host.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));

    let mut body = String::new();
    let mut height = column(&mut body, 10, HOST_COL, "host-physical memory", &host);
    for (k, (title, rows)) in guests.iter().enumerate() {
        let x = 10 + HOST_COL + GUEST_COL * u32::try_from(k).unwrap_or(0);
        height = height.max(column(&mut body, x, GUEST_COL, title, rows));
    }
    let summary = match problems.len() {
        0 => "placement: every VM fits. Bounds before the root task is built: the root task's span is the most it may take; \
                 RAM capvisor placed is where the seL4 model of a recorded boot puts it"
            .to_string(),
        n => format!("placement: {n} refused (the messages: capvisor plan)"),
    };
    let _ = writeln!(
        body,
        r#"<text x="10" y="{}" fill="{}">{}</text>"#,
        height + 16,
        if problems.is_empty() { "#006000" } else { "#d00000" },
        esc(&summary)
    );
    let width = HOST_COL + GUEST_COL * u32::try_from(guests.len()).unwrap_or(0) + 20;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-family=\"monospace\" \
         font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
        height + 30
    )
}
