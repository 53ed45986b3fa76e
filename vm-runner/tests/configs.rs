//! VMs built from the example configurations in `configs/` behave as those files say: the
//! devices sit where the file puts them, the distributor reports the configured lines and
//! vCPUs, console lines carry the VM's name, and the unhandled-access policy is the file's.

use std::path::Path;

use sel4::fault::label;
use sel4::{Message, Op, UserContext};
use vm_runner::action::{AbortKind, Next, StopReason};
use vm_runner::esr::{Esr, ec};
use vm_runner::{Exit, Platform, VmState};

fn system() -> Vec<VmState> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/two-vms.toml");
    let sys = vm_config::parse_system_file(&path).unwrap_or_else(|e| panic!("{e}"));
    sys.vms.iter().map(|c| VmState::new(c, Platform::QEMU_VIRT).unwrap()).collect()
}

/// A 32-bit access by `x1`.
fn access(addr: u64, write: bool) -> Exit {
    let iss = (1 << 24) | (2 << 22) | (1 << 16) | (u32::from(write) << 6) | 0x07;
    Exit::decode(&Message::new(label::VM_FAULT, &[0x4000_0100, addr, 0, Esr::new(ec::DABT_LOWER, true, iss).0]))
}

fn step(vm: &mut VmState, exit: &Exit, x1: u64) -> (Next, usize) {
    let mut regs = UserContext { pc: 0x4000_0100, ..Default::default() };
    regs.x[1] = x1;
    let fetched = vm.registers_needed(exit);
    let a = vm.handle_exit(0, exit, fetched.then_some(&regs));
    let n = a.ops(fetched).len();
    (a.next, n)
}

#[test]
fn the_test_guests_have_the_devices_and_policies_their_files_give() {
    let mut vms = system();
    assert_eq!(vms.len(), 2);
    for vm in &mut vms {
        // GICD_TYPER at 0x0800_0004: 128 lines (ITLinesNumber 3), the file's vCPU count.
        let (next, n) = step(vm, &access(0x0800_0004, false), 0);
        let cpus = if vm.name() == "test-guest" { 2 } else { 1 };
        assert_eq!(next, Next::SetRegister { reg: 1, value: 3 | ((cpus - 1) << 5), pc: 0x4000_0104 });
        assert_eq!(n, 3);
        // UART0 at 0x0900_0000.
        for b in b"up\n" {
            step(vm, &access(0x0900_0000, true), u64::from(*b));
        }
        assert_eq!(vm.take_console_output(), b"up\n", "the UART hands bytes on as written");
        // The writable CFI flash bank at 0x0400_0000 answers a CFI query with 'Q' per chip.
        step(vm, &access(0x0400_0154, true), 0x0098_0098);
        let (next, _) = step(vm, &access(0x0400_0040, false), 0);
        assert_eq!(next, Next::SetRegister { reg: 1, value: 0x0051_0051, pc: 0x4000_0104 });
    }
    // test-guest injects an abort for an access to nothing; test-guest-b stops.
    let (next, _) = step(&mut vms[0], &access(0x0c00_0000, false), 0);
    assert_eq!(next, Next::InjectAbort(AbortKind { instruction: false, write: false }));
    let (next, n) = step(&mut vms[1], &access(0x0c00_0000, true), 0);
    assert_eq!(
        next,
        Next::Stop(StopReason::Abort { ip: 0x4000_0100, addr: 0x0c00_0000, instruction: false, write: true })
    );
    // TCB_Suspend of its vCPU, then the Recv.
    assert_eq!(n, 2);
    // The other VM is unaffected.
    assert_eq!(vms[0].stopped(), None);
    // One ReplyRecv per exit: the TYPER read, three UART writes, the flash query and read,
    // the injected abort.
    assert_eq!(vms[0].counters().op(Op::ReplyRecv), 7);
}

#[test]
fn test_guest_boots_vcpu_0_at_its_entry_point() {
    let vms = system();
    let b = vms[0].boot();
    assert_eq!((b.vcpu, b.entry, b.context), (0, 0x4000_0000, 0), "no DTB: x0 = 0");
    assert_eq!(b.registers().spsr, 0x3c5);
}

#[test]
fn the_gicv3_test_guest_gets_a_gicv3_and_only_on_a_gicv3_platform() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/test-guest-gicv3.toml");
    let sys = vm_config::parse_system_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let config = &sys.vms[0];
    assert!(VmState::new(config, Platform::QEMU_VIRT).is_err(), "a GICv3 VM on a GICv2 host");
    let mut vm = VmState::new(config, Platform::QEMU_VIRT_GICV3).unwrap();
    // GICD_PIDR2: architecture revision 3, what the guest probes.
    let (next, _) = step(&mut vm, &access(0x0800_ffe8, false), 0);
    assert!(matches!(next, Next::SetRegister { reg: 1, value: 0x3b, .. }), "{next:?}");
    // vCPU 1's GICR_TYPER, upper half: affinity 1; lower half: processor 1 and Last.
    let (next, _) = step(&mut vm, &access(0x080a_0000 + 0x2_000c, false), 0);
    assert!(matches!(next, Next::SetRegister { reg: 1, value: 1, .. }), "{next:?}");
    let (next, _) = step(&mut vm, &access(0x080a_0000 + 0x2_0008, false), 0);
    assert!(matches!(next, Next::SetRegister { reg: 1, value: 0x110, .. }), "{next:?}");
    // Past the two redistributors: no device there.
    let (next, _) = step(&mut vm, &access(0x080e_0000, false), 0);
    assert!(matches!(next, Next::InjectAbort(AbortKind { instruction: false, write: false })), "{next:?}");
}
