//! Platform descriptions: parsing, errors naming file and line, and the state the model boots
//! into (the facts of a real seL4 16.0.0 boot on QEMU virt).

mod common;

use common::*;
use sel4::bootinfo::BootInfo;
use sel4::{Kernel, ObjectBlueprint, PhysAddr, Slot, init_cap};
use sel4_model::{Model, ModelCap, QEMU_ARM_VIRT};

const SMALL: &str = "\
EMPTY 20..65536
UNTYPED_SLOTS 16..20
UT 0 paddr=0x0 size_bits=27 device=true
UT 1 paddr=0x40000000 size_bits=20 device=false
UT 2 paddr=0x40100000 size_bits=12 device=false
UT 3 paddr=0x40200000 size_bits=21 device=false
";

fn parse_err(text: &str) -> String {
    Model::from_platform_named("test.txt", text).unwrap_err().to_string()
}

#[test]
fn the_recorded_qemu_boot_is_what_the_model_hands_over() {
    let m = boot();
    let bi = m.bootinfo();
    assert_eq!((bi.empty().start.index(), bi.empty().end.index()), (150, 65536));
    assert_eq!((bi.untyped().start.index(), bi.untyped().end.index()), (76, 150));
    assert_eq!(bi.cnode_size_bits(), 16);
    let ut = m.untyped_slots();
    assert_eq!(ut.len(), 74);
    // Spot checks against the interface data's boot/qemu-arm-virt-bootinfo.txt.
    assert_eq!(ut[0].0, Slot::new(76));
    assert_eq!((ut[0].1.paddr, ut[0].1.size_bits, ut[0].1.is_device), (PhysAddr(0), 27, true));
    assert_eq!((ut[39].1.paddr, ut[39].1.size_bits, ut[39].1.is_device), (PhysAddr(0x6000_0000), 16, false));
    assert_eq!((ut[73].1.paddr, ut[73].1.size_bits), (PhysAddr(0xbffc_8f00), 8));
    // RAM is 0x60000000..0xc0000000; untyped cover all of it but the kernel image, the root
    // server objects, the DTB and the root task's image.
    let ram: u64 = ut.iter().filter(|(_, d)| !d.is_device).map(|(_, d)| d.size_bytes()).sum();
    let gaps = (0x6023_f000 - 0x6001_0000)
        + (0xbfe0_9800 - 0xbfc0_0000)
        + (0xbffc_8ea0 - 0xbffc_7000)
        + (0xc000_0000 - 0xbffc_9000);
    assert_eq!(ram, 0x6000_0000 - gaps);
    // The bootinfo bytes parse to the same list (the runtime's path).
    let parsed = BootInfo::from_bytes(m.bootinfo_bytes()).unwrap();
    assert!(parsed.untyped_list().zip(&ut).all(|(a, (_, b))| a == *b));
}

#[test]
fn initial_caps_sit_where_the_kernel_puts_them() {
    let m = boot();
    assert!(matches!(m.cap(init_cap::TCB), ModelCap::Tcb { .. }));
    assert!(matches!(m.cap(init_cap::CNODE), ModelCap::CNode { radix: 16, guard_size: 48, guard: 0, .. }));
    assert!(matches!(m.cap(init_cap::VSPACE), ModelCap::VSpace { asid: Some(1), .. }));
    assert!(matches!(m.cap(init_cap::IRQ_CONTROL), ModelCap::IrqControl));
    assert!(matches!(m.cap(init_cap::ASID_CONTROL), ModelCap::AsidControl));
    assert!(matches!(m.cap(init_cap::ASID_POOL), ModelCap::AsidPool { asid_base: 0, .. }));
    assert!(matches!(m.cap(init_cap::BOOTINFO_FRAME), ModelCap::Frame { mapped: Some(_), .. }));
    assert!(matches!(m.cap(init_cap::IPC_BUFFER), ModelCap::Frame { mapped: Some(_), .. }));
    assert!(matches!(m.cap(init_cap::DOMAIN), ModelCap::Domain));
    for empty in [0, 7, 8, 12, 13, 14, 15] {
        assert!(m.cap(Slot::new(empty)).is_null(), "slot {empty}");
    }
    for paging in 16..19 {
        assert!(matches!(m.cap(Slot::new(paging)), ModelCap::PageTable { mapped: Some(_), .. }));
    }
    for frame in 19..76 {
        assert!(matches!(m.cap(Slot::new(frame)), ModelCap::Frame { mapped: Some(_), .. }), "slot {frame}");
    }
    for ut in 76..150 {
        assert!(matches!(m.cap(Slot::new(ut)), ModelCap::Untyped { .. }));
    }
    // 9 initial caps, 60 image/paging caps, 74 untyped.
    assert_eq!(m.free_slots(), 65536 - 9 - 60 - 74);
    assert!(m.cap(Slot::new(150)).is_null());
}

#[test]
fn a_small_platform_boots_with_defaults() {
    let mut m = Model::from_platform(SMALL).unwrap();
    check(&m);
    assert_eq!(m.untyped_slots().len(), 4);
    assert_eq!(m.free_slots(), 65536 - 9 - 4);
    // No paging caps: the IPC buffer and bootinfo frames are not mapped.
    assert!(matches!(m.cap(init_cap::IPC_BUFFER), ModelCap::Frame { mapped: None, .. }));
    // The root server objects went to the lowest free gap: they overlap no untyped.
    let rs = m.platform().rootserver;
    assert!(rs.cnode.0 >= 0x4040_0000 || rs.cnode.0 + (1 << 21) <= 0x4000_0000);
    make(&mut m, Slot::new(17), ObjectBlueprint::SmallPage, Slot::new(20));
    assert_eq!(m.page_get_address(Slot::new(20).cap()), Ok(PhysAddr(0x4000_0000)));
    check(&m);
}

#[test]
fn errors_name_the_file_and_line() {
    assert_eq!(
        parse_err(&SMALL.replace("size_bits=20", "size_bits=2x")),
        "test.txt:4: UT size_bits: `2x` is not a number"
    );
    assert_eq!(
        parse_err(&SMALL.replace("0x40100000 size_bits=12", "0x40080000 size_bits=12")),
        "test.txt:5: untyped at 0x40080000 overlaps the one on line 4"
    );
    assert_eq!(
        parse_err(&SMALL.replace("0x40200000 size_bits=21", "0x40100000 size_bits=21")),
        "test.txt:6: UT 3: paddr 0x40100000 is not aligned to 2^21 in the kernel window"
    );
    assert_eq!(
        parse_err(&SMALL.replace("UT 2 ", "UT 7 ")),
        "test.txt:5: UT index 7: expected 2 (indices count up from 0)"
    );
    assert_eq!(
        parse_err(&SMALL.replace("16..20", "16..21")),
        "test.txt:2: UNTYPED_SLOTS holds 5 slots but there are 4 UT lines"
    );
    assert_eq!(
        parse_err(&SMALL.replace("EMPTY 20..65536", "EMPTY 19..65536")),
        "test.txt:1: EMPTY overlaps UNTYPED_SLOTS"
    );
    assert_eq!(parse_err(&SMALL.replace("EMPTY 20..65536\n", "")), "test.txt: missing EMPTY line");
    assert_eq!(parse_err(&format!("{SMALL}BOGUS 1\n")), "test.txt:7: unknown line kind `BOGUS`");
    assert_eq!(parse_err(&format!("{SMALL}MAX_IRQ 1 2\n")), "test.txt:7: MAX_IRQ: expected one number");
    assert_eq!(
        parse_err(&SMALL.replace("device=true", "device=yes")),
        "test.txt:3: UT device: `yes` is not true or false"
    );
    assert_eq!(parse_err(&SMALL.replace(" device=true", "")), "test.txt:3: UT: missing field `device`");
    assert_eq!(
        parse_err(&SMALL.replace("EMPTY 20..65536", "EMPTY 20..70000")),
        "test.txt:1: EMPTY: range 20..70000 runs past the root CNode (65536 slots)"
    );
    assert_eq!(
        parse_err(&format!(
            "{SMALL}ROOTSERVER cnode=0x40000000 extra_bi=0 vspace=0x1000 asid_pool=0x2000 ipc_buffer=0x3000 bootinfo=0x4000 paging=0x5000 tcb=0x6000\n"
        )),
        "test.txt:7: ROOTSERVER cnode: 0x40000000 overlaps the untyped at 0x40000000"
    );
    let qemu_bad_paging = QEMU_ARM_VIRT.replace("USER_IMAGE_PAGING 16..19", "USER_IMAGE_PAGING 16..18");
    assert!(
        parse_err(&qemu_bad_paging).contains("USER_IMAGE_PAGING holds 2 tables"),
        "{}",
        parse_err(&qemu_bad_paging)
    );
}

#[test]
fn the_checked_in_description_keeps_the_recorded_facts_verbatim() {
    // The recording ships with the interface data (not with an installed kernel prefix).
    let Some(data) = sel4_codegen::prefix::shared_data() else {
        sel4_codegen::skip::cannot_run("no seL4 interface data (set CAPVISOR_SEL4_DATA)");
        return;
    };
    let path = data.join("boot/qemu-arm-virt-bootinfo.txt");
    let Ok(recorded) = std::fs::read_to_string(&path) else {
        sel4_codegen::skip::cannot_run(&format!("no recorded bootinfo at {}", path.display()));
        return;
    };
    for line in recorded.lines().filter(|l| !l.starts_with('#')) {
        assert!(QEMU_ARM_VIRT.lines().any(|l| l == line), "missing recorded line: {line}");
    }
}
