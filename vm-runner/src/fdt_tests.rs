//! Tests of the generated device tree: each one parses the blob back with an independent
//! reader (the `fdt` crate) and checks nodes and properties.

extern crate std;

use alloc::string::String;
use alloc::vec::Vec;
use std::path::Path;

use vm_config::{GuestRange, Image, PassthroughDevice, PassthroughRegion, VmConfig};

use super::*;

fn config(name: &str) -> VmConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(name);
    let sys = vm_config::parse_system_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sys.vms.into_iter().next().unwrap()
}

fn cells_u32(p: &[u8]) -> Vec<u32> {
    p.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn cells_u64(p: &[u8]) -> Vec<u64> {
    p.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect()
}

fn prop<'a>(dt: &'a fdt::Fdt<'a>, node: &str, name: &str) -> &'a [u8] {
    dt.find_node(node)
        .unwrap_or_else(|| panic!("no node {node}"))
        .property(name)
        .unwrap_or_else(|| panic!("no {node}:{name}"))
        .value
}

fn strings(p: &[u8]) -> Vec<&str> {
    p.split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| core::str::from_utf8(s).unwrap()).collect()
}

const INITRD: GuestRange = GuestRange::new(0x4420_0000, 1_537_110);

#[test]
fn linux_toml_gives_memory_cpu_psci_gic_timer_uart_and_chosen() {
    let vm = config("linux.toml");
    assert_eq!(DtbSource::of(&vm), DtbSource::Generate);
    let blob = generate(&vm, Some(INITRD)).unwrap();
    let dt = fdt::Fdt::new(&blob).expect("the blob parses");

    // Memory: the one region.
    let mem: Vec<_> = dt.memory().regions().map(|r| (r.starting_address as u64, r.size.unwrap() as u64)).collect();
    assert_eq!(mem, [(0x4000_0000, 0x1000_0000)]);

    // One CPU, MPIDR 0, PSCI.
    let cpus: Vec<_> = dt.find_node("/cpus").unwrap().children().collect();
    assert_eq!(cpus.len(), 1);
    assert_eq!(cells_u32(prop(&dt, "/cpus/cpu@0", "reg")), [0]);
    assert_eq!(strings(prop(&dt, "/cpus/cpu@0", "enable-method")), ["psci"]);
    assert_eq!(strings(prop(&dt, "/psci", "compatible")), ["arm,psci-1.0", "arm,psci-0.2"]);
    assert_eq!(strings(prop(&dt, "/psci", "method")), ["hvc"]);

    // GICv2: distributor and CPU interface at the guest addresses, 3 interrupt cells, and
    // the root's interrupt-parent points at it.
    let gic = "/interrupt-controller@8000000";
    assert_eq!(strings(prop(&dt, gic, "compatible")), ["arm,cortex-a15-gic"]);
    assert_eq!(cells_u32(prop(&dt, gic, "#interrupt-cells")), [3]);
    assert_eq!(cells_u64(prop(&dt, gic, "reg")), [0x0800_0000, 0x1_0000, 0x0801_0000, 0x2000]);
    assert!(dt.find_node(gic).unwrap().property("interrupt-controller").is_some());
    let phandle = cells_u32(prop(&dt, gic, "phandle"))[0];
    assert_eq!(cells_u32(prop(&dt, "/", "interrupt-parent")), [phandle]);

    // Timer: PPIs 13, 14, 11, 10, level-high, to CPU 0.
    assert_eq!(strings(prop(&dt, "/timer", "compatible")), ["arm,armv8-timer"]);
    assert_eq!(cells_u32(prop(&dt, "/timer", "interrupts")), [1, 13, 0x104, 1, 14, 0x104, 1, 11, 0x104, 1, 10, 0x104]);

    // PL011: registers, SPI 1 (interrupt 33), both clocks from the 24 MHz fixed clock.
    let uart = "/pl011@9000000";
    assert_eq!(strings(prop(&dt, uart, "compatible")), ["arm,pl011", "arm,primecell"]);
    assert_eq!(cells_u64(prop(&dt, uart, "reg")), [0x0900_0000, 0x1000]);
    assert_eq!(cells_u32(prop(&dt, uart, "interrupts")), [0, 1, 4]);
    let clk = cells_u32(prop(&dt, uart, "clocks"));
    assert_eq!(strings(prop(&dt, uart, "clock-names")), ["uartclk", "apb_pclk"]);
    let clock = dt.find_phandle(clk[0]).expect("the clocks phandle resolves");
    assert_eq!(clk, [clk[0], clk[0]]);
    assert_eq!(clock.compatible().unwrap().first(), "fixed-clock");
    assert_eq!(cells_u32(clock.property("clock-frequency").unwrap().value), [24_000_000]);

    // /chosen: command line, console, initrd range (end exclusive).
    let chosen = dt.chosen();
    assert_eq!(chosen.bootargs(), vm.cmdline.as_deref());
    assert_eq!(chosen.stdout().map(|n| n.name), Some("pl011@9000000"));
    assert_eq!(cells_u64(prop(&dt, "/chosen", "linux,initrd-start")), [0x4420_0000]);
    assert_eq!(cells_u64(prop(&dt, "/chosen", "linux,initrd-end")), [0x4420_0000 + 1_537_110]);

    // No passthrough device in this VM.
    assert!(dt.find_compatible(&["virtio,mmio"]).is_none());
}

#[test]
fn smp_gives_each_vcpu_its_mpidr_and_the_timer_both_cpus() {
    let vm = config("linux-smp.toml");
    let blob = generate(&vm, None).unwrap();
    let dt = fdt::Fdt::new(&blob).unwrap();
    let regs: Vec<u32> =
        dt.find_node("/cpus").unwrap().children().map(|c| cells_u32(c.property("reg").unwrap().value)[0]).collect();
    assert_eq!(regs, [0, 1]);
    assert_eq!(cells_u32(prop(&dt, "/timer", "interrupts"))[2], 0x304);
    // Without an initrd, /chosen has no initrd range.
    assert!(dt.find_node("/chosen").unwrap().property("linux,initrd-start").is_none());
}

#[test]
fn mpidrs_above_32_bits_get_two_address_cells() {
    let mut vm = config("linux-smp.toml");
    vm.phys_cpu_ids = alloc::vec![0x1_0000_0000, 0x1_0000_0001];
    let blob = generate(&vm, None).unwrap();
    let dt = fdt::Fdt::new(&blob).unwrap();
    assert_eq!(cells_u32(prop(&dt, "/cpus", "#address-cells")), [2]);
    assert_eq!(cells_u64(prop(&dt, "/cpus/cpu@100000001", "reg")), [0x1_0000_0001]);
}

#[test]
fn the_disk_vm_gets_its_virtio_transport_at_the_unit_address_with_its_spi() {
    let vm = config("linux-disk.toml");
    let blob = generate(&vm, None).unwrap();
    let dt = fdt::Fdt::new(&blob).unwrap();
    let node = dt.find_compatible(&["virtio,mmio"]).expect("a virtio,mmio node");
    assert_eq!(node.name, "virtio_mmio@a003e00");
    assert_eq!(cells_u64(node.property("reg").unwrap().value), [0x0a00_3e00, 0x200]);
    // Interrupt 79 = SPI 47, edge-rising as QEMU describes its transports.
    assert_eq!(cells_u32(node.property("interrupts").unwrap().value), [0, 47, 1]);
    assert!(node.property("dma-coherent").is_some());
    let mem: Vec<_> = dt.memory().regions().map(|r| r.starting_address as u64).collect();
    assert_eq!(mem, [0x7000_0000]);
}

#[test]
fn a_unit_address_outside_the_window_falls_back_to_its_base() {
    let mut vm = config("linux-disk.toml");
    vm.passthrough[0].name = String::from("virtio_mmio@b000000");
    let blob = generate(&vm, None).unwrap();
    let dt = fdt::Fdt::new(&blob).unwrap();
    let node = dt.find_compatible(&["virtio,mmio"]).unwrap();
    assert_eq!(cells_u64(node.property("reg").unwrap().value), [0x0a00_3000, 0x200]);
}

#[test]
fn devices_it_cannot_describe_are_refused_by_name() {
    let mut vm = config("linux-disk.toml");
    vm.passthrough.push(PassthroughDevice {
        name: String::from("ethernet@a000000"),
        region: Some(PassthroughRegion {
            guest: GuestRange::new(0x0b00_0000, 0x1000),
            host: sel4::PhysAddr(0x0b00_0000),
        }),
        irq: 0,
    });
    let e = generate(&vm, None).unwrap_err();
    assert_eq!(e, FdtError::UnknownPassthrough(String::from("ethernet@a000000")));
    assert!(alloc::format!("{e}").contains("dtb_path"));

    vm.passthrough.pop();
    vm.passthrough.push(PassthroughDevice { name: String::from("/virtio_mmio@a000000"), region: None, irq: 0 });
    assert!(matches!(generate(&vm, None), Err(FdtError::PassthroughWithoutRegion(_))));
}

#[test]
fn a_vm_without_a_gic_or_cpu_interface_is_refused() {
    let mut vm = config("linux.toml");
    vm.capvisor.gic_cpu_interface = None;
    assert_eq!(generate(&vm, None), Err(FdtError::NoCpuInterface));
    vm.emulated.retain(|d| d.kind != vm_config::EmulatedKind::InterruptController);
    assert_eq!(generate(&vm, None), Err(FdtError::NoInterruptController));
}

#[test]
fn a_dtb_path_overrides_generation_and_no_dtb_means_none() {
    let mut vm = config("linux.toml");
    vm.dtb = Some(Image { path: String::from("my.dtb"), load_addr: vm_config::GuestPhysAddr(0x4400_0000) });
    assert_eq!(DtbSource::of(&vm), DtbSource::File("my.dtb"));
    vm.dtb = None;
    assert_eq!(DtbSource::of(&vm), DtbSource::None);
}

#[test]
fn a_command_line_with_nul_is_a_writer_error_not_a_panic() {
    let mut vm = config("linux.toml");
    vm.cmdline = Some(String::from("console=ttyAMA0\0oops"));
    assert_eq!(generate(&vm, None), Err(FdtError::Writer(vm_fdt::Error::InvalidString)));
}

#[test]
fn the_generated_tree_fits_the_boot_protocol_limit() {
    let blob = generate(&config("linux-disk.toml"), Some(INITRD)).unwrap();
    assert!((blob.len() as u64) < crate::linux::DTB_MAX_BYTES);
    assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed], "FDT magic");
}

/// `vm` with its GICv2 turned into a GICv3: the distributor becomes one (emu_type 0x21), a
/// redistributor region for its vCPUs at QEMU virt's address joins it, and the GICC goes.
fn gicv3(mut vm: VmConfig) -> VmConfig {
    use vm_config::{EmulatedDevice, EmulatedKind};
    for d in &mut vm.emulated {
        if d.kind == EmulatedKind::InterruptController {
            d.kind = EmulatedKind::GicV3Distributor;
        }
    }
    let size = vm_config::GICR_BYTES_PER_CPU * u64::from(vm.cpu_num);
    vm.emulated.push(EmulatedDevice {
        name: String::from("gicr"),
        range: GuestRange::new(0x080a_0000, size),
        irq: 0,
        kind: EmulatedKind::GicV3Redistributor,
        cfg: Vec::new(),
    });
    vm.capvisor.gic_cpu_interface = None;
    vm
}

#[test]
fn a_gicv3_vm_gets_distributor_redistributors_maintenance_and_maskless_ppis() {
    let vm = gicv3(config("linux-smp.toml"));
    assert!(vm_config::check::check_vm(&vm).is_empty(), "{:?}", vm_config::check::check_vm(&vm));
    let blob = generate(&vm, None).unwrap();
    let dt = fdt::Fdt::new(&blob).unwrap();
    let gic = "/interrupt-controller@8000000";
    assert_eq!(strings(prop(&dt, gic, "compatible")), ["arm,gic-v3"]);
    assert_eq!(cells_u64(prop(&dt, gic, "reg")), [0x0800_0000, 0x1_0000, 0x080a_0000, 0x4_0000]);
    assert_eq!(cells_u32(prop(&dt, gic, "#redistributor-regions")), [1]);
    assert_eq!(cells_u32(prop(&dt, gic, "#interrupt-cells")), [3]);
    assert_eq!(cells_u32(prop(&dt, gic, "interrupts")), [1, 9, 4], "maintenance: PPI 9, level-high");
    assert!(dt.find_node(gic).unwrap().property("interrupt-controller").is_some());
    // GICv3 PPI specifiers have no CPU mask.
    assert_eq!(cells_u32(prop(&dt, "/timer", "interrupts")), [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
    let phandle = cells_u32(prop(&dt, gic, "phandle"))[0];
    assert_eq!(cells_u32(prop(&dt, "/", "interrupt-parent")), [phandle]);
}

#[test]
fn a_gicv3_vm_needs_no_cpu_interface_but_its_redistributors() {
    let mut vm = gicv3(config("linux.toml"));
    assert!(generate(&vm, None).is_ok(), "no gic_cpu_interface needed");
    vm.emulated.retain(|d| d.kind != vm_config::EmulatedKind::GicV3Distributor);
    assert_eq!(generate(&vm, None), Err(FdtError::NoInterruptController));
    let mut vm = gicv3(config("linux.toml"));
    vm.emulated.retain(|d| d.kind != vm_config::EmulatedKind::GicV3Redistributor);
    // The distributor alone still makes a GICv3 VM, with nowhere for its redistributors.
    assert_eq!(generate(&vm, None), Err(FdtError::NoRedistributors));
}
