//! The line protocol between the guest test program and the host driver, over the guest's serial
//! console: every line the host acts on starts with `HOTSLAB`. It also collects the guest's lines into a
//! report. Pure text handling; no I/O.

use std::collections::BTreeMap;
use std::fmt;

/// The marker every protocol line starts with (kernel messages may precede it on the same line).
pub const PREFIX: &str = "HOTSLAB ";

/// One protocol line from the guest.
#[derive(Clone, Debug, PartialEq)]
pub enum GuestLine {
    /// The init script is up (`HOTSLAB BOOTED <kernel release>`).
    Booted(String),
    /// The guest waits for the host to hot-add the DIMM of cycle `n`.
    ReadyAdd(u32),
    /// The guest waits for the host to remove the DIMM of cycle `n`.
    ReadyRemove(u32),
    /// The follower brought node 2 online (`true`) / took it offline (`false`) in cycle `n`.
    Seen { online: bool, cycle: u32 },
    /// A check and its outcome.
    Check {
        /// Passed?
        ok: bool,
        /// Short name (no spaces).
        name: String,
        /// Numbers and words explaining it.
        detail: String,
    },
    /// A measured value.
    Value {
        /// Key (no spaces).
        key: String,
        /// Value.
        value: String,
    },
    /// The guest program finished.
    Done {
        /// All checks passed.
        pass: bool,
    },
    /// The guest program exited with this status (printed by the init script).
    Exit(i32),
}

/// Finds and parses a protocol line in `line` (which may carry console noise before the marker).
pub fn parse_line(line: &str) -> Option<GuestLine> {
    let at = line.find(PREFIX)?;
    let rest = line[at + PREFIX.len()..].trim_end();
    let mut words = rest.splitn(2, ' ');
    let verb = words.next()?;
    let tail = words.next().unwrap_or("");
    let mut parts = tail.split_whitespace();
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u32>().ok());
    Some(match verb {
        "BOOTED" => GuestLine::Booted(tail.to_string()),
        "READY" => match parts.next()? {
            "add" => GuestLine::ReadyAdd(num(parts.next())?),
            "remove" => GuestLine::ReadyRemove(num(parts.next())?),
            _ => return None,
        },
        "SEEN" => {
            let online = match parts.next()? {
                "online" => true,
                "offline" => false,
                _ => return None,
            };
            GuestLine::Seen {
                online,
                cycle: num(parts.next())?,
            }
        }
        "CHECK" => {
            let mut w = tail.splitn(3, ' ');
            let ok = match w.next()? {
                "ok" => true,
                "FAIL" => false,
                _ => return None,
            };
            let name = w.next()?.to_string();
            let detail = w.next().unwrap_or("").to_string();
            GuestLine::Check { ok, name, detail }
        }
        "VALUE" => {
            let mut w = tail.splitn(2, ' ');
            let key = w.next()?.to_string();
            let value = w.next().unwrap_or("").to_string();
            GuestLine::Value { key, value }
        }
        "DONE" => GuestLine::Done {
            pass: match parts.next()? {
                "pass" => true,
                "fail" => false,
                _ => return None,
            },
        },
        "EXIT" => GuestLine::Exit(parts.next()?.parse().ok()?),
        _ => return None,
    })
}

/// A check the guest reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Passed?
    pub ok: bool,
    /// Name.
    pub name: String,
    /// Detail.
    pub detail: String,
}

/// Everything the guest reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestReport {
    /// The guest kernel release.
    pub kernel: Option<String>,
    /// Checks, in order.
    pub checks: Vec<Check>,
    /// Values by key (a later value of the same key replaces the earlier one).
    pub values: BTreeMap<String, String>,
    /// The final verdict, if the program got that far.
    pub done: Option<bool>,
    /// The program's exit status, if the init script printed it.
    pub exit: Option<i32>,
}

impl GuestReport {
    /// Takes in one parsed line.
    pub fn add(&mut self, line: &GuestLine) {
        match line {
            GuestLine::Booted(k) => self.kernel = Some(k.clone()),
            GuestLine::Check { ok, name, detail } => self.checks.push(Check {
                ok: *ok,
                name: name.clone(),
                detail: detail.clone(),
            }),
            GuestLine::Value { key, value } => {
                self.values.insert(key.clone(), value.clone());
            }
            GuestLine::Done { pass } => self.done = Some(*pass),
            GuestLine::Exit(code) => self.exit = Some(*code),
            GuestLine::ReadyAdd(_) | GuestLine::ReadyRemove(_) | GuestLine::Seen { .. } => {}
        }
    }

    /// The checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    /// Did the guest finish with every check passing (and at least one check)?
    pub fn passed(&self) -> bool {
        self.done == Some(true) && !self.checks.is_empty() && self.failures().is_empty()
    }

    /// A value parsed as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.values
            .get(key)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Is there a passed check with this name?
    pub fn has_passed(&self, name: &str) -> bool {
        self.checks.iter().any(|c| c.ok && c.name == name)
    }
}

impl fmt::Display for GuestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "guest kernel {}: {} checks, {} failed, done={:?}, exit={:?}",
            self.kernel.as_deref().unwrap_or("?"),
            self.checks.len(),
            self.failures().len(),
            self.done,
            self.exit
        )?;
        for c in self.failures() {
            writeln!(f, "  FAIL {} {}", c.name, c.detail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_line_kind_even_after_console_noise() {
        assert_eq!(
            parse_line("HOTSLAB BOOTED 6.1.0-56-amd64"),
            Some(GuestLine::Booted("6.1.0-56-amd64".into()))
        );
        assert_eq!(
            parse_line("HOTSLAB READY add 2\r"),
            Some(GuestLine::ReadyAdd(2))
        );
        assert_eq!(
            parse_line("[   12.3] random kernel text HOTSLAB READY remove 1"),
            Some(GuestLine::ReadyRemove(1))
        );
        assert_eq!(
            parse_line("HOTSLAB SEEN offline 1"),
            Some(GuestLine::Seen {
                online: false,
                cycle: 1
            })
        );
        assert_eq!(
            parse_line("HOTSLAB CHECK FAIL placement.hp-64 99.1 % on node 2"),
            Some(GuestLine::Check {
                ok: false,
                name: "placement.hp-64".into(),
                detail: "99.1 % on node 2".into()
            })
        );
        assert_eq!(
            parse_line("HOTSLAB VALUE objects_checked 1234"),
            Some(GuestLine::Value {
                key: "objects_checked".into(),
                value: "1234".into()
            })
        );
        assert_eq!(
            parse_line("HOTSLAB DONE pass"),
            Some(GuestLine::Done { pass: true })
        );
        assert_eq!(parse_line("HOTSLAB EXIT 0"), Some(GuestLine::Exit(0)));
        for junk in [
            "",
            "HOTSLAB",
            "HOTSLAB READY",
            "HOTSLAB READY add x",
            "HOTSLAB DONE maybe",
            // A child program's stage line is for the guest driver, not the host.
            "HOTSLAB STAGE SlabAlloc armed",
            "x",
        ] {
            assert_eq!(parse_line(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn report_collects_and_judges() {
        let mut r = GuestReport::default();
        assert!(!r.passed());
        for l in [
            "HOTSLAB BOOTED 6.1",
            "HOTSLAB CHECK ok a 1",
            "HOTSLAB VALUE pct 99.5 %",
            "HOTSLAB DONE pass",
        ] {
            r.add(&parse_line(l).unwrap());
        }
        assert!(r.passed());
        assert_eq!(r.number("pct"), Some(99.5));
        assert!(r.has_passed("a"));
        r.add(&parse_line("HOTSLAB CHECK FAIL b x").unwrap());
        assert!(!r.passed());
        assert!(r.to_string().contains("FAIL b x"));
    }
}
