//! Invocation labels: numbered exactly as the kernel build numbered them, and moving with
//! the configuration.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use sel4_codegen::config::Value;
use sel4_codegen::interface::{INTERFACE_FILES, Interface};
use sel4_codegen::{KernelConfig, Prefix};

fn expected_labels(root: &Path) -> BTreeMap<String, u64> {
    let file = root.join("extra/invocations_all.json");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_else(|| panic!("{k}: {v} is not a number"))))
        .collect()
}

fn ours(prefix: &Prefix, config: &KernelConfig) -> BTreeMap<String, u64> {
    Interface::load(prefix, config).unwrap().labels.into_iter().collect()
}

#[test]
fn every_label_matches_the_kernel_build() {
    let root = common::shared_16();
    let prefix = Prefix::new(&root).unwrap();
    let config = KernelConfig::load(&prefix).unwrap();
    let expected = expected_labels(&root);
    let got = ours(&prefix, &config);
    assert_eq!(got.len(), expected.len(), "label count");
    for (name, n) in &expected {
        assert_eq!(got.get(name), Some(n), "label {name}");
    }
    assert_eq!(got, expected);
}

#[test]
fn the_prefix_in_use_matches_its_own_json_when_it_has_one() {
    let root = common::prefix_root();
    if !root.join("extra/invocations_all.json").is_file() {
        sel4_codegen::skip::cannot_run(&format!(
            "{} has no extra/invocations_all.json (the project's kernel build installs it; a prefix of your own may lack it: its labels are checked against its headers in installed_headers.rs)",
            root.display()
        ));
        return;
    }
    let prefix = Prefix::new(&root).unwrap();
    let config = KernelConfig::load(&prefix).unwrap();
    assert_eq!(ours(&prefix, &config), expected_labels(&root));
}

fn flags(pairs: &[(&str, bool)]) -> KernelConfig {
    KernelConfig::from_values(pairs.iter().map(|(k, v)| (k.to_string(), Value::Bool(*v))))
}

fn parse_shared(config: &KernelConfig) -> Interface {
    let root = common::shared_16();
    let texts: Vec<(std::path::PathBuf, String)> = INTERFACE_FILES
        .iter()
        .map(|f| {
            let p = root.join("libsel4/include").join(f);
            let t = std::fs::read_to_string(&p).unwrap();
            (p, t)
        })
        .collect();
    let refs: Vec<(&Path, &str)> = texts.iter().map(|(p, t)| (p.as_path(), t.as_str())).collect();
    Interface::parse(&refs, config).unwrap()
}

fn assert_dense(i: &Interface) {
    for (k, (_, n)) in i.labels.iter().enumerate() {
        assert_eq!(*n, k as u64 + 1, "labels are numbered 1.. without gaps");
    }
}

#[test]
fn labels_move_with_the_configuration() {
    let base = parse_shared(&flags(&[("ARM_HYPERVISOR_SUPPORT", true), ("KERNEL_MCS", false)]));
    let mcs = parse_shared(&flags(&[("ARM_HYPERVISOR_SUPPORT", true), ("KERNEL_MCS", true)]));
    let no_hyp = parse_shared(&flags(&[("ARM_HYPERVISOR_SUPPORT", false), ("KERNEL_MCS", false)]));
    for i in [&base, &mcs, &no_hyp] {
        assert_dense(i);
    }

    // The in-memory configuration with only these two flags numbers like the real build.
    assert_eq!(base.labels.iter().cloned().collect::<BTreeMap<_, _>>(), expected_labels(&common::shared_16()));

    // MCS: scheduling-context labels appear, SaveCaller (reply caps are objects there) goes,
    // and so every label after the first difference moves.
    assert!(mcs.label("SchedControlConfigureFlags").is_some());
    assert!(mcs.label("TCBSetTimeoutEndpoint").is_some());
    assert_eq!(base.label("SchedControlConfigureFlags"), None);
    assert!(base.label("CNodeSaveCaller").is_some());
    assert_eq!(mcs.label("CNodeSaveCaller"), None);
    assert_eq!(mcs.label("UntypedRetype"), Some(1));
    assert_ne!(mcs.label("ARMVCPUInjectIRQ"), base.label("ARMVCPUInjectIRQ"));
    assert_ne!(mcs.label("ARMPageMap"), base.label("ARMPageMap"));
    // Both variants of TCB_Configure share one id; each configuration numbers exactly one.
    assert_eq!(base.methods.iter().filter(|m| m.label == "TCBConfigure").count(), 1);
    assert_eq!(mcs.methods.iter().filter(|m| m.label == "TCBConfigure").count(), 1);
    let cfg_mcs = mcs.method("TCB_Configure").unwrap();
    assert!(!cfg_mcs.inputs.iter().any(|p| p.name == "fault_ep"), "MCS Configure has no fault_ep");

    // Without hypervisor support the five VCPU labels vanish and the IRQ labels after them
    // move down by five; everything before them stays.
    let vcpu = ["ARMVCPUSetTCB", "ARMVCPUInjectIRQ", "ARMVCPUReadReg", "ARMVCPUWriteReg", "ARMVCPUAckVPPI"];
    for v in vcpu {
        assert_eq!(no_hyp.label(v), None, "{v}");
    }
    assert_eq!(no_hyp.label("ARMASIDPoolAssign"), base.label("ARMASIDPoolAssign"));
    assert_eq!(
        no_hyp.label("ARMIRQIssueIRQHandlerTrigger").unwrap() + 5,
        base.label("ARMIRQIssueIRQHandlerTrigger").unwrap()
    );
}

#[test]
fn smp_adds_set_affinity_and_the_gate_follows() {
    let base = parse_shared(&flags(&[("ARM_HYPERVISOR_SUPPORT", true), ("KERNEL_MCS", false)]));
    let smp =
        parse_shared(&flags(&[("ARM_HYPERVISOR_SUPPORT", true), ("KERNEL_MCS", false), ("ENABLE_SMP_SUPPORT", true)]));
    assert_dense(&smp);
    // As seL4 16.0.0 built with KernelMaxNumNodes 2 numbered them (its invocations_all.json):
    // SetAffinity comes in before SetTLSBase, IssueIRQHandlerTriggerCore replaces SGISignal.
    assert_eq!(smp.label("TCBSetAffinity"), Some(15));
    assert_eq!(smp.label("TCBSetTLSBase"), Some(16));
    assert_eq!(smp.label("ARMIRQIssueIRQHandlerTriggerCore"), Some(56));
    assert_eq!(smp.label("ARMIRQIssueSGISignal"), None);
    assert_eq!(smp.label("ARMVCPUSetTCB"), Some(50));
    assert_eq!(base.label("TCBSetAffinity"), None);
    assert!(base.absent.contains(&"TCBSetAffinity".to_string()));
    assert!(smp.absent.contains(&"ARMIRQIssueSGISignal".to_string()));
    assert!(!smp.absent.contains(&"TCBSetAffinity".to_string()));
    // The gate expands the first items for a label the configuration has, else the second.
    let yes = "(TCBSetAffinity { $($yes:item)* } else { $($no:item)* }) => { $($yes)* };";
    let no = "(TCBSetAffinity { $($yes:item)* } else { $($no:item)* }) => { $($no)* };";
    assert!(smp.method_gate_macro().contains(yes), "{}", smp.method_gate_macro());
    assert!(base.method_gate_macro().contains(no), "{}", base.method_gate_macro());
}

#[test]
fn xml_errors_name_the_file_and_line() {
    let config = flags(&[]);
    let good = "<api><interface name=\"seL4_X\"><method id=\"A\" name=\"A\"/></interface></api>";
    let broken = "<api>\n<interface name=\"seL4_X\">\n<method id=\"B\" name=\"B\">\n</interface></api>";
    let err = Interface::parse(
        &[(Path::new("generic.xml"), good), (Path::new("arch.xml"), broken), (Path::new("c.xml"), good)],
        &config,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("arch.xml: line 4:"), "{err}");

    let bad_type = "<api>\n<interface name=\"seL4_X\">\n<method id=\"B\" name=\"B\">\n<param dir=\"in\" name=\"p\" type=\"seL4_Mystery\"/>\n</method></interface></api>";
    let err = Interface::parse(&[(Path::new("x.xml"), bad_type)], &config).unwrap_err().to_string();
    assert!(err.starts_with("x.xml: line 4:") && err.contains("seL4_Mystery"), "{err}");

    let bad_cond = "<api><interface name=\"seL4_X\">\n<method id=\"B\" name=\"B\"><condition><xor/></condition></method></interface></api>";
    let err = Interface::parse(&[(Path::new("y.xml"), bad_cond)], &config).unwrap_err().to_string();
    assert!(err.starts_with("y.xml: line 2:") && err.contains("xor"), "{err}");
}

#[test]
fn generic_then_sel4_arch_then_arch() {
    let config = flags(&[]);
    let f = |ids: &[&str]| {
        let methods: String = ids.iter().map(|i| format!("<method id=\"{i}\" name=\"{i}\"/>")).collect();
        format!("<api><interface name=\"seL4_{}\">{methods}</interface></api>", ids[0])
    };
    let (g, s, a) = (f(&["G1", "G2"]), f(&["S1"]), f(&["A1", "A2"]));
    let i = Interface::parse(&[(Path::new("g"), &g), (Path::new("s"), &s), (Path::new("a"), &a)], &config).unwrap();
    let got: Vec<(&str, u64)> = i.labels.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(got, vec![("G1", 1), ("G2", 2), ("S1", 3), ("A1", 4), ("A2", 5)]);
}
