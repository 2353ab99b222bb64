//! `hotslab-qemu`: runs the QEMU hotplug harness from the command line and prints the guest's report.
//! Options: `--cycles N`, `--install` (apt-get the missing packages), `--shell` (boot to a guest shell),
//! `--echo` (show the guest console), `--dump-uevents` (log raw uevents),
//! `--timeout SECS`. Exit status 0 only if every guest check passed.

use hotslab_qemu::host::{run, Options};
use std::time::Duration;

fn main() {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cycles" => {
                opts.cycles = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(opts.cycles)
            }
            "--timeout" => {
                if let Some(s) = args.next().and_then(|v| v.parse().ok()) {
                    opts.timeout = Duration::from_secs(s);
                }
            }
            "--install" => opts.install = true,
            "--shell" => opts.shell = true,
            "--echo" => opts.echo = true,
            "--dump-uevents" => opts.dump_uevents = true,
            "-h" | "--help" => {
                eprintln!("usage: hotslab-qemu [--cycles N] [--install] [--shell] [--echo] [--dump-uevents] [--timeout SECS]");
                return;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    match run(&opts) {
        Ok(out) => {
            for c in &out.report.checks {
                println!(
                    "{} {} {}",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.name,
                    c.detail
                );
            }
            for (k, v) in &out.report.values {
                println!("value {k} = {v}");
            }
            print!("{out}");
            std::process::exit(if out.report.passed() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("hotslab-qemu: {e}");
            std::process::exit(3);
        }
    }
}
