//! Entry and the loader's steps, in order: console, exception level, payload, device tree,
//! page tables, MMU, copies (each checked where its bytes are), the other cores, jump.

use core::arch::global_asm;
use core::panic::PanicInfo;

use boot_image::fdt::{self, Fdt};
use boot_image::pagetable::{self, Builder, RangeSet, Table};
use boot_image::payload::{self, Header, Payload, Source};

use crate::console;
use crate::cpu;
use crate::log;
use crate::smp;

// The first instruction of the image. Interrupts masked, the firmware's x0 kept (x19) and
// where the image was loaded (x20, for the first log line), the image
// moved to its link address if it was loaded elsewhere, FP/SIMD made usable, the stack set
// up in .bss (after zeroing it), then Rust.
//
// The move: the Raspberry Pi firmware (and QEMU's raspi4b with a raw -kernel) loads the
// flat binary at 0x80000, where the seL4 kernel of that board must go (its memory starts at
// 0x1000), so the loader, linked at LOADER_BASE, first copies itself and its payload there.
// Only position-independent instructions run before the branch to the link address; the
// length is the loader's own (up to __payload_start) plus the payload's total (header word
// 3) when the CAPVBOOT magic is there (without it, Rust reports the missing payload). The
// copy runs backwards when the destination is above the source, so an overlap is safe.
// The MMU is off, so the stores reach memory; the instruction cache is invalidated before
// the branch.
//
// The target has NEON, so the compiler moves structures through q registers anywhere,
// also before the loader has checked its exception level: their use must not trap.
// At EL2 CPTR_EL2.TFP is cleared (seL4 sets CPTR_EL2 its own way later); at EL1, where the
// loader only prints that it needs EL2, CPACR_EL1.FPEN is set.
global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    msr daifset, #0xf
    mov x19, x0
    adr x20, _start
    mov x1, x20
    ldr x2, =__loader_start
    cmp x1, x2
    b.eq 6f
    ldr x3, =__payload_start
    sub x3, x3, x2
    add x4, x1, x3
    ldr x5, [x4]
    ldr x6, ={magic}
    cmp x5, x6
    b.ne 7f
    ldr x5, [x4, #24]
    add x3, x3, x5
7:  cmp x2, x1
    b.hi 9f
    mov x4, #0
8:  cmp x4, x3
    b.hs 10f
    ldr x5, [x1, x4]
    str x5, [x2, x4]
    add x4, x4, #8
    b 8b
9:  mov x4, x3
11: cbz x4, 10f
    sub x4, x4, #8
    ldr x5, [x1, x4]
    str x5, [x2, x4]
    b 11b
10: dsb sy
    ic iallu
    dsb sy
    isb
    ldr x1, =6f
    br x1
6:
    mrs x1, CurrentEL
    cmp x1, #(2 << 2)
    b.ne 4f
    mrs x1, cptr_el2
    bic x1, x1, #(1 << 10)
    msr cptr_el2, x1
    b 5f
4:  mov x1, #(3 << 20)
    msr cpacr_el1, x1
5:  isb
    ldr x1, =__bss_start
    ldr x2, =__bss_end
1:  cmp x1, x2
    b.hs 2f
    str xzr, [x1], #8
    b 1b
2:  ldr x1, =__stack_top
    mov sp, x1
    mov x0, x19
    mov x1, x20
    bl loader_main
3:  wfe
    b 3b
"#,
    magic = const payload::MAGIC,
);

unsafe extern "C" {
    static __loader_start: u8;
    static __payload_start: u8;
}

/// Page-table arena: room for the identity map (root, one level-1 table, a few level-2/3
/// tables at the edges of RAM, loader and UART) and the kernel window.
const TABLES: usize = 24;

#[repr(C, align(4096))]
struct Arena([Table; TABLES]);

/// Zeroed by `_start`; used once, by `loader_main`, before the jump.
static mut ARENA: Arena = Arena([Table::EMPTY; TABLES]);

fn fail(what: &dyn core::fmt::Display) -> ! {
    log!("{what}");
    log!("halted");
    cpu::halt()
}

fn page_up(x: u64) -> u64 {
    (x + pagetable::PAGE_BYTES - 1) & !(pagetable::PAGE_BYTES - 1)
}

/// Reads a device tree header at `addr` and returns the blob if it is one.
///
/// # Safety
/// `addr..addr + fdt::HEADER_BYTES` must be readable memory.
unsafe fn fdt_at(addr: u64) -> Option<&'static [u8]> {
    if addr == 0 || !addr.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the caller guarantees the header bytes are readable.
    let header = unsafe { core::slice::from_raw_parts(addr as *const u8, fdt::HEADER_BYTES) };
    let total = fdt::total_size(header).ok()?;
    // SAFETY: the header claims `total` bytes at `addr`; firmware placed them in RAM.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, total) })
}

#[unsafe(no_mangle)]
extern "C" fn loader_main(x0: u64, loaded_at: u64) -> ! {
    let payload_start = &raw const __payload_start as u64;
    let loader_start = &raw const __loader_start as u64;
    // SAFETY: a packed image has its header after `__payload_start`; an unpacked loader
    // ends there, and the bytes after it are RAM (the loader's link address is in RAM) that
    // Header::parse only compares against the magic and the header checksum.
    let header = unsafe { core::slice::from_raw_parts(payload_start as *const u8, payload::HEADER_BYTES) };
    let header = Header::parse(header);
    // The console the tool chose, before anything is printed; a header that fails its
    // checksum names none, and its error goes to the default console.
    if let Ok(h) = &header
        && h.info.uart != 0
    {
        console::set_base(h.info.uart);
    }
    // The console's first line also says where help is (capvisor's keys work once VMs run).
    if loaded_at != loader_start {
        log!("loaded at {loaded_at:#x}: moved to the link address {loader_start:#x}");
    }
    log!("started at {loader_start:#x}, EL{}, x0={x0:#x} (console keys: Ctrl-A ?)", cpu::current_el());
    let el = cpu::current_el();
    if el != 2 {
        fail(&format_args!(
            "entered at EL{el}: seL4 with hypervisor support must be started at EL2 (QEMU: -machine virt,virtualization=on)"
        ));
    }
    // Only now: VBAR_EL2 does not exist below EL2.
    cpu::install_vectors();
    let total = match header {
        Ok(h) => h.total,
        Err(e) => fail(&e),
    };
    // SAFETY: the checked header says the payload is `total` bytes long, loaded with the
    // loader; Payload::parse checks the copy table and DTB checksums and every offset, and
    // each copy's bytes are checked below before they are used.
    let bytes = unsafe { core::slice::from_raw_parts(payload_start as *const u8, total as usize) };
    let p = match Payload::parse(bytes) {
        Ok(p) => p,
        Err(e) => fail(&e),
    };
    let info = p.info;
    let loader_end = payload_start + total;

    // Device tree: packed, then x0, then where QEMU leaves it for ELF images.
    // SAFETY: x0 is only dereferenced when non-zero and 8-byte aligned; firmware that
    // sets it passes the DTB's address in RAM.
    let from_x0 = || unsafe { fdt_at(x0) };
    // SAFETY: the probe address is the base of RAM of the platform the tool packed for
    // (QEMU leaves its DTB there); 0 means none and is not dereferenced.
    let from_probe = || unsafe { fdt_at(info.dtb_probe) };
    let (dtb, source) = if let Some(d) = p.embedded_dtb() {
        (d, "packed in the image")
    } else if let Some(d) = from_x0() {
        (d, "from x0")
    } else if let Some(d) = from_probe() {
        (d, "at the base of RAM")
    } else {
        fail(&format_args!(
            "no device tree: x0={x0:#x} holds none, none at {:#x}, none packed (capvisor image --dtb FILE)",
            info.dtb_probe
        ))
    };
    let fdt = match Fdt::from_bytes(dtb) {
        Ok(f) => f,
        Err(e) => fail(&e),
    };
    // QEMU's blob reports its whole 1 MiB buffer; the kernel needs only the used part.
    let used = match fdt.used_size() {
        Ok(n) => n,
        Err(e) => fail(&e),
    };
    let dtb = &dtb[..used];
    let dtb_size = used as u64;
    let slot = info.dtb_slot_end - info.dtb_slot_start;
    if page_up(dtb_size) > slot {
        fail(&format_args!(
            "device tree ({source}) is {dtb_size} bytes, the DTB slot holds {slot} (capvisor image --dtb-max)"
        ));
    }
    if let Ok(Some(uart)) = fdt.compatible_reg("arm,pl011") {
        console::set_base(uart.base);
    }
    let dtb_paddr = info.dtb_slot_end - page_up(dtb_size);
    log!(
        "device tree {source} at {:#x}, {dtb_size} of {} bytes used -> {dtb_paddr:#x}",
        dtb.as_ptr() as u64,
        fdt.as_bytes().len()
    );
    // SAFETY: the slot lies in RAM and is disjoint from the loader and every segment (the
    // tool checked); `copy` allows the firmware's blob to overlap it. The MMU is off, so
    // writes go to memory.
    unsafe { core::ptr::copy(dtb.as_ptr(), dtb_paddr as *mut u8, dtb.len()) };
    // SAFETY: the header was just copied to `dtb_paddr`, RAM the loader owns until the jump.
    fdt::set_total_size(
        unsafe { core::slice::from_raw_parts_mut(dtb_paddr as *mut u8, fdt::HEADER_BYTES) },
        used as u32,
    );

    // Page tables: identity for RAM and the loader (normal), everything else device; the
    // kernel window for RAM.
    let mut normal = RangeSet::<8>::new();
    let mut window = RangeSet::<8>::new();
    for &(s, e) in p.ram() {
        if normal.insert(s, e).and_then(|_| window.insert(s, e)).is_err() {
            fail(&"too many RAM ranges for the page-table builder");
        }
    }
    if let Err(e) = normal.insert(loader_start, loader_end) {
        fail(&e);
    }
    // SAFETY: ARENA is used only here, once; nothing else holds a reference to it.
    let arena = unsafe { core::slice::from_raw_parts_mut((&raw mut ARENA).cast::<Table>(), TABLES) };
    let arena_pa = arena.as_ptr() as u64;
    let mut b = Builder::new(arena, arena_pa);
    if let Err(e) = pagetable::build_boot_map(&mut b, &normal, info.kernel_offset, &window) {
        fail(&e);
    }
    let root = b.root_pa();
    let used = b.tables_used();
    cpu::dcache_invalidate_range(arena_pa, arena_pa + (TABLES as u64) * pagetable::PAGE_BYTES);
    cpu::dcache_invalidate_range(dtb_paddr, dtb_paddr + dtb_size);
    // SAFETY: the map identity-maps the loader image, its stack and tables (in .bss, part
    // of [loader_start, loader_end)) as normal memory and the console as device memory.
    unsafe { cpu::enable_mmu(pagetable::MAIR_EL2, info.tcr_el2, root) };
    log!("MMU on: {used} page tables at {arena_pa:#x}, TCR_EL2={:#x}", info.tcr_el2);

    // The copies' bytes are checked only now, with the MMU and caches on: they are not
    // needed before, and on hardware the reads before this point are uncached.
    for c in p.copies() {
        let (data, how) = match p.source_bytes(&c) {
            Some(data) => (data, "copied"),
            // SAFETY: the tool placed [dest, dest + memsz) in RAM, disjoint from the loader,
            // the payload, the DTB slot and every other copy (Plan::new), and wrote the
            // bytes as a PT_LOAD at `dest` for the firmware to load; RAM is identity mapped.
            None => (unsafe { core::slice::from_raw_parts(c.dest as *const u8, c.filesz as usize) }, "in place"),
        };
        if let Err(e) = c.verify(data) {
            fail(&e);
        }
        // Only what the loader writes needs cleaning for instruction fetches: the firmware
        // left the bytes of a copy in place in memory before the loader started (the boot
        // protocol), and reading them only makes clean cache lines. Skipping them saves a
        // pass over tens of megabytes; the instruction cache is invalidated either way.
        let written_from = match c.source {
            Source::InPlace => c.dest + c.filesz,
            Source::Payload { .. } => c.dest,
        };
        // SAFETY: as above, the destination is RAM the loader owns until the jump and
        // overlaps nothing else; a copy in place has its bytes there already.
        unsafe {
            if c.source != Source::InPlace {
                core::ptr::copy_nonoverlapping(data.as_ptr(), c.dest as *mut u8, data.len());
            }
            core::ptr::write_bytes((c.dest + c.filesz) as *mut u8, 0, (c.memsz - c.filesz) as usize);
        }
        cpu::dcache_clean_range(written_from, c.dest + c.memsz);
        log!("checked {:#x} bytes ({how}) at [{:#x}..{:#x})", c.filesz, c.dest, c.dest + c.memsz);
    }
    let args = cpu::KernelArgs {
        entry: info.kernel_entry,
        ui_p_start: info.ui_p_start,
        ui_p_end: info.ui_p_end,
        pv_offset: info.pv_offset,
        v_entry: info.v_entry,
        dtb_paddr,
        dtb_size,
    };
    // The other cores, each up to the kernel's entry, where seL4 holds them until this
    // core has initialised the kernel.
    let mmu = smp::Mmu { mair: pagetable::MAIR_EL2, tcr: info.tcr_el2, ttbr0: root };
    match smp::start(&fdt, info.cores, &mmu, &args) {
        Ok(ids) if info.cores > 1 => {
            use core::fmt::Write as _;
            let _ = write!(console::Console, "capvisor loader: {} cores entering the kernel, MPIDR", info.cores);
            for id in &ids[..info.cores as usize] {
                let _ = write!(console::Console, " {id:#x}");
            }
            let _ = writeln!(console::Console, " (core 0 last)");
        }
        Ok(_) => {}
        Err(e) => fail(&e),
    }
    log!(
        "entering kernel at {:#x}: user image [{:#x}..{:#x}) pv_offset={:#x} entry={:#x}, DTB {dtb_paddr:#x}+{dtb_size:#x}",
        info.kernel_entry,
        info.ui_p_start,
        info.ui_p_end,
        info.pv_offset,
        info.v_entry
    );
    // SAFETY: everything is checked and in place, caches are maintained, and the map has the kernel's
    // window; the kernel takes over the machine from here.
    unsafe { cpu::enter_kernel(&args, 0) }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    log!("panic: {info}");
    log!("halted");
    cpu::halt()
}
