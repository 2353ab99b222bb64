//! A minimal QMP (QEMU Machine Protocol) client: QEMU connects to a unix socket the host listens on
//! (so no polling for QEMU's socket to appear), then commands go out one JSON object per line and
//! replies / events come back one per line. Matching is textual on whitespace-free lines (`"id":"c3"`,
//! `"event":"DEVICE_DELETED"`): enough for the few commands the harness sends, no JSON library.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A connected QMP session in command mode.
pub struct Qmp {
    writer: UnixStream,
    rx: Receiver<(Instant, String)>,
    /// Events received so far (not yet waited for), with their arrival time.
    events: Vec<(Instant, String)>,
    next_id: u64,
    /// Every line sent and received, for the log.
    pub transcript: Vec<String>,
}

/// The line with all whitespace removed (QEMU prints `"key": value`).
fn compact(line: &str) -> String {
    line.chars().filter(|c| !c.is_whitespace()).collect()
}

impl Qmp {
    /// Waits up to `timeout` for QEMU to connect to `listener`, reads the greeting and enters command
    /// mode (`qmp_capabilities`).
    pub fn accept(listener: &UnixListener, timeout: Duration) -> io::Result<Qmp> {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "QEMU did not connect to the QMP socket",
            ));
        }
        let (stream, _) = listener.accept()?;
        let reader = stream.try_clone()?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("qmp-reader".into())
            .spawn(move || {
                let mut r = BufReader::new(reader);
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if tx
                                .send((Instant::now(), line.trim_end().to_string()))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            })?;
        let mut q = Qmp {
            writer: stream,
            rx,
            events: Vec::new(),
            next_id: 1,
            transcript: Vec::new(),
        };
        let greeting = q.next_line(Instant::now() + timeout)?;
        if !greeting.contains("\"QMP\"") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a QMP greeting: {greeting}"),
            ));
        }
        q.execute("qmp_capabilities", None, timeout)?;
        Ok(q)
    }

    fn next_line(&mut self, deadline: Instant) -> io::Result<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(wait) {
            Ok((t, line)) => {
                self.transcript.push(format!("<- {line}"));
                if compact(&line).contains("\"event\":") {
                    self.events.push((t, line.clone()));
                }
                Ok(line)
            }
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer from QEMU over QMP",
            )),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "QMP connection closed",
            )),
        }
    }

    /// Runs `command` with `arguments` (a JSON object, or none) and returns the reply line. A reply
    /// with `"error"` is an error.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<&str>,
        timeout: Duration,
    ) -> io::Result<String> {
        let id = format!("c{}", self.next_id);
        self.next_id += 1;
        let msg = match arguments {
            Some(a) => format!(r#"{{"execute":"{command}","arguments":{a},"id":"{id}"}}"#),
            None => format!(r#"{{"execute":"{command}","id":"{id}"}}"#),
        };
        self.transcript.push(format!("-> {msg}"));
        self.writer.write_all(msg.as_bytes())?;
        self.writer.write_all(b"\n")?;
        let deadline = Instant::now() + timeout;
        let want = format!("\"id\":\"{id}\"");
        loop {
            let line = self.next_line(deadline)?;
            let c = compact(&line);
            if !c.contains(&want) {
                continue;
            }
            if c.contains("\"error\":") {
                return Err(io::Error::other(format!("{command} failed: {line}")));
            }
            return Ok(line);
        }
    }

    /// Waits for an event named `name` whose line contains `needle` (whitespace-free match), returning
    /// its arrival time. Events that arrived earlier count.
    pub fn wait_event(
        &mut self,
        name: &str,
        needle: &str,
        timeout: Duration,
    ) -> io::Result<Instant> {
        let want = format!("\"event\":\"{name}\"");
        let needle = compact(needle);
        let matches = |l: &str| {
            let c = compact(l);
            c.contains(&want) && c.contains(&needle)
        };
        if let Some(i) = self.events.iter().position(|(_, l)| matches(l)) {
            return Ok(self.events.remove(i).0);
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.next_line(deadline)?;
            if let Some(i) = self.events.iter().position(|(_, l)| matches(l)) {
                return Ok(self.events.remove(i).0);
            }
        }
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // The reader thread holds a clone of the socket: shut the connection itself down, so both
        // ends see it closed (and the reader thread ends).
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake QEMU: connects, greets, answers commands by id, emits an event on device_del.
    fn fake_qemu(path: std::path::PathBuf) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let s = UnixStream::connect(path).unwrap();
            let mut w = s.try_clone().unwrap();
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut seen = Vec::new();
            for line in BufReader::new(s).lines() {
                let line = line.unwrap();
                let c = compact(&line);
                // The command's own id comes last (arguments may carry "id" keys too).
                let id = c
                    .rsplit("\"id\":\"")
                    .next()
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string();
                if c.contains("device_del") {
                    writeln!(w, r#"{{"timestamp": {{}}, "event": "DEVICE_DELETED", "data": {{"device": "dimm1"}}}}"#).unwrap();
                }
                if c.contains("bogus") {
                    writeln!(
                        w,
                        r#"{{"error": {{"class": "CommandNotFound"}}, "id": "{id}"}}"#
                    )
                    .unwrap();
                } else {
                    writeln!(w, r#"{{"return": {{}}, "id": "{id}"}}"#).unwrap();
                }
                seen.push(line);
            }
            seen
        })
    }

    #[test]
    fn talks_to_a_fake_qemu() {
        let dir = std::env::temp_dir().join(format!("hotslab-qmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let l = UnixListener::bind(&path).unwrap();
        let fake = fake_qemu(path);
        let t = Duration::from_secs(30);
        let mut q = Qmp::accept(&l, t).unwrap();
        q.execute(
            "object-add",
            Some(r#"{"qom-type":"memory-backend-ram","id":"hp1","size":1}"#),
            t,
        )
        .unwrap();
        q.execute("device_del", Some(r#"{"id":"dimm1"}"#), t)
            .unwrap();
        q.wait_event("DEVICE_DELETED", r#""device": "dimm1""#, t)
            .unwrap();
        let e = q.execute("bogus", None, t).unwrap_err();
        assert!(e.to_string().contains("CommandNotFound"));
        drop(q);
        let seen = fake.join().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(seen[0].contains("qmp_capabilities"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
