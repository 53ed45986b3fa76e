//! The console multiplexer: one serial terminal shared by every VM and by capvisor's own
//! messages. Pure state: it turns VM output, capvisor's lines and typed bytes into terminal
//! bytes and routing decisions; the run loop writes the bytes and delivers the input.
//!
//! # Output
//! A VM's bytes reach the terminal as the guest writes them, so a prompt without a newline
//! shows at once and a guest's echo shows while one types.
//! - **Names.** In a system of more than one VM, every terminal line a VM starts begins with
//!   `[name] `, from the first line to the last (a VM that outlives the others keeps its
//!   name, so a log reads the same throughout). A system of one VM writes no names: there is
//!   no one to tell it from, and prompts and full-screen programs look as they would on a
//!   serial port. capvisor's own lines begin with `capvisor: `.
//! - **Focus.** The VM with focus (the one typing goes to) writes to the terminal byte for
//!   byte. A VM without focus writes whole lines: its bytes are held until it ends a line
//!   (or until [`HOLD_MAX`] bytes), so lines of several VMs never mix. A held line that is
//!   ready breaks the focused VM's unfinished line (its prompt, say), is written whole, and
//!   the unfinished line is written again after it, so typing goes on where it was; the same
//!   happens around capvisor's own lines ([`Console::note_start`], [`Console::note_end`]).
//!   What a VM without focus left unfinished (its own prompt) shows when it gets focus.
//! - **Nothing is lost.** Held output of a VM is bounded by [`HOLD_MAX`] bytes; at the bound
//!   the held bytes are written as a line of their own, cut where the bound fell, and
//!   counted ([`OutputStats::cut_lines`]). No byte a VM wrote is dropped here.
//!
//! # Input and keys
//! Typed bytes go to the VM with focus, `Ctrl-C` and every other key included, except for
//! `Ctrl-A` ([`ESCAPE`]), the prefix of capvisor's keys:
//! `Ctrl-A ?` (or `h`) lists the keys and the VMs, `Ctrl-A 1`..`9` gives focus to that VM (in
//! system order), `Ctrl-A x` ends the run, `Ctrl-A Ctrl-A` sends one `Ctrl-A` to the VM. Any
//! other key after `Ctrl-A` is answered with a hint ([`Routed::UnknownKey`]).
//!
//! Owns focus, escape state and the terminal's line state; never touches a device model, a
//! UART or the kernel.

use alloc::string::String;
use alloc::vec::Vec;

/// The escape byte (`Ctrl-A`).
pub const ESCAPE: u8 = 0x01;
/// Most bytes of one VM held while another VM has the terminal's line.
pub const HOLD_MAX: usize = 1024;
/// Most bytes of the line owner's unfinished line kept to write it again after an
/// interruption (a longer line is written again from its last `PARTIAL_MAX` bytes).
pub const PARTIAL_MAX: usize = 512;

/// The key list `Ctrl-A ?` prints, one line each.
pub const HELP: [&str; 5] = [
    "Ctrl-A ?       this help",
    "Ctrl-A 1..9    typing goes to that VM",
    "Ctrl-A x       end the run (exit status 130)",
    "Ctrl-A Ctrl-A  send Ctrl-A to the VM",
    "any other key, Ctrl-C included, goes to the VM with focus",
];

/// Where one input byte goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Routed {
    /// To this VM.
    Input(usize, u8),
    /// Focus moved to this VM.
    Focus(usize),
    /// `Ctrl-A ?`: print the keys and the VMs.
    Help,
    /// `Ctrl-A x`: end the run.
    Quit,
    /// `Ctrl-A` then a key that means nothing (or a VM number with no VM).
    UnknownKey(u8),
    /// Nothing yet (the escape itself), or input with no VM to take it.
    Nothing,
}

/// What the multiplexer did with one VM's output.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct OutputStats {
    /// Bytes written to the terminal.
    pub bytes: u64,
    /// Lines that waited for another VM's line to finish.
    pub held_lines: u64,
    /// Held output written at the [`HOLD_MAX`] bound, before its newline.
    pub cut_lines: u64,
}

#[derive(Clone, Debug)]
struct Vm {
    name: String,
    running: bool,
    held: Vec<u8>,
    stats: OutputStats,
}

/// Focus, escape state and the terminal's line state. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Console {
    vms: Vec<Vm>,
    focus: usize,
    escaped: bool,
    /// The VM whose unfinished line the terminal shows (`None`: at a line start).
    owner: Option<usize>,
    /// That line's bytes since its name (bounded), to write it again after a break.
    partial: Vec<u8>,
    /// The owner interrupted by capvisor's lines, to restore at [`Console::note_end`].
    noted: Option<usize>,
}

impl Console {
    /// A console for VMs with these names (all running), focus on the first.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let vms = names
            .iter()
            .map(|n| Vm {
                name: String::from(n.as_ref()),
                running: true,
                held: Vec::new(),
                stats: OutputStats::default(),
            })
            .collect();
        Console { vms, focus: 0, escaped: false, owner: None, partial: Vec::new(), noted: None }
    }

    /// The VM with focus.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// Whether VM `vm` is still running (as far as the console was told).
    pub fn running(&self, vm: usize) -> bool {
        self.vms.get(vm).is_some_and(|v| v.running)
    }

    /// What the console did with VM `vm`'s output.
    pub fn stats(&self, vm: usize) -> OutputStats {
        self.vms.get(vm).map(|v| v.stats).unwrap_or_default()
    }

    /// Routes one byte typed on the console.
    pub fn route(&mut self, b: u8) -> Routed {
        if !self.escaped {
            if b == ESCAPE {
                self.escaped = true;
                return Routed::Nothing;
            }
            return if self.focus < self.vms.len() { Routed::Input(self.focus, b) } else { Routed::Nothing };
        }
        self.escaped = false;
        match b {
            ESCAPE if self.focus < self.vms.len() => Routed::Input(self.focus, ESCAPE),
            b'?' | b'h' | b'H' => Routed::Help,
            b'x' | b'X' => Routed::Quit,
            b'1'..=b'9' => {
                let vm = usize::from(b - b'1');
                if vm < self.vms.len() {
                    self.focus = vm;
                    Routed::Focus(vm)
                } else {
                    Routed::UnknownKey(b)
                }
            }
            _ => Routed::UnknownKey(b),
        }
    }

    /// The `Ctrl-A ?` text: the keys, then one line per VM; each line without a newline.
    pub fn help_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = HELP.iter().map(|l| alloc::format!("console: {l}")).collect();
        for (i, vm) in self.vms.iter().enumerate() {
            let state = if vm.running { "running" } else { "stopped" };
            let focus = if i == self.focus { ", typing goes here" } else { "" };
            lines.push(alloc::format!("console: VM {}: {} ({state}{focus})", i + 1, vm.name));
        }
        lines
    }

    /// VM `vm` stopped: its held output is written (appended to `out`).
    pub fn vm_stopped(&mut self, vm: usize, out: &mut Vec<u8>) {
        if self.vms.get(vm).is_some_and(|v| !v.held.is_empty()) {
            self.flush_held(vm, out);
        }
        if self.owner == Some(vm) {
            self.break_line(out);
            self.partial.clear();
        }
        if let Some(v) = self.vms.get_mut(vm) {
            v.running = false;
        }
    }

    fn named(&self) -> bool {
        self.vms.len() > 1
    }

    fn write_name(&self, vm: usize, out: &mut Vec<u8>) {
        if self.named()
            && let Some(v) = self.vms.get(vm)
        {
            out.push(b'[');
            out.extend_from_slice(v.name.as_bytes());
            out.extend_from_slice(b"] ");
        }
    }

    /// Ends the terminal's unfinished line, if there is one.
    fn break_line(&mut self, out: &mut Vec<u8>) {
        if self.owner.take().is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Starts a line for `vm`: its name, and `again` (its unfinished line written again,
    /// unless it holds terminal control sequences, which must not run twice: a full-screen
    /// program redraws itself anyway).
    fn start_line(&mut self, vm: usize, again: bool, out: &mut Vec<u8>) {
        self.write_name(vm, out);
        if again && !self.partial.contains(&0x1b) {
            out.extend_from_slice(&self.partial);
        } else {
            self.partial.clear();
        }
        self.owner = Some(vm);
    }

    /// Writes `bytes` of the line owner `vm`, up to and including a newline; returns what is
    /// left after it.
    fn write_owned<'b>(&mut self, vm: usize, bytes: &'b [u8], out: &mut Vec<u8>) -> &'b [u8] {
        let end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
        let (chunk, rest) = bytes.split_at(end);
        out.extend_from_slice(chunk);
        if let Some(v) = self.vms.get_mut(vm) {
            v.stats.bytes = v.stats.bytes.saturating_add(chunk.len() as u64);
        }
        if chunk.last() == Some(&b'\n') {
            self.owner = None;
            self.partial.clear();
        } else {
            self.partial.extend_from_slice(chunk);
            if self.partial.len() > PARTIAL_MAX {
                let cut = self.partial.len() - PARTIAL_MAX;
                self.partial.drain(..cut);
            }
        }
        rest
    }

    /// Writes `bytes` of `vm` on lines of its own: another VM's unfinished line is ended
    /// first, and each line `vm` starts carries its name.
    fn write_lines(&mut self, vm: usize, mut bytes: &[u8], out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            if self.owner != Some(vm) {
                self.break_line(out);
                self.start_line(vm, false, out);
            }
            bytes = self.write_owned(vm, bytes, out);
        }
    }

    /// Writes VM `vm`'s held bytes as a line of their own, then the interrupted owner's
    /// unfinished line again.
    fn flush_held(&mut self, vm: usize, out: &mut Vec<u8>) {
        let interrupted = self.owner.filter(|o| *o != vm);
        self.break_line(out);
        let held = match self.vms.get_mut(vm) {
            Some(v) => core::mem::take(&mut v.held),
            None => return,
        };
        let saved = core::mem::take(&mut self.partial);
        self.write_lines(vm, &held, out);
        if let Some(v) = self.vms.get_mut(vm) {
            v.stats.held_lines = v.stats.held_lines.saturating_add(1);
            if held.last() != Some(&b'\n') {
                v.stats.cut_lines = v.stats.cut_lines.saturating_add(1);
            }
        }
        self.break_line(out);
        self.partial = saved;
        if let Some(o) = interrupted {
            self.start_line(o, true, out);
        }
    }

    /// VM `vm` wrote `bytes`: appends what the terminal gets to `out`.
    pub fn output(&mut self, vm: usize, mut bytes: &[u8], out: &mut Vec<u8>) {
        if vm >= self.vms.len() {
            return;
        }
        if self.named() && vm != self.focus {
            // Without focus: whole lines only, each written when it ends (or fills the hold).
            while !bytes.is_empty() {
                let v = &mut self.vms[vm];
                let room = HOLD_MAX.saturating_sub(v.held.len()).max(1);
                let end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1).min(room);
                let (chunk, rest) = bytes.split_at(end);
                v.held.extend_from_slice(chunk);
                bytes = rest;
                if v.held.last() == Some(&b'\n') || v.held.len() >= HOLD_MAX {
                    self.flush_held(vm, out);
                }
            }
            return;
        }
        self.write_lines(vm, bytes, out);
    }

    /// Shows what the VM with focus wrote while it had none (its prompt, say), when the
    /// terminal is at a line start.
    fn show_focus(&mut self, out: &mut Vec<u8>) {
        let f = self.focus;
        if self.owner.is_none() && self.vms.get(f).is_some_and(|v| !v.held.is_empty()) {
            let held = core::mem::take(&mut self.vms[f].held);
            self.write_lines(f, &held, out);
        }
    }

    /// Before capvisor writes lines of its own: ends a VM's unfinished line (appended to
    /// `out`) and remembers it for [`Console::note_end`].
    pub fn note_start(&mut self, out: &mut Vec<u8>) {
        if self.noted.is_none() {
            self.noted = self.owner;
        }
        self.break_line(out);
    }

    /// After capvisor's lines: writes the interrupted VM's unfinished line again.
    pub fn note_end(&mut self, out: &mut Vec<u8>) {
        // Only the VM with focus gets its line back: after a focus change, the new one's.
        if let Some(o) = self.noted.take()
            && self.owner.is_none()
            && o == self.focus
            && self.running(o)
        {
            self.start_line(o, true, out);
        }
        self.show_focus(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(c: &mut Console, vm: usize, s: &str) -> String {
        let mut o = Vec::new();
        c.output(vm, s.as_bytes(), &mut o);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn input_follows_focus_and_escapes_switch_it() {
        let mut c = Console::new(&["a", "b"]);
        assert_eq!(c.route(b'a'), Routed::Input(0, b'a'));
        assert_eq!(c.route(0x03), Routed::Input(0, 0x03), "Ctrl-C goes to the guest");
        assert_eq!(c.route(ESCAPE), Routed::Nothing);
        assert_eq!(c.route(b'2'), Routed::Focus(1));
        assert_eq!(c.route(b'b'), Routed::Input(1, b'b'));
        assert_eq!((c.route(ESCAPE), c.route(ESCAPE)), (Routed::Nothing, Routed::Input(1, ESCAPE)));
        assert_eq!((c.route(ESCAPE), c.route(b'3')), (Routed::Nothing, Routed::UnknownKey(b'3')), "no VM 3");
        assert_eq!(c.focus(), 1);
        assert_eq!((c.route(ESCAPE), c.route(b'?')), (Routed::Nothing, Routed::Help));
        assert_eq!((c.route(ESCAPE), c.route(b'h')), (Routed::Nothing, Routed::Help));
        assert_eq!((c.route(ESCAPE), c.route(b'x')), (Routed::Nothing, Routed::Quit));
        assert_eq!((c.route(ESCAPE), c.route(b'q')), (Routed::Nothing, Routed::UnknownKey(b'q')));
        assert_eq!(c.route(b'c'), Routed::Input(1, b'c'), "escape state ends after one byte");
        let none: [&str; 0] = [];
        assert_eq!(Console::new(&none).route(b'a'), Routed::Nothing);
    }

    #[test]
    fn help_lists_keys_and_vms_with_focus() {
        let mut c = Console::new(&["linux", "rtos"]);
        c.route(ESCAPE);
        c.route(b'2');
        c.vm_stopped(0, &mut Vec::new());
        let h = c.help_lines();
        assert_eq!(h.len(), HELP.len() + 2);
        assert!(h[0].contains("Ctrl-A ?"));
        assert_eq!(h[HELP.len()], "console: VM 1: linux (stopped)");
        assert_eq!(h[HELP.len() + 1], "console: VM 2: rtos (running, typing goes here)");
    }

    #[test]
    fn one_vm_passes_bytes_through_at_once_without_names() {
        let mut c = Console::new(&["linux"]);
        assert_eq!(out(&mut c, 0, "/ # "), "/ # ", "a prompt shows without a newline");
        assert_eq!(out(&mut c, 0, "l"), "l", "echo shows as typed");
        assert_eq!(out(&mut c, 0, "s\r\nbin  dev\r\n/ # "), "s\r\nbin  dev\r\n/ # ");
        assert_eq!(c.stats(0).bytes, 22);
        assert_eq!(c.stats(0).held_lines, 0);
    }

    #[test]
    fn several_vms_name_each_line_and_the_focused_vm_types_at_once() {
        let mut c = Console::new(&["a", "b"]);
        assert_eq!(out(&mut c, 0, "boot\r\n/ # "), "[a] boot\r\n[a] / # ");
        // b (no focus) finishes a line while a's prompt is on the terminal: a's prompt is
        // broken, b's line written whole, a's prompt written again.
        assert_eq!(out(&mut c, 1, "b up"), "", "held until its newline");
        assert_eq!(out(&mut c, 1, "\r\n"), "\r\n[b] b up\r\n[a] / # ");
        assert_eq!(c.stats(1).held_lines, 1);
        // a echoes as it is typed.
        assert_eq!(out(&mut c, 0, "e"), "e");
        assert_eq!(out(&mut c, 0, "cho\r\n"), "cho\r\n");
        // b's unfinished line waits; its pieces come out as one line.
        assert_eq!(out(&mut c, 1, "b# "), "");
        assert_eq!(out(&mut c, 0, "x"), "[a] x");
        assert_eq!(out(&mut c, 1, "more"), "");
        assert_eq!(out(&mut c, 0, "\r\n"), "\r\n");
        assert_eq!(out(&mut c, 1, " done\n"), "[b] b# more done\n");
    }

    #[test]
    fn a_vm_given_focus_shows_its_unfinished_line() {
        let mut c = Console::new(&["a", "b"]);
        assert_eq!(out(&mut c, 0, "/ # "), "[a] / # ");
        assert_eq!(out(&mut c, 1, "login: "), "");
        c.route(ESCAPE);
        assert_eq!(c.route(b'2'), Routed::Focus(1));
        let mut o = Vec::new();
        c.note_start(&mut o);
        o.extend_from_slice(b"capvisor: console: input goes to b\r\n");
        c.note_end(&mut o);
        assert_eq!(String::from_utf8(o).unwrap(), "\r\ncapvisor: console: input goes to b\r\n[b] login: ");
        assert_eq!(out(&mut c, 1, "r"), "r", "b now echoes as typed");
        assert_eq!(out(&mut c, 0, "late\n"), "\r\n[a] late\n[b] login: r", "a waits for whole lines now");
    }

    #[test]
    fn held_output_is_bounded_cut_and_counted_never_dropped() {
        let mut c = Console::new(&["a", "b"]);
        assert_eq!(out(&mut c, 0, "/ # "), "[a] / # ");
        let long = "y".repeat(HOLD_MAX * 2 + 10);
        let got = out(&mut c, 1, &long);
        let ys = got.bytes().filter(|&b| b == b'y').count();
        assert_eq!(ys, HOLD_MAX * 2, "two full holds written, the rest held");
        assert_eq!(c.stats(1).cut_lines, 2);
        assert!(got.ends_with("\r\n[a] / # "), "the prompt is written again: {got:?}");
        let mut o = Vec::new();
        c.vm_stopped(1, &mut o);
        let o = String::from_utf8(o).unwrap();
        assert_eq!(o.matches('y').count(), 10, "the rest is written when b stops: {o:?}");
        assert_eq!(c.stats(1).bytes, long.len() as u64);
        assert_eq!(out(&mut c, 0, "z\n"), "z\n", "a owns its line");
        assert_eq!(out(&mut c, 0, "w"), "[a] w", "names stay after b stopped");
    }

    #[test]
    fn capvisor_lines_break_the_line_and_the_prompt_comes_back() {
        let mut c = Console::new(&["a"]);
        out(&mut c, 0, "/ # ec");
        let mut o = Vec::new();
        c.note_start(&mut o);
        o.extend_from_slice(b"capvisor: console: VM 1: a\r\n");
        c.note_end(&mut o);
        assert_eq!(String::from_utf8(o).unwrap(), "\r\ncapvisor: console: VM 1: a\r\n/ # ec");
        assert_eq!(out(&mut c, 0, "ho\r\n"), "ho\r\n");
        let mut o = Vec::new();
        c.note_start(&mut o);
        c.note_end(&mut o);
        assert!(o.is_empty(), "at a line start nothing is added");
    }

    #[test]
    fn control_sequences_are_not_written_again() {
        let mut c = Console::new(&["a"]);
        out(&mut c, 0, "\x1b[2J\x1b[01;01H");
        let mut o = Vec::new();
        c.note_start(&mut o);
        c.note_end(&mut o);
        assert_eq!(o, b"\r\n", "a cleared screen is not cleared again");
    }

    #[test]
    fn a_long_unfinished_line_is_written_again_from_its_tail() {
        let mut c = Console::new(&["a"]);
        let long = "p".repeat(PARTIAL_MAX + 100);
        out(&mut c, 0, &long);
        let mut o = Vec::new();
        c.note_start(&mut o);
        c.note_end(&mut o);
        assert_eq!(o.len(), 2 + PARTIAL_MAX);
    }

    #[test]
    fn output_of_unknown_vms_is_ignored() {
        let mut c = Console::new(&["a"]);
        assert_eq!(out(&mut c, 7, "x"), "");
        c.vm_stopped(7, &mut Vec::new());
        assert_eq!(c.stats(7), OutputStats::default());
    }
}
