//! The console multiplexer: one serial console shared by every VM. Output lines carry the
//! VM's name (the UART model prefixes them); input goes to the VM with focus. `Ctrl-A`
//! followed by a digit `1`-`9` gives focus to that VM (in system order), `Ctrl-A Ctrl-A`
//! sends one `Ctrl-A` to the focused VM; anything else after `Ctrl-A` is dropped.

/// The escape byte (`Ctrl-A`).
pub const ESCAPE: u8 = 0x01;

/// Where one input byte goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Routed {
    /// To this VM.
    Input(usize, u8),
    /// Focus moved to this VM.
    Focus(usize),
    /// Nothing (the escape itself, or an unknown escape).
    Nothing,
}

/// Focus and escape state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Console {
    vms: usize,
    focus: usize,
    escaped: bool,
}

impl Console {
    /// A console for `vms` VMs, focus on the first.
    pub fn new(vms: usize) -> Self {
        Console { vms, focus: 0, escaped: false }
    }

    /// The VM with focus.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// Routes one byte typed on the console.
    pub fn route(&mut self, b: u8) -> Routed {
        if !self.escaped {
            if b == ESCAPE {
                self.escaped = true;
                return Routed::Nothing;
            }
            return if self.vms == 0 { Routed::Nothing } else { Routed::Input(self.focus, b) };
        }
        self.escaped = false;
        match b {
            ESCAPE if self.vms > 0 => Routed::Input(self.focus, ESCAPE),
            b'1'..=b'9' => {
                let vm = usize::from(b - b'1');
                if vm < self.vms {
                    self.focus = vm;
                    Routed::Focus(vm)
                } else {
                    Routed::Nothing
                }
            }
            _ => Routed::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_follows_focus_and_escapes_switch_it() {
        let mut c = Console::new(2);
        assert_eq!(c.route(b'a'), Routed::Input(0, b'a'));
        assert_eq!(c.route(ESCAPE), Routed::Nothing);
        assert_eq!(c.route(b'2'), Routed::Focus(1));
        assert_eq!(c.route(b'b'), Routed::Input(1, b'b'));
        assert_eq!((c.route(ESCAPE), c.route(ESCAPE)), (Routed::Nothing, Routed::Input(1, ESCAPE)));
        assert_eq!((c.route(ESCAPE), c.route(b'3')), (Routed::Nothing, Routed::Nothing), "no VM 3");
        assert_eq!(c.focus(), 1);
        assert_eq!((c.route(ESCAPE), c.route(b'x')), (Routed::Nothing, Routed::Nothing));
        assert_eq!(c.route(b'c'), Routed::Input(1, b'c'), "escape state ends after one byte");
        assert_eq!(Console::new(0).route(b'a'), Routed::Nothing);
    }
}
