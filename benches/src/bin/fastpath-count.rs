//! A minimal program for exact instruction counts under `valgrind --tool=callgrind`:
//! `fastpath-count ALLOCATOR PAIRS` does 1000 warm-up pairs, then PAIRS hot 16-256 B alloc+free
//! pairs with that allocator. The runner runs it twice and divides the difference by the pairs.

use std::process::ExitCode;

use hotslab_benches::{with_peer, workloads::hot_pairs};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(which), Some(n)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!(
            "usage: fastpath-count ALLOCATOR PAIRS (allocators: {:?})",
            hotslab_benches::peers::PEER_NAMES
        );
        return ExitCode::from(2);
    };
    let done = with_peer!(which.as_str(), |a| hot_pairs(a, 0, 1000)
        + hot_pairs(a, 0, n));
    match done {
        Some(ok) if ok == n + 1000 => {
            println!("fastpath-count allocator={which} pairs={n}");
            ExitCode::SUCCESS
        }
        Some(ok) => {
            eprintln!("{which}: only {ok} of {} pairs succeeded", n + 1000);
            ExitCode::FAILURE
        }
        None => {
            eprintln!("unknown allocator {which}");
            ExitCode::from(2)
        }
    }
}
