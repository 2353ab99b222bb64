//! Draws the four pictures at the top of `benches/RESULTS.md` (fast path, threads, memory,
//! hotplug) from the tables the reports already hold (`RESULTS.md`, `RESULTS-workloads.md`,
//! `RESULTS-capi.md`) and puts the standard-workload summary and the pictures in a generated
//! block under the title. Runs no benchmark.
//!
//! ```sh
//! cargo run -p hotslab-benches --release --bin results-plots            # rewrite benches/plot-*.svg and the block
//! cargo run -p hotslab-benches --release --bin results-plots -- --check # exit 1 if they are out of date
//! cargo run -p hotslab-benches --release --bin results-plots -- --dir D # reports in D instead of benches/
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut check = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => check = true,
            "--dir" => match it.next() {
                Some(d) => dir = PathBuf::from(d),
                None => {
                    eprintln!("results-plots: --dir needs a directory");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("usage: results-plots [--check] [--dir DIR]");
                return ExitCode::from(2);
            }
        }
    }
    match hotslab_benches::plots::refresh_results(&dir, check) {
        Ok(stale) if check && !stale.is_empty() => {
            eprintln!(
                "results-plots: out of date in {}: {} (run `cargo run -p hotslab-benches --release --bin results-plots`)",
                dir.display(),
                stale.join(", ")
            );
            ExitCode::FAILURE
        }
        Ok(files) => {
            if check {
                eprintln!("results-plots: {} is up to date", dir.display());
            } else {
                for f in &files {
                    eprintln!("results-plots: wrote {}", dir.join(f).display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("results-plots: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
