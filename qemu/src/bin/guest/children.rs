//! The default-allocator programs `hotslab-guest` runs beside itself: `hotslab-guest-alloc` (Rust,
//! `SlabAlloc` as global allocator) and `preload-guest` (C, `LD_PRELOAD=libhotslab.so`). Each is
//! started before the DIMM is added, told `added` / `removed` on its stdin, and its stdout is relayed
//! line by line to the console, where its `HOTSLAB CHECK` lines count as this program's checks. Its
//! `HOTSLAB STAGE <who> <stage>` lines are what the driver waits for.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hotslab_qemu::guestkit::{parse_check, parse_stage, Reporter};

/// The Rust program.
pub const ALLOC_BIN: &str = "/hotslab-guest-alloc";
/// The C program.
pub const PRELOAD_BIN: &str = "/preload-guest";
/// libhotslab.so inside the guest.
pub const PRELOAD_LIB: &str = "/lib/libhotslab.so";
/// The host's numactl, packed with its libraries.
pub const NUMACTL: &str = "/usr/bin/numactl";

/// One running child program.
pub struct ChildProg {
    /// `SlabAlloc` or `LD_PRELOAD` (the prefix of its check names and the name in its stage lines).
    pub who: &'static str,
    /// The prefix of its `<label>.completed` check.
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stages: Receiver<String>,
    relay: Option<JoinHandle<(u32, u32)>>,
    done: bool,
}

impl ChildProg {
    /// Starts `cmd` with piped stdin/stdout and a relay thread for its output.
    pub fn spawn(who: &'static str, label: String, mut cmd: Command) -> Result<ChildProg, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout pipe")?;
        let stdin = child.stdin.take();
        let (tx, stages) = mpsc::channel();
        let relay = std::thread::Builder::new()
            .name(format!("relay-{who}"))
            .spawn(move || {
                let (mut checks, mut failed) = (0, 0);
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    println!("{l}");
                    match parse_check(&l) {
                        Some(ok) => {
                            checks += 1;
                            failed += u32::from(!ok);
                        }
                        None => {
                            if let Some((w, st)) = parse_stage(&l) {
                                if w == who {
                                    let _ = tx.send(st.to_string());
                                }
                            }
                        }
                    }
                }
                (checks, failed)
            })
            .map_err(|e| format!("relay thread: {e}"))?;
        Ok(ChildProg {
            who,
            label,
            child,
            stdin,
            stages,
            relay: Some(relay),
            done: false,
        })
    }

    /// Sends one command line.
    pub fn send(&mut self, cmd: &str) -> bool {
        match self.stdin.as_mut() {
            Some(w) => writeln!(w, "{cmd}").and_then(|()| w.flush()).is_ok(),
            None => false,
        }
    }

    /// Waits until the child reports `want` (false if it reports `done` first, exits or times out).
    pub fn wait_stage(&mut self, want: &str, timeout: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            let left = timeout.saturating_sub(t.elapsed());
            match self.stages.recv_timeout(left) {
                Ok(s) if s == want => return Ok(t.elapsed()),
                Ok(s) if s == "done" => {
                    self.done = true;
                    return Err(format!("finished before `{want}`"));
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no `{want}` within {} s", timeout.as_secs()))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("output ended before `{want}`"))
                }
            }
        }
    }

    /// Closes stdin, waits for the exit and the relay, adds the relayed checks to `r` and checks
    /// `<label>.completed`: the program reached `done` and exited with status 0.
    pub fn finish(mut self, r: &mut Reporter) {
        let done = self.done || self.wait_stage("done", Duration::from_secs(120)).is_ok();
        self.stdin = None;
        if !done {
            // Hung or lost: do not wait for it forever.
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        let (checks, failed) = self
            .relay
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or((0, 0));
        r.checks += checks;
        r.failed += failed;
        let exited_ok = status.as_ref().is_ok_and(|s| s.success());
        r.check(
            &format!("{}.completed", self.label),
            done && exited_ok && checks > 0,
            format!(
                "reached done={done}, exit {:?}, {checks} checks relayed ({failed} failed)",
                status.map(|s| s.to_string())
            ),
        );
    }
}

impl Drop for ChildProg {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts both programs; a program that cannot start is a failed `<who>.spawn` check.
pub fn start_all(r: &mut Reporter) -> Vec<ChildProg> {
    let mut out = Vec::new();
    let alloc = Command::new(ALLOC_BIN);
    let mut preload = Command::new(PRELOAD_BIN);
    preload.env("LD_PRELOAD", PRELOAD_LIB);
    for (who, cmd) in [("SlabAlloc", alloc), ("LD_PRELOAD", preload)] {
        match ChildProg::spawn(who, who.to_string(), cmd) {
            Ok(c) => out.push(c),
            Err(e) => {
                r.check(&format!("{who}.spawn"), false, e);
            }
        }
    }
    out
}

/// Waits for every child to reach `stage`, as one check `children.<stage>`; a child that does not
/// get there is dropped (killed) from `kids`.
pub fn wait_all(r: &mut Reporter, kids: &mut Vec<ChildProg>, stage: &str, timeout: Duration) {
    let mut detail = Vec::new();
    let mut ok = !kids.is_empty();
    let mut keep = Vec::new();
    for mut k in kids.drain(..) {
        match k.wait_stage(stage, timeout) {
            Ok(t) => {
                detail.push(format!("{} after {} ms", k.who, t.as_millis()));
                keep.push(k);
            }
            Err(e) => {
                ok = false;
                detail.push(format!("{}: {e}", k.who));
                k.finish(r);
            }
        }
    }
    *kids = keep;
    r.check(&format!("children.{stage}"), ok, detail.join(", "));
}

/// Tells every child that the DIMM is there. `SlabAlloc` first: it reports `followed` once its own
/// default domain has seen node 2 gain memory (a check of its own), and only then is the C program
/// told. Both allocators follow the same kernel events, and the C program has no way to ask its
/// allocator, so it starts once another process's default domain has provably caught up.
pub fn send_added(kids: &mut [ChildProg]) {
    for k in kids.iter_mut().filter(|k| k.who == "SlabAlloc") {
        if k.send("added") {
            let _ = k.wait_stage("followed", Duration::from_secs(30));
        }
    }
    for k in kids.iter_mut().filter(|k| k.who != "SlabAlloc") {
        k.send("added");
    }
}

/// Sends `cmd` to every child.
pub fn send_all(kids: &mut [ChildProg], cmd: &str) {
    for k in kids {
        k.send(cmd);
    }
}

/// After the add: each program once more as a fresh process under the real `numactl`
/// (`--membind=2`, `--preferred=2`, `--interleave=0,1`, all with `--physcpubind=0`), in its
/// `--oneshot` mode: `<who>.numactl.<policy>.*` checks, then `<who>.numactl.<policy>.completed`.
/// The C program gets `LD_PRELOAD` through `env`, so numactl itself runs on glibc's malloc.
pub fn run_numactl(r: &mut Reporter) {
    for (policy, arg) in [
        ("membind", "--membind=2"),
        ("preferred", "--preferred=2"),
        ("interleave", "--interleave=0,1"),
    ] {
        for who in ["SlabAlloc", "LD_PRELOAD"] {
            let mut cmd = Command::new(NUMACTL);
            cmd.args([arg, "--physcpubind=0"]);
            if who == "SlabAlloc" {
                cmd.arg(ALLOC_BIN);
            } else {
                cmd.args([
                    "/bin/env",
                    &format!("LD_PRELOAD={PRELOAD_LIB}"),
                    PRELOAD_BIN,
                ]);
            }
            cmd.args(["--oneshot", policy]);
            let label = format!("{who}.numactl.{policy}");
            match ChildProg::spawn(who, label.clone(), cmd) {
                Ok(c) => c.finish(r),
                Err(e) => {
                    r.check(&format!("{label}.completed"), false, e);
                }
            }
        }
    }
}
