//! A guest's shell on the console of a QEMU run: console lines read on a thread and stamped
//! with the time since the start, commands typed, each command's exit status read back from
//! a line it prints. For the suites and benchmarks that drive Linux through a script of
//! commands (`smp`); `linux.rs` has its own console with the keys and the line editing.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// A running QEMU whose console carries a shell.
pub struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    start: Instant,
    /// Every console line so far, with its time since the start.
    pub lines: Vec<(Duration, String)>,
    /// Where [`Shell::save`] writes the stamped log.
    pub log: PathBuf,
}

impl Shell {
    /// Starts `cmd` (QEMU, its console on stdio), its log to go to `log`.
    pub fn start(mut cmd: Command, log: PathBuf) -> Shell {
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                if tx.send(text).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Shell { child, stdin, rx, start, lines: Vec::new(), log }
    }

    /// Reads lines until one satisfies `done`; its time since the start. On a timeout or the
    /// end of the output, the log is saved and the error names `what` and the log.
    pub fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let t = self.start.elapsed();
                    let hit = done(&line);
                    self.lines.push((t, line));
                    if hit {
                        return Ok(t);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.save();
                    return Err(format!("no {what} within {} s; log: {}", timeout.as_secs(), self.log.display()));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.save();
                    return Err(format!("the run ended before {what}; log: {}", self.log.display()));
                }
            }
        }
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(format!("{line}\n").as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Once the guest printed its marker: types a probe every two seconds until the shell
    /// answers it, so that later commands are not typed before the shell reads.
    pub fn ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.type_line("echo capvisor-shell-$((40 + 2))");
            if self.until("the shell", Duration::from_secs(2), |l| l.trim() == "capvisor-shell-42").is_ok() {
                return Ok(());
            }
        }
        self.save();
        Err(format!("the shell did not answer within {} s; log: {}", timeout.as_secs(), self.log.display()))
    }

    /// Runs `cmd` in the shell: the lines it printed (the typed line's echo left out) and its
    /// exit status.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(Vec<String>, i32), String> {
        let from = self.lines.len();
        self.type_line(&format!("{cmd}; echo capvisor-status-$?"));
        let is_status = |l: &str| l.trim().strip_prefix("capvisor-status-").is_some_and(|n| n.parse::<i32>().is_ok());
        self.until(&format!("the end of `{cmd}`"), timeout, is_status)?;
        let (_, last) = self.lines.last().expect("the status line");
        let status = last.trim().trim_start_matches("capvisor-status-").parse().unwrap_or(-1);
        let out = self.lines[from..self.lines.len() - 1]
            .iter()
            .map(|(_, l)| l.clone())
            .filter(|l| !l.contains("echo capvisor-status-"))
            .collect();
        Ok((out, status))
    }

    /// Waits up to `timeout` for the run to end (reading the rest of its lines); kills it
    /// after that. Its exit status and the log saved.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<(Duration, String)>) {
        drop(self.stdin.take());
        let _ = self.until("the end of the run", timeout, |_| false);
        let status = match self.child.try_wait() {
            Ok(Some(s)) => s,
            _ => {
                let _ = self.child.kill();
                self.child.wait().expect("wait for QEMU")
            }
        };
        self.save();
        (status, std::mem::take(&mut self.lines))
    }

    /// Writes the stamped log.
    pub fn save(&self) {
        let mut text = String::new();
        for (t, l) in &self.lines {
            text.push_str(&format!("[{:8.3}] {l}\n", t.as_secs_f64()));
        }
        let _ = std::fs::write(&self.log, text);
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
