//! Firmware guests on the real kernel: EDK2's ArmVirtQemu (Debian's `qemu-efi-aarch64`,
//! `guests/uefi/fetch-firmware`) booted by capvisor from `configs/uefi.toml`, from its
//! read-only flash bank to the UEFI shell, driven through the console.
//!
//! What the boot proves, step by step: the firmware runs in place from flash bank 0, formats
//! its variable store in the writable bank 1 (CFI erase and buffered program through the
//! emulated flash), finds its console, timer, interrupt controller and clock in the generated
//! device tree, waits in its idle loop with interrupts unmasked (trapped `WFI`s that must go
//! on after the instruction), and reaches `Shell>`. Then the shell's `date` reads the PL031,
//! whose time starts at the bundle's build time, `ver` answers, and `reset -s` powers the VM
//! off through PSCI.
//!
//! Needs `$SEL4_PREFIX/bin/kernel.elf`, QEMU and the firmware (fetched once, as root, unless
//! `CAPVISOR_FETCH=0`); without them the test prints `skipped: <why>` (and fails under
//! `CAPVISOR_REQUIRE_KERNEL=1`, as CI runs it). The console log goes to
//! `<target>/tmp/firmware-test/uefi.log`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[macro_use]
mod common;
use common::workspace;

/// Boot to the shell: about 15 s under TCG on a quiet machine; a loaded 2-core CI machine
/// gets room.
const SHELL_TIMEOUT: Duration = Duration::from_secs(240);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The firmware (`guests/uefi/artifacts/QEMU_EFI.fd`), fetched if missing, or why not.
fn firmware() -> Result<PathBuf, String> {
    common::fetched("guests/uefi/artifacts", &["QEMU_EFI.fd"], "guests/uefi/fetch-firmware")
        .map(|d| d.join("QEMU_EFI.fd"))
}

/// A running capvisor: everything its console printed, as bytes, and its input.
struct Run {
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<Vec<u8>>>,
    log: PathBuf,
    start: Instant,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn save(&self) {
        let _ = std::fs::write(&self.log, self.seen.lock().unwrap().as_slice());
    }

    /// Waits until the console output from `from` on contains `what`; returns where it ends.
    fn until(&mut self, from: usize, what: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if let Some(i) = text.get(from..).and_then(|t| t.find(what)) {
                self.save();
                return from + i + what.len();
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                self.save();
                let _ = self.child.kill();
                panic!(
                    "waiting for {what:?}: not seen after {:.1} s; console log: {}",
                    self.start.elapsed().as_secs_f64(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `line` and Enter into the shell, a character at a time as a person would (the
    /// firmware polls its UART).
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("console input open");
        for b in line.bytes().chain(*b"\r") {
            stdin.write_all(&[b]).and_then(|()| stdin.flush()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

#[test]
fn capvisor_boots_uefi_firmware_to_its_shell() {
    let Some(prefix) = common::boot_prerequisites() else { return };
    need!(firmware());
    let dir = common::work_dir("firmware-test");
    let image = common::config_image(&prefix, &workspace().join("configs/uefi.toml"), None, &dir, "uefi");

    let mut child = Command::new(workspace().join("qemu/run-qemu.sh"))
        .args(common::platform_args())
        .arg("--timeout")
        .arg("600")
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu/run-qemu.sh");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let stdin = child.stdin.take();
    let mut run = Run { child, stdin, seen, log: dir.join("uefi.log"), start: Instant::now() };

    let at = run.until(0, "UEFI firmware", SHELL_TIMEOUT);
    let at = run.until(at, "BdsDxe: starting Boot0001 \"EFI Internal Shell\"", SHELL_TIMEOUT);
    let at = run.until(at, "Shell> ", SHELL_TIMEOUT);
    eprintln!("UEFI shell after {:.1} s of QEMU", run.start.elapsed().as_secs_f64());
    let text = run.text();
    assert!(!text.contains("Synchronous Exception"), "the firmware faulted; log: {}", run.log.display());
    assert!(!text.contains("not applied"), "a flash change was lost; log: {}", run.log.display());

    // The real-time clock: the shell's date is the bundle's (this build's) date.
    run.type_line("date");
    let end = run.until(at, "Shell> ", COMMAND_TIMEOUT);
    let answer = run.text()[at..end].to_string();
    let year_now = 1970 + SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 31_556_952;
    let year = answer
        .split(|c: char| !c.is_ascii_digit() && c != '/')
        .find_map(|w| {
            let p: Vec<&str> = w.split('/').collect();
            (p.len() == 3 && p[2].len() == 4).then(|| p[2].parse::<u64>().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no mm/dd/yyyy in the answer to date: {answer:?}"));
    assert!(year.abs_diff(year_now) <= 1, "the clock says {year}, it is {year_now}: {answer:?}");

    run.type_line("ver");
    let end2 = run.until(end, "Shell> ", COMMAND_TIMEOUT);
    assert!(run.text()[end..end2].contains("UEFI Interactive Shell"), "ver: {:?}", &run.text()[end..end2]);

    // reset -s: PSCI SYSTEM_OFF ends the VM, and with it the run.
    run.type_line("reset -s");
    run.until(end2, "capvisor: all VMs stopped", COMMAND_TIMEOUT);
    drop(run.stdin.take());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(s) = run.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "QEMU did not end; log: {}", run.log.display());
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    run.save();
    let text = run.text();
    assert!(text.contains("capvisor: VM \"uefi\" ended: powered off"), "log: {}", run.log.display());
    let reported: Option<i32> = text
        .split("capvisor: all VMs stopped, exit status ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok());
    assert_eq!(status.code(), reported, "QEMU ends with the root task's status; log: {}", run.log.display());
}
