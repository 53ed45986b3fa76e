//! hal-check on the seL4 model: the scenarios and the random sequence pass (with the model's
//! own view of every untyped's watermark and of every slot checked after each operation),
//! the trace is a function of the seed and the platform, the comparison finds a planted
//! difference, a kernel that lies about frame addresses fails the scenarios, and the
//! benchmark's invocation counts meet the lower bound.

use hal_check::bench;
use hal_check::diff::{self, compare, platform_lines};
use hal_check::replay;
use hal_check::{Config, Driver, Layout, counting};
use hal_sel4::{HalConfig, Sel4Hal};
use sel4::cap_type as ct;
use sel4::{BootInfo, Cap, Kernel, PhysAddr, Slot, SlotRegion};
use sel4_model::Model;

fn run_on_model(model: Model, config: &Config, check_each_op: bool) -> (Vec<String>, usize) {
    let r = replay::run_on_model(model, config, check_each_op);
    for l in r.trace.iter().filter(|l| l.starts_with("# random") || l.starts_with("# hal-check")) {
        eprintln!("{l}");
    }
    if let Some(f) = &r.first_failure {
        eprintln!("{f}");
    }
    (r.trace, r.failures)
}

#[test]
fn everything_passes_on_the_recorded_platform_with_the_model_checked_after_each_operation() {
    // The per-operation hook checks every slot against the pool, so the slower probe is off.
    let config = Config { probe_slots: false, ..Config::SELFTEST };
    let (trace, failures) = run_on_model(Model::qemu_arm_virt(), &config, true);
    assert_eq!(failures, 0, "see stderr");
    let ops = trace.iter().filter(|l| !l.starts_with('#')).count();
    assert!(ops >= Config::SELFTEST.ops, "{ops} operation lines");
    for name in hal_check::scenarios::all::<Model>().map(|s| s.name) {
        assert!(trace.contains(&format!("# scenario {name}: ok")), "{name}");
    }
    assert!(trace.iter().any(|l| l.starts_with("# random: ok")));
    // The sequence reaches every kind of outcome the differential compares.
    for needle in [
        "-> ok Ram",
        "-> ok Device",
        "InUse",
        "NotBacked",
        "MixedKinds",
        "WrongKind",
        "Unaligned",
        "SizeMismatch",
        "v2p",
        "frames=2m@",
        "frames=1g@",
        "paging ",
        "objects ",
    ] {
        assert!(trace.iter().any(|l| l.contains(needle)), "no line with {needle:?}");
    }
}

#[test]
fn everything_passes_on_the_recorded_capvisor_boot() {
    // The layout capvisor's own loader hands the root task (its top of RAM differs).
    let config = Config { ops: 600, probe_slots: false, ..Config::SELFTEST };
    let (trace, failures) = run_on_model(Model::qemu_arm_virt_capvisor(), &config, true);
    assert_eq!(failures, 0, "see stderr");
    assert!(trace.iter().any(|l| l.starts_with("# random: ok")));
}

/// The HAL given what a root task's runtime left it (the console's device untyped and the
/// first empty slot withheld, as `sel4_root_task::Reserved` says): everything passes, and no
/// operation reaches the withheld untyped's addresses or slots.
#[test]
fn everything_passes_with_the_console_untyped_and_slot_withheld() {
    let m = Model::qemu_arm_virt_capvisor();
    let bi = m.bootinfo();
    let first = bi.untyped().start.index();
    let (i, uart_ut) = bi.untyped_list().enumerate().find(|(_, u)| u.paddr == PhysAddr(0x900_0000)).unwrap();
    let empty = bi.empty();
    let share = diff::HalShare {
        slots: SlotRegion { start: Slot::new(empty.start.index() + 1), end: empty.end },
        withheld_untyped: vec![Slot::new(first + i as u64)],
    };
    assert_eq!(diff::HalShare::parse(&share.line()), Ok(share.clone()), "{}", share.line());
    assert_eq!(share.untyped(&bi).count(), bi.untyped_list().len() - 1);
    let config = Config { ops: 400, probe_slots: false, ..Config::SELFTEST };
    let r = replay::run_on_model_with(Model::qemu_arm_virt_capvisor(), &share, &config, true);
    assert_eq!(r.failures, 0, "{:?}", r.first_failure);
    // No operation that succeeded names an address inside the withheld untyped.
    let inside = |l: &str| {
        l.split(|c: char| !c.is_ascii_alphanumeric())
            .filter_map(|t| t.strip_prefix("0x"))
            .filter_map(|t| {
                u64::from_str_radix(&t.chars().take_while(char::is_ascii_hexdigit).collect::<String>(), 16).ok()
            })
            .any(|a| uart_ut.paddr.get() <= a && a < uart_ut.end())
    };
    let used: Vec<&String> = r.trace.iter().filter(|l| l.contains("-> ok") && inside(l)).collect();
    assert!(used.is_empty(), "an operation used the withheld untyped: {used:?}");
    // Malformed share lines name what is wrong.
    assert!(diff::HalShare::parse("slots=1..2").unwrap_err().contains("withheld_untyped"));
    assert!(diff::HalShare::parse("slots=x withheld_untyped=none").is_err());
    assert_eq!(
        diff::HalShare::parse("slots=3..9 withheld_untyped=none").unwrap(),
        diff::HalShare { slots: SlotRegion { start: Slot::new(3), end: Slot::new(9) }, withheld_untyped: vec![] }
    );
}

#[test]
fn the_trace_depends_only_on_the_seed_and_the_platform() {
    let config = Config { ops: 300, ..Config::SELFTEST };
    let (a, fa) = run_on_model(Model::qemu_arm_virt(), &config, false);
    // Probing the free slots or not gives the same trace.
    let (b, fb) = run_on_model(Model::qemu_arm_virt(), &Config { probe_slots: false, ..config }, false);
    assert_eq!((fa, fb), (0, 0));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    assert_eq!(compare(&a, &b, 3).disagreements, 0);
    let other = Config { seed: 7, probe_slots: false, ..config };
    let (c, _) = run_on_model(Model::qemu_arm_virt(), &other, false);
    let c: Vec<&str> = c.iter().map(String::as_str).collect();
    assert!(compare(&a, &c, 3).disagreements > 0, "another seed, another sequence");
}

#[test]
fn the_comparison_finds_a_platform_that_differs_by_one_untyped() {
    // The recorded platform with the 4 MiB untyped at 0x6040_0000 cut into two of 2 MiB (the
    // second appended to the list): the same memory, other slots and other costs.
    let m = Model::qemu_arm_virt();
    let bi = m.bootinfo();
    let n = bi.untyped_list().len() as u64;
    let (first_ut, empty_end) = (bi.untyped().start.index(), bi.empty().end.index());
    let mut lines = platform_lines(&bi, None, None);
    let i = lines
        .iter()
        .position(|l| l.ends_with("paddr=0x60400000 size_bits=22 device=false"))
        .expect("the 4 MiB untyped");
    lines[i] = lines[i].replace("size_bits=22", "size_bits=21");
    let last_ut = lines.iter().rposition(|l| l.starts_with("UT ")).unwrap();
    lines.insert(last_ut + 1, format!("UT {n} paddr=0x60600000 size_bits=21 device=false"));
    lines[0] = format!("EMPTY {}..{empty_end}", first_ut + n + 1);
    lines[1] = format!("UNTYPED_SLOTS {first_ut}..{}", first_ut + n + 1);
    let changed = Model::from_platform(&lines.join("\n")).expect("changed platform parses");
    let config = Config { ops: 200, probe_slots: false, ..Config::SELFTEST };
    let (a, _) = run_on_model(Model::qemu_arm_virt(), &config, false);
    let (b, _) = run_on_model(changed, &config, false);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let c = compare(&a, &b, 2);
    assert!(c.disagreements > 0);
    assert!(c.first[0].1.is_some() && c.first[0].2.is_some(), "{c:?}");
}

#[test]
fn compare_counts_changed_and_missing_lines() {
    let a = ["1 x", "2 y", "3 z"];
    assert_eq!(compare(&a, &a, 5).disagreements, 0);
    let b = ["1 x", "2 Y", "3 z", "4 w"];
    let c = compare(&a, &b, 5);
    assert_eq!((c.lines, c.disagreements), (4, 2));
    assert_eq!(c.first[0], (1, Some("2 y".into()), Some("2 Y".into())));
    assert_eq!(c.first[1], (3, None, Some("4 w".into())));
    let console = ["HALTRACE 0 a", "other", "HALTRACE 1 b\r", "HALPLAT EMPTY 1..2"];
    assert_eq!(diff::extract(console, diff::TRACE_PREFIX), ["0 a", "1 b"]);
    assert_eq!(diff::extract(console, diff::PLATFORM_PREFIX), ["EMPTY 1..2"]);
}

#[test]
fn platform_lines_boot_the_same_model() {
    let m = Model::qemu_arm_virt();
    let p = m.platform().clone();
    let lines = platform_lines(&m.bootinfo(), Some(p.image_paddr), None);
    let again = Model::from_platform(&lines.join("\n")).expect("printed platform parses");
    let q = again.platform();
    assert_eq!((q.empty, q.untyped_slots, &q.untyped), (p.empty, p.untyped_slots, &p.untyped));
    // The model's bootinfo leaves extraBIPages empty (`BootInfoWriter` has no field for it),
    // so the printed line says 0..0 here; on the real kernel it names the DTB's frames.
    assert_eq!((q.user_image_paging, q.user_image_frames), (p.user_image_paging, p.user_image_frames));
    assert!(lines.iter().any(|l| l.starts_with("EXTRA_BI_PAGES ")));
    assert_eq!((q.image_paddr, q.image_vaddr), (p.image_paddr, p.image_vaddr));
}

#[test]
fn rootserver_line_matches_the_recorded_derivation() {
    // The recorded platform's ROOTSERVER line was derived from the one RAM gap of the seL4
    // boot; the root task derives it from its IPC buffer. Both must say the same.
    let p = Model::qemu_arm_virt().platform().clone();
    let r = p.rootserver;
    let line = diff::rootserver_line(r.ipc_buffer, p.user_image_paging.len(), p.extra_bi_pages.len()).unwrap();
    let recorded = include_str!("../../platforms/qemu-arm-virt/bootinfo.txt")
        .lines()
        .find(|l| l.starts_with("ROOTSERVER "))
        .unwrap();
    assert_eq!(line, recorded);
    assert_eq!(diff::rootserver_line(sel4::PhysAddr(0x1000), 3, 2), None, "below address 0");
}

/// Reports every frame one page higher than it is.
struct Lying<K>(K);

macro_rules! pass {
    ($($name:ident ( $($a:ident : $t:ty),* ) -> $r:ty;)*) => {
        $(fn $name(&mut self, $($a: $t),*) -> $r { self.0.$name($($a),*) })*
    };
}

impl<K: Kernel> Kernel for Lying<K> {
    fn page_get_address(&mut self, frame: Cap<ct::Frame>) -> sel4::Result<PhysAddr> {
        self.0.page_get_address(frame).map(|p| PhysAddr(p.get() + 4096))
    }
    pass! {
        untyped_retype(u: Cap<ct::Untyped>, b: sel4::ObjectBlueprint, dest: Slot, count: u64) -> sel4::Result<()>;
        cnode_copy(dest: sel4::CNodeSlot, src: Slot, rights: sel4::CapRights) -> sel4::Result<()>;
        cnode_mint(dest: sel4::CNodeSlot, src: Slot, rights: sel4::CapRights, badge: u64) -> sel4::Result<()>;
        cnode_move(dest: sel4::CNodeSlot, src: Slot) -> sel4::Result<()>;
        cnode_delete(slot: sel4::CNodeSlot) -> sel4::Result<()>;
        cnode_revoke(slot: sel4::CNodeSlot) -> sel4::Result<()>;
        page_map(f: Cap<ct::Frame>, vs: Cap<ct::VSpace>, va: sel4::VirtAddr, r: sel4::CapRights, a: sel4::VmAttributes) -> sel4::Result<()>;
        page_unmap(f: Cap<ct::Frame>) -> sel4::Result<()>;
        page_flush(f: Cap<ct::Frame>, o: sel4::CacheOp, s: u64, e: u64) -> sel4::Result<()>;
        page_table_map(t: Cap<ct::PageTable>, vs: Cap<ct::VSpace>, va: sel4::VirtAddr, a: sel4::VmAttributes) -> sel4::Result<()>;
        page_table_unmap(t: Cap<ct::PageTable>) -> sel4::Result<()>;
        asid_control_make_pool(c: Cap<ct::AsidControl>, u: Cap<ct::Untyped>, d: sel4::CNodeSlot) -> sel4::Result<()>;
        asid_pool_assign(p: Cap<ct::AsidPool>, vs: Cap<ct::VSpace>) -> sel4::Result<()>;
        tcb_configure(t: Cap<ct::Tcb>, f: sel4::CPtr, c: Cap<ct::CNode>, d: u64, vs: Cap<ct::VSpace>, a: sel4::VirtAddr, b: Cap<ct::Granule>) -> sel4::Result<()>;
        tcb_set_priority(t: Cap<ct::Tcb>, a: Cap<ct::Tcb>, p: u64) -> sel4::Result<()>;
        tcb_set_affinity(t: Cap<ct::Tcb>, c: u64) -> sel4::Result<()>;
        tcb_write_registers(t: Cap<ct::Tcb>, r: bool, c: &sel4::UserContext) -> sel4::Result<()>;
        tcb_write_registers_prefix(t: Cap<ct::Tcb>, r: bool, c: &sel4::UserContext, n: usize) -> sel4::Result<()>;
        tcb_read_registers(t: Cap<ct::Tcb>, s: bool) -> sel4::Result<sel4::UserContext>;
        tcb_resume(t: Cap<ct::Tcb>) -> sel4::Result<()>;
        tcb_suspend(t: Cap<ct::Tcb>) -> sel4::Result<()>;
        tcb_bind_notification(t: Cap<ct::Tcb>, n: Cap<ct::Notification>) -> sel4::Result<()>;
        vcpu_set_tcb(v: Cap<ct::VCpu>, t: Cap<ct::Tcb>) -> sel4::Result<()>;
        vcpu_inject_irq(v: Cap<ct::VCpu>, i: u16, p: u8, g: u8, x: u8) -> sel4::Result<()>;
        vcpu_read_reg(v: Cap<ct::VCpu>, r: sel4::VCpuReg) -> sel4::Result<u64>;
        vcpu_write_reg(v: Cap<ct::VCpu>, r: sel4::VCpuReg, x: u64) -> sel4::Result<()>;
        vcpu_ack_vppi(v: Cap<ct::VCpu>, i: u64) -> sel4::Result<()>;
        irq_control_get(c: Cap<ct::IrqControl>, i: u64, e: bool, d: sel4::CNodeSlot) -> sel4::Result<()>;
        irq_handler_ack(h: Cap<ct::IrqHandler>) -> sel4::Result<()>;
        irq_handler_set_notification(h: Cap<ct::IrqHandler>, n: Cap<ct::Notification>) -> sel4::Result<()>;
        call(ep: Cap<ct::Endpoint>, m: &sel4::Message) -> sel4::Message;
        send(ep: Cap<ct::Endpoint>, m: &sel4::Message) -> ();
        recv(ep: Cap<ct::Endpoint>) -> sel4::Received;
        reply(m: &sel4::Message) -> ();
        reply_recv(ep: Cap<ct::Endpoint>, m: &sel4::Message) -> sel4::Received;
        signal(n: Cap<ct::Notification>) -> ();
        wait(n: Cap<ct::Notification>) -> u64;
        poll(n: Cap<ct::Notification>) -> u64;
        yield_now() -> ();
    }
}

#[test]
fn a_kernel_that_misreports_frame_addresses_fails_the_scenarios() {
    let m = Model::qemu_arm_virt();
    let bytes = m.bootinfo_bytes().to_vec();
    let bi = BootInfo::from_bytes(&bytes).unwrap();
    let region = bi.empty();
    let hal = Sel4Hal::from_bootinfo(counting(Lying(m)), &bi, HalConfig::new(region)).unwrap();
    let mut sink = |_: &str| {};
    let mut d = Driver::new(hal, region, &mut sink);
    let layout = Layout::of(d.hal());
    let r = hal_check::scenarios::virt_to_phys_matches_page_get_address(&mut d, &layout);
    let f = r.expect_err("a lying Page_GetAddress must fail the translation scenario");
    assert!(f.what.contains("Page_GetAddress") || f.what.contains("HAL against the kernel"), "{f}");
}

#[test]
fn bench_on_the_model_meets_the_lower_bound_for_every_case() {
    let m = Model::qemu_arm_virt();
    let bytes = m.bootinfo_bytes().to_vec();
    let bi = BootInfo::from_bytes(&bytes).unwrap();
    let descs: Vec<_> = bi.untyped_list().collect();
    let r = bench::reference_index(&descs).expect("a reference untyped");
    let first = bi.untyped().start.index();
    let untyped =
        descs.iter().enumerate().filter(|(i, _)| *i != r).map(|(i, d)| (Slot::new(first + i as u64).cap(), *d));
    let split = Slot::new(bi.empty().end.index() - 256);
    let region = SlotRegion { start: bi.empty().start, end: split };
    let scratch = SlotRegion { start: split, end: bi.empty().end };
    let mut hal = Sel4Hal::new(counting(m), untyped, HalConfig::new(region)).unwrap();
    let mut t = 0u64;
    let mut clock = move || {
        t += 1000;
        t
    };
    let reference = Some((Slot::new(first + r as u64).cap(), descs[r]));
    let report = bench::run(&mut hal, reference, scratch, &mut clock, 1_000_000).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    for c in bench::CASES {
        let row = report.rows.iter().find(|x| x.name == format!("alloc_{}.invocations", c.name)).unwrap();
        assert_eq!(row.ratio(), Some(1.0), "{row}");
        let again = report.rows.iter().find(|x| x.name == format!("alloc_{}.invocations_again", c.name)).unwrap();
        assert!(again.value <= again.reference.unwrap(), "{again}");
    }
    assert_eq!(report.rows.len(), 4 + 6 * bench::CASES.len());
    let zeroed = report.rows.iter().find(|x| x.name == "alloc_4k.zeroed").unwrap();
    assert_eq!(
        (zeroed.value, zeroed.reference),
        (128.0, Some(4.0 / 1024.0)),
        "the 4 KiB case zeroes its 128 MiB untyped"
    );
    assert!(
        report.rows[0].to_string().starts_with("name=reference.cold_zero_time_per_mib_128m value="),
        "{}",
        report.rows[0]
    );
    // The reference untyped is back to no children (nothing of it is left in the model).
    assert_eq!(hal.kernel().kernel.descendants(Slot::new(first + r as u64)), 0);
    assert_eq!(hal.table().len(), 0);
    hal.check_against_kernel().unwrap();
}

#[test]
fn bench_skips_cases_a_platform_does_not_back() {
    // Only the 4 KiB case's untyped and one other.
    let text = "EMPTY 20..65536\nUNTYPED_SLOTS 16..20\n\
                UT 0 paddr=0x68000000 size_bits=27 device=false\n\
                UT 1 paddr=0x6040_0000 size_bits=22 device=false\n\
                UT 2 paddr=0x6400_0000 size_bits=25 device=false\n\
                UT 3 paddr=0x1_0000_0000 size_bits=28 device=false\n";
    let m = Model::from_platform(text).unwrap();
    let ut: Vec<_> = m.untyped_slots();
    let reference = ut.iter().position(|(_, d)| d.paddr.get() == 0x1_0000_0000).unwrap();
    let untyped = ut.iter().enumerate().filter(|(i, _)| *i != reference).map(|(_, (s, d))| (s.cap(), *d));
    let region = SlotRegion { start: Slot::new(20), end: Slot::new(65280) };
    let scratch = SlotRegion { start: Slot::new(65280), end: Slot::new(65536) };
    let mut hal = Sel4Hal::new(counting(m), untyped, HalConfig::new(region)).unwrap();
    let mut t = 0;
    let mut clock = move || {
        t += 1;
        t
    };
    let report = bench::run(&mut hal, Some((ut[reference].0.cap(), ut[reference].1)), scratch, &mut clock, 1).unwrap();
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.0).collect();
    assert_eq!(skipped, ["64m", "1g"]);
    assert!(report.rows.iter().any(|r| r.name == "alloc_2m.invocations"));
}
