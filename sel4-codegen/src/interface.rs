//! The kernel's object interface (`interfaces/object-api*.xml`): invocation labels numbered
//! as seL4's `invocation_header_gen.py` does, and a message encoder and reply decoder per
//! method, packed by the rules of libsel4's `syscall_stub_gen.py`. Also the `if_syscall!`
//! macro through which the raw system call layer exists only for the system calls this
//! configuration has.
//!
//! Owns reading the three interface files and generating `pub mod interface`; never reads
//! anything but the prefix it is given, and copies no number from the kernel by hand.
//!
//! Numbering: `InvalidInvocation` is 0; the methods of `object-api.xml`, then of
//! `object-api-sel4-arch.xml`, then of `object-api-arch.xml` follow from 1 in document order
//! (the kernel's `enum invocation_label`, `sel4_arch_invocation_label` starting at
//! `nInvocationLabels`, `arch_invocation_label` at `nSeL4ArchInvocationLabels`). A method
//! whose `<condition>` is false in this configuration is `#if`'d out of those enums, so it
//! takes no number and later labels move up. An id that appears twice (the MCS and non-MCS
//! variants of one method) is numbered once.
//!
//! Packing: the service capability is the invoked CPtr; every other capability-typed
//! parameter becomes an extra capability, in order; the rest are laid out in message
//! registers bit by bit, each aligned to `min(its size, 64)` bits, so small values
//! (`seL4_Bool` 1 bit, `seL4_Uint8`, `seL4_Uint16`) share a word, `seL4_CapRights_t` and
//! other word types take one word, and structures (`seL4_UserContext`) take one word per
//! member. Out-parameters are read back from the reply's message registers by the same
//! layout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use roxmltree::{Document, Node};

use crate::Error;
use crate::condition::eval_condition;
use crate::config::KernelConfig;
use crate::prefix::Prefix;
use crate::syscalls::Syscalls;

/// Word size of AArch64 in bits.
pub const WORD_BITS: u32 = 64;

/// The interface files in numbering order, relative to `libsel4/include`.
pub const INTERFACE_FILES: [&str; 3] =
    ["interfaces/object-api.xml", "interfaces/object-api-sel4-arch.xml", "interfaces/object-api-arch.xml"];

/// How a parameter type travels in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A capability: the service, or an extra capability.
    Cap,
    /// An unsigned integer of this many bits (1 for `seL4_Bool`).
    Int {
        /// Width in the message.
        bits: u32,
        /// Whether it is `seL4_Bool`.
        is_bool: bool,
    },
    /// `seL4_CapRights_t`: one word, the bitfield's only word.
    CapRights,
    /// `seL4_ARM_VMAttributes`: one word.
    VmAttributes,
    /// A structure passed by reference, one word per member (`seL4_UserContext`).
    Struct {
        /// Number of words.
        words: u32,
    },
}

impl ParamKind {
    /// Size in the message, in bits.
    pub fn size_bits(&self) -> u32 {
        match self {
            ParamKind::Cap | ParamKind::CapRights | ParamKind::VmAttributes => WORD_BITS,
            ParamKind::Int { bits, .. } => *bits,
            ParamKind::Struct { words } => words * WORD_BITS,
        }
    }
}

/// One parameter of a method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Name as in the XML.
    pub name: String,
    /// C type name as in the XML.
    pub c_type: String,
    /// How it travels.
    pub kind: ParamKind,
}

/// One method of an interface that exists in this configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// Interface name (`seL4_TCB`).
    pub interface: String,
    /// Method name (`ReadRegisters`).
    pub name: String,
    /// Label id (`TCBReadRegisters`).
    pub label: String,
    /// Label number in this configuration.
    pub label_number: u64,
    /// Input parameters after the service capability.
    pub inputs: Vec<Param>,
    /// Output parameters.
    pub outputs: Vec<Param>,
    /// The `<brief>` text, whitespace-normalised.
    pub brief: String,
}

/// Where a non-capability parameter sits in the message: `(first bit, number of bits)`.
pub type Position = (u32, u32);

/// The layout rule of `syscall_stub_gen.py`: each parameter starts at the next multiple of
/// `min(size, word size)` bits.
pub fn positions(params: &[&Param]) -> Vec<Position> {
    let mut used = 0u32;
    params
        .iter()
        .map(|p| {
            let size = p.kind.size_bits();
            let align = size.min(WORD_BITS);
            used = used.div_ceil(align) * align;
            let pos = (used, size);
            used += size;
            pos
        })
        .collect()
}

impl Method {
    /// The C name without `seL4_`: `TCB_ReadRegisters`.
    pub fn c_name(&self) -> String {
        let iface = self.interface.strip_prefix("seL4_").unwrap_or(&self.interface);
        format!("{iface}_{}", self.name)
    }

    /// The Rust function name: `tcb_read_registers`, `arm_vcpu_inject_irq`.
    pub fn rust_name(&self) -> String {
        snake_case(&self.c_name())
    }

    /// Capability parameters, in extra-capability order.
    pub fn cap_inputs(&self) -> Vec<&Param> {
        self.inputs.iter().filter(|p| p.kind == ParamKind::Cap).collect()
    }

    /// Parameters packed into message registers, in order.
    pub fn data_inputs(&self) -> Vec<&Param> {
        self.inputs.iter().filter(|p| p.kind != ParamKind::Cap).collect()
    }

    /// Number of message words the request takes.
    pub fn input_words(&self) -> u32 {
        let data = self.data_inputs();
        match (positions(&data).last(), data.is_empty()) {
            (Some((first, bits)), false) => (first + bits).div_ceil(WORD_BITS),
            _ => 0,
        }
    }
}

/// The interface of one configuration.
#[derive(Clone, Debug)]
pub struct Interface {
    /// `(id, number)` for every label this configuration has, from 1, in numbering order.
    pub labels: Vec<(String, u64)>,
    /// Every method this configuration has, in numbering order of their labels' files.
    pub methods: Vec<Method>,
    /// Label ids the XML has but this configuration leaves out (`TCBSetAffinity` without
    /// SMP), sorted.
    pub absent: Vec<String>,
}

struct Source<'a> {
    file: &'a Path,
    doc: Document<'a>,
}

impl Source<'_> {
    fn err(&self, node: Node<'_, '_>, msg: impl std::fmt::Display) -> Error {
        let line = self.doc.text_pos_at(node.range().start).row;
        Error::Xml { file: self.file.to_path_buf(), message: format!("line {line}: {msg}") }
    }
}

/// A parameter type by its C name, for AArch64. Structures are looked up in `structs`
/// (name to member count, from the `<struct>` elements).
fn param_kind(c_type: &str, structs: &BTreeMap<String, u32>) -> Option<ParamKind> {
    let int = |bits| Some(ParamKind::Int { bits, is_bool: false });
    match c_type {
        "seL4_Bool" => Some(ParamKind::Int { bits: 1, is_bool: true }),
        "seL4_Uint8" => int(8),
        "seL4_Uint16" => int(16),
        "seL4_Uint32" | "int" => int(32),
        "seL4_Uint64" | "seL4_Time" | "seL4_Word" | "long" | "seL4_VCPUReg" => int(64),
        "seL4_CapRights_t" => Some(ParamKind::CapRights),
        "seL4_ARM_VMAttributes" => Some(ParamKind::VmAttributes),
        "seL4_CPtr"
        | "seL4_CNode"
        | "seL4_IRQHandler"
        | "seL4_IRQControl"
        | "seL4_TCB"
        | "seL4_Untyped"
        | "seL4_DomainSet"
        | "seL4_SchedContext"
        | "seL4_SchedControl"
        | "seL4_ARM_Page"
        | "seL4_ARM_PageTable"
        | "seL4_ARM_VSpace"
        | "seL4_ARM_ASIDControl"
        | "seL4_ARM_ASIDPool"
        | "seL4_ARM_VCPU"
        | "seL4_ARM_IOSpace"
        | "seL4_ARM_IOPageTable"
        | "seL4_ARM_SMC"
        | "seL4_ARM_SIDControl"
        | "seL4_ARM_SID"
        | "seL4_ARM_CBControl"
        | "seL4_ARM_CB" => Some(ParamKind::Cap),
        other => structs.get(other).map(|&words| ParamKind::Struct { words }),
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The condition of a method: its direct `<condition>` child (true when absent).
fn method_enabled(src: &Source<'_>, method: Node<'_, '_>, config: &KernelConfig) -> Result<bool, Error> {
    match method.children().find(|c| c.has_tag_name("condition")) {
        Some(cond) => eval_condition(cond, config).map_err(|e| src.err(cond, e)),
        None => Ok(true),
    }
}

impl Interface {
    /// Reads the three interface files of the prefix for `config`.
    pub fn load(prefix: &Prefix, config: &KernelConfig) -> Result<Self, Error> {
        let mut texts = Vec::new();
        for rel in INTERFACE_FILES {
            let file = prefix.include(rel);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::Xml { file: file.clone(), message: e.to_string() })?;
            texts.push((file, text));
        }
        let refs: Vec<(&Path, &str)> = texts.iter().map(|(f, t)| (f.as_path(), t.as_str())).collect();
        Self::parse(&refs, config)
    }

    /// Parses the interface files given as `(name for messages, text)`, generic first, then
    /// sel4_arch, then arch.
    pub fn parse(files: &[(&Path, &str)], config: &KernelConfig) -> Result<Self, Error> {
        let mut sources = Vec::new();
        for (file, text) in files {
            let doc = Document::parse(text)
                .map_err(|e| Error::Xml { file: file.to_path_buf(), message: format!("line {}: {e}", e.pos().row) })?;
            sources.push(Source { file, doc });
        }

        // Structures first: the generic file uses seL4_UserContext from the sel4_arch one.
        let mut structs = BTreeMap::new();
        for src in &sources {
            for s in src.doc.descendants().filter(|n| n.has_tag_name("struct")) {
                let name = s.attribute("name").ok_or_else(|| src.err(s, "<struct> without name"))?;
                let members = s.children().filter(|c| c.has_tag_name("member")).count() as u32;
                if members == 0 {
                    return Err(src.err(s, format!("struct {name} has no members")));
                }
                structs.insert(name.to_string(), members);
            }
        }

        let mut labels: Vec<(String, u64)> = Vec::new();
        let mut numbers: BTreeMap<String, u64> = BTreeMap::new();
        // (id, condition text) pairs seen, for the generator's implicit-duplicate check.
        let mut seen_uids: BTreeSet<(String, String)> = BTreeSet::new();
        let mut methods = Vec::new();
        let mut rust_names: BTreeMap<String, String> = BTreeMap::new();
        let mut absent: BTreeSet<String> = BTreeSet::new();
        for src in &sources {
            for iface in src.doc.descendants().filter(|n| n.has_tag_name("interface")) {
                let iface_name = iface.attribute("name").ok_or_else(|| src.err(iface, "<interface> without name"))?;
                for m in iface.descendants().filter(|n| n.has_tag_name("method")) {
                    let id = m.attribute("id").ok_or_else(|| src.err(m, "<method> without id"))?;
                    let name = m.attribute("name").ok_or_else(|| src.err(m, "<method> without name"))?;
                    let cond_text = m
                        .children()
                        .find(|c| c.has_tag_name("condition"))
                        .map(|c| normalise(&src.doc.input_text()[c.range()]))
                        .unwrap_or_default();
                    let duplicate_ok = matches!(m.attribute("duplicate"), Some("true" | "1"));
                    if !seen_uids.insert((id.to_string(), cond_text)) && !duplicate_ok {
                        return Err(src.err(m, format!("implicit duplicate method id {id}")));
                    }
                    if !method_enabled(src, m, config)? {
                        absent.insert(id.to_string());
                        continue;
                    }
                    let number = match numbers.get(id) {
                        Some(n) => *n,
                        None => {
                            let n = labels.len() as u64 + 1;
                            numbers.insert(id.to_string(), n);
                            labels.push((id.to_string(), n));
                            n
                        }
                    };
                    let mut inputs = Vec::new();
                    let mut outputs = Vec::new();
                    for p in m.descendants().filter(|n| n.has_tag_name("param")) {
                        let pname = p.attribute("name").ok_or_else(|| src.err(p, "<param> without name"))?;
                        let c_type = p.attribute("type").ok_or_else(|| src.err(p, "<param> without type"))?;
                        let kind = param_kind(c_type, &structs)
                            .ok_or_else(|| src.err(p, format!("unknown parameter type {c_type}")))?;
                        let param = Param { name: pname.to_string(), c_type: c_type.to_string(), kind };
                        match p.attribute("dir") {
                            Some("in") => inputs.push(param),
                            Some("out") => outputs.push(param),
                            other => {
                                return Err(src.err(p, format!("parameter {pname}: dir is {other:?}, not in/out")));
                            }
                        }
                    }
                    let brief = m
                        .children()
                        .find(|c| c.has_tag_name("brief"))
                        .map(|b| normalise(&b.descendants().filter_map(|t| t.text()).collect::<String>()))
                        .unwrap_or_default();
                    let method = Method {
                        interface: iface_name.to_string(),
                        name: name.to_string(),
                        label: id.to_string(),
                        label_number: number,
                        inputs,
                        outputs,
                        brief,
                    };
                    if method.cap_inputs().len() > 3 {
                        return Err(src.err(m, format!("{id}: more than 3 extra capabilities")));
                    }
                    if let Some(prev) = rust_names.insert(method.rust_name(), id.to_string()) {
                        return Err(
                            src.err(m, format!("{id} and {prev} both map to the Rust name {}", method.rust_name()))
                        );
                    }
                    methods.push(method);
                }
            }
        }
        let absent = absent.into_iter().filter(|id| !numbers.contains_key(id)).collect();
        Ok(Interface { labels, methods, absent })
    }

    /// The number of a label, by id.
    pub fn label(&self, id: &str) -> Option<u64> {
        self.labels.iter().find(|(n, _)| n == id).map(|(_, v)| *v)
    }

    /// A method, by its C name without `seL4_` (`TCB_ReadRegisters`).
    pub fn method(&self, c_name: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.c_name() == c_name)
    }

    /// `pub mod interface`: `InvocationLabel`, `MAX_MESSAGE_WORDS`, and `encode::*` and
    /// `decode::*` functions per method. The code refers to `crate::invocation::Invocation`,
    /// `crate::cap::{CPtr, CapRights, VmAttributes}`.
    pub fn to_rust(&self) -> String {
        let mut o = String::new();
        o.push_str(
            "/// Invocation labels and per-method message encoders and reply decoders, generated from\n\
             /// the interface XML for this configuration.\n\
             pub mod interface {\n\
             #![allow(clippy::all, unused_parens, non_camel_case_types, missing_docs)]\n\
             use crate::cap::{CPtr, CapRights, VmAttributes};\n\
             use crate::invocation::Invocation;\n\n",
        );
        o.push_str(
            "/// `invocation_label` with the sel4_arch and arch continuations, for this configuration.\n\
             #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]\n#[repr(u64)]\n\
             pub enum InvocationLabel {\n    InvalidInvocation = 0,\n",
        );
        for (id, n) in &self.labels {
            writeln!(o, "    {id} = {n},").unwrap();
        }
        o.push_str("}\n\nimpl InvocationLabel {\n");
        writeln!(o, "    /// Every label but `InvalidInvocation`, in numbering order.").unwrap();
        writeln!(o, "    pub const ALL: [InvocationLabel; {}] = [", self.labels.len()).unwrap();
        for (id, _) in &self.labels {
            writeln!(o, "        InvocationLabel::{id},").unwrap();
        }
        o.push_str("    ];\n");
        o.push_str(
            "    /// The label with this number, if this configuration has one.\n\
             \x20   pub const fn from_u64(n: u64) -> Option<Self> {\n        match n {\n",
        );
        o.push_str("            0 => Some(InvocationLabel::InvalidInvocation),\n");
        for (id, n) in &self.labels {
            writeln!(o, "            {n} => Some(InvocationLabel::{id}),").unwrap();
        }
        o.push_str("            _ => None,\n        }\n    }\n");
        o.push_str(
            "    /// The kernel's name for the label.\n\
             \x20   pub const fn name(self) -> &'static str {\n        match self {\n",
        );
        o.push_str("            InvocationLabel::InvalidInvocation => \"InvalidInvocation\",\n");
        for (id, _) in &self.labels {
            writeln!(o, "            InvocationLabel::{id} => \"{id}\",").unwrap();
        }
        o.push_str("        }\n    }\n}\n\n");

        let max_words = self
            .methods
            .iter()
            .map(|m| m.input_words().max(m.outputs.iter().map(|p| p.kind.size_bits()).sum::<u32>().div_ceil(64)))
            .max()
            .unwrap_or(0);
        writeln!(o, "/// The longest request or reply of any method, in message words.").unwrap();
        writeln!(o, "pub const MAX_MESSAGE_WORDS: usize = {max_words};\n").unwrap();

        o.push_str("/// Request encoders: one per method, pure, `(arguments) -> Invocation`.\npub mod encode {\n");
        o.push_str("    use super::*;\n");
        for m in &self.methods {
            self.encoder(m, &mut o);
        }
        o.push_str("}\n\n/// Reply decoders: the out-parameters of a successful reply from its message words\n");
        o.push_str("/// (words beyond the slice read as 0).\npub mod decode {\n    #[allow(unused_imports)]\n    use super::*;\n");
        o.push_str("    #[inline]\n    fn w(mrs: &[u64], i: usize) -> u64 {\n        mrs.get(i).copied().unwrap_or(0)\n    }\n");
        for m in self.methods.iter().filter(|m| !m.outputs.is_empty()) {
            decoder(m, &mut o);
        }
        o.push_str("}\n}\n");
        o.push_str(&self.method_gate_macro());
        o
    }

    /// `if_method!(Label { items } else { items })`: the first items when the label exists in
    /// this configuration, else the second, so that code for a method the configuration
    /// leaves out (and whose encoder is not generated) can say what happens instead. A label
    /// the XML does not have fails to compile.
    pub fn method_gate_macro(&self) -> String {
        let mut out = String::from(
            "/// Expands the first items if the named invocation label exists in this configuration, else the second.\n\
             #[allow(unused_macros)]\n\
             macro_rules! if_method {\n",
        );
        let arm = |out: &mut String, id: &str, on: bool| {
            let body = if on { "$($yes)*" } else { "$($no)*" };
            writeln!(out, "    ({id} {{ $($yes:item)* }} else {{ $($no:item)* }}) => {{ {body} }};").unwrap();
        };
        for (id, _) in &self.labels {
            arm(&mut out, id, true);
        }
        for id in &self.absent {
            arm(&mut out, id, false);
        }
        out.push_str("}\n#[allow(unused_imports)]\npub(crate) use if_method;\n");
        out
    }

    fn encoder(&self, m: &Method, o: &mut String) {
        let mut args = Vec::new();
        for p in &m.inputs {
            args.push(format!("{}: {}", rust_ident(&p.name), rust_in_type(&p.kind)));
        }
        writeln!(o, "\n    /// `seL4_{}` (label `{}`): {}", m.c_name(), m.label, m.brief).unwrap();
        writeln!(o, "    pub fn {}({}) -> Invocation {{", m.rust_name(), args.join(", ")).unwrap();
        let data = m.data_inputs();
        let mut words: Vec<Vec<String>> = vec![Vec::new(); m.input_words() as usize];
        for (p, (first, bits)) in data.iter().zip(positions(&data)) {
            let word = (first / WORD_BITS) as usize;
            let offset = first % WORD_BITS;
            let name = rust_ident(&p.name);
            match &p.kind {
                ParamKind::Struct { words: n } => {
                    for i in 0..*n as usize {
                        words[word + i].push(format!("{name}[{i}]"));
                    }
                }
                kind => {
                    let value = match kind {
                        ParamKind::CapRights => format!("{name}.to_word()"),
                        ParamKind::VmAttributes => format!("{name}.bits()"),
                        _ => format!("({name} as u64)"),
                    };
                    let expr = if bits < WORD_BITS {
                        let masked = format!("({value} & {:#x})", (1u64 << bits) - 1);
                        if offset > 0 { format!("({masked} << {offset})") } else { masked }
                    } else {
                        value
                    };
                    words[word].push(expr);
                }
            }
        }
        let words: Vec<String> =
            words.into_iter().map(|w| if w.is_empty() { "0".to_string() } else { w.join(" | ") }).collect();
        let caps: Vec<String> = m.cap_inputs().iter().map(|p| rust_ident(&p.name)).collect();
        writeln!(
            o,
            "        Invocation::new(InvocationLabel::{} as u64, &[{}], &[{}])\n    }}",
            m.label,
            caps.join(", "),
            words.join(", ")
        )
        .unwrap();
    }
}

fn decoder(m: &Method, o: &mut String) {
    let outs: Vec<&Param> = m.outputs.iter().collect();
    let mut types = Vec::new();
    let mut exprs = Vec::new();
    for (p, (first, bits)) in outs.iter().zip(positions(&outs)) {
        let word = (first / WORD_BITS) as usize;
        let offset = first % WORD_BITS;
        let raw = if bits >= WORD_BITS {
            format!("w(mrs, {word})")
        } else {
            format!("((w(mrs, {word}) >> {offset}) & {:#x})", (1u64 << bits) - 1)
        };
        let (ty, expr) = match &p.kind {
            ParamKind::Struct { words } => {
                let items: Vec<String> = (0..*words as usize).map(|i| format!("w(mrs, {})", word + i)).collect();
                (format!("[u64; {words}]"), format!("[{}]", items.join(", ")))
            }
            ParamKind::Int { is_bool: true, .. } => ("bool".into(), format!("{raw} != 0")),
            ParamKind::Int { bits, .. } => (int_type(*bits).to_string(), format!("{raw} as {}", int_type(*bits))),
            ParamKind::CapRights => ("CapRights".into(), format!("CapRights::from_word({raw})")),
            ParamKind::VmAttributes => ("VmAttributes".into(), format!("VmAttributes::from_bits({raw})")),
            ParamKind::Cap => ("CPtr".into(), format!("CPtr::from_bits({raw})")),
        };
        types.push(ty);
        exprs.push(expr);
    }
    let names: Vec<&str> = outs.iter().map(|p| p.name.as_str()).collect();
    writeln!(o, "\n    /// Out-parameters of `seL4_{}`: {}.", m.c_name(), names.join(", ")).unwrap();
    if types.len() == 1 {
        writeln!(o, "    pub fn {}(mrs: &[u64]) -> {} {{\n        {}\n    }}", m.rust_name(), types[0], exprs[0])
            .unwrap();
    } else {
        writeln!(
            o,
            "    pub fn {}(mrs: &[u64]) -> ({}) {{\n        ({})\n    }}",
            m.rust_name(),
            types.join(", "),
            exprs.join(", ")
        )
        .unwrap();
    }
}

fn int_type(bits: u32) -> &'static str {
    match bits {
        1 => "bool",
        8 => "u8",
        16 => "u16",
        32 => "u32",
        _ => "u64",
    }
}

fn rust_in_type(kind: &ParamKind) -> String {
    match kind {
        ParamKind::Cap => "CPtr".into(),
        ParamKind::Int { bits, .. } => int_type(*bits).into(),
        ParamKind::CapRights => "CapRights".into(),
        ParamKind::VmAttributes => "VmAttributes".into(),
        ParamKind::Struct { words } => format!("&[u64; {words}]"),
    }
}

/// A parameter name as a Rust identifier: snake case, keywords raw (`type` -> `r#type`).
fn rust_ident(name: &str) -> String {
    let s = snake_case(name);
    match s.as_str() {
        "type" | "ref" | "move" | "fn" | "mod" | "match" | "impl" | "use" | "in" | "loop" | "where" => {
            format!("r#{s}")
        }
        _ => s,
    }
}

/// `TCB_ReadRegisters` -> `tcb_read_registers`, `ARM_VCPU_InjectIRQ` -> `arm_vcpu_inject_irq`,
/// `CNode_Mint` -> `cnode_mint`, `ARM_VSpace_Clean_Data` -> `arm_vspace_clean_data`.
pub fn snake_case(name: &str) -> String {
    // Two names that read as one word, as in seL4's own prose.
    let name = name.replace("CNode", "Cnode").replace("VSpace", "Vspace");
    let mut parts = Vec::new();
    for seg in name.split('_').filter(|s| !s.is_empty()) {
        let chars: Vec<char> = seg.chars().collect();
        let mut out = String::new();
        for (i, c) in chars.iter().enumerate() {
            if i > 0 && c.is_ascii_uppercase() {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (next_lower && prev.is_ascii_uppercase()) {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_lowercase());
        }
        parts.push(out);
    }
    parts.join("_")
}

/// `if_syscall!(Name { items })`: expands `items` only when system call `Name` exists in
/// this configuration. Names the configuration numbers but disables expand to nothing;
/// names `syscall.xml` does not have at all fail to compile, so a typo is caught.
pub fn syscall_gate_macro(syscalls: &Syscalls) -> String {
    let mut out = String::from(
        "/// Expands the items in braces only if the named system call exists in this configuration.\n\
         #[allow(unused_macros)]\n\
         macro_rules! if_syscall {\n",
    );
    for s in &syscalls.all {
        let body = if s.enabled { "$($item)*" } else { "" };
        writeln!(out, "    ({} {{ $($item:item)* }}) => {{ {body} }};", s.name).unwrap();
    }
    out.push_str("}\n#[allow(unused_imports)]\npub(crate) use if_syscall;\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases() {
        assert_eq!(snake_case("TCB_ReadRegisters"), "tcb_read_registers");
        assert_eq!(snake_case("ARM_VCPU_InjectIRQ"), "arm_vcpu_inject_irq");
        assert_eq!(snake_case("CNode_Mint"), "cnode_mint");
        assert_eq!(snake_case("ARM_VSpace_Clean_Data"), "arm_vspace_clean_data");
        assert_eq!(snake_case("IRQControl_GetTrigger"), "irq_control_get_trigger");
        assert_eq!(snake_case("ARM_ASIDControl_MakePool"), "arm_asid_control_make_pool");
        assert_eq!(snake_case("bufferFrame"), "buffer_frame");
        assert_eq!(snake_case("syndrome_0"), "syndrome_0");
    }

    fn p(kind: ParamKind) -> Param {
        Param { name: "x".into(), c_type: String::new(), kind }
    }

    #[test]
    fn small_types_share_words_and_words_align() {
        let b = p(ParamKind::Int { bits: 1, is_bool: true });
        let u8_ = p(ParamKind::Int { bits: 8, is_bool: false });
        let u16_ = p(ParamKind::Int { bits: 16, is_bool: false });
        let w = p(ParamKind::Int { bits: 64, is_bool: false });
        let s = p(ParamKind::Struct { words: 3 });
        // bool at 0, u8 aligned up to 8, word aligned to 64, u16 at 128, u8 at 144,
        // struct aligned to the next word (192) for 3 words, then a bool at 384.
        assert_eq!(
            positions(&[&b, &u8_, &w, &u16_, &u8_, &s, &b]),
            vec![(0, 1), (8, 8), (64, 64), (128, 16), (144, 8), (192, 192), (384, 1)]
        );
    }
}
