//! The kernel numbers the server hard-codes, against their sources: the `VPPIEvent` fault
//! label in the installed libsel4 headers (when `$SEL4_PREFIX` has them; the interface data
//! alone does not), and the virtual timer's IRQ in the recorded platform description.

use timer_server::server::{VPPI_EVENT_LABEL, VTIMER_IRQ};

#[test]
fn vppi_event_label_matches_the_installed_headers() {
    let Some(prefix) = sel4_codegen::prefix::env_path("SEL4_PREFIX") else {
        sel4_codegen::skip::cannot_run("SEL4_PREFIX is not set");
        return;
    };
    let path = std::path::Path::new(&prefix).join("libsel4/include/sel4/sel4_arch/types_gen.h");
    let Ok(text) = std::fs::read_to_string(&path) else {
        sel4_codegen::skip::cannot_run(&format!(
            "{} is absent (an interface-data prefix has no C headers)",
            path.display()
        ));
        return;
    };
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("seL4_Fault_VPPIEvent ="))
        .unwrap_or_else(|| panic!("{} declares no seL4_Fault_VPPIEvent", path.display()));
    let n: u64 = line.split('=').nth(1).and_then(|v| v.trim().trim_end_matches(',').parse().ok()).expect("a number");
    assert_eq!(n, VPPI_EVENT_LABEL, "{line}");
}

#[test]
fn vtimer_irq_matches_the_platform() {
    assert_eq!(sel4_model::Model::qemu_arm_virt().platform().vtimer_irq, VTIMER_IRQ);
}
