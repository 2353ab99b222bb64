//! The main job: reproduce the race that `get_online_mems()` fixes.
//!
//! Runs cache create / destroy / shrink against node online / offline on a simulated 4-node
//! topology, in the three locking modes, with and without pause points, and prints a table of
//! violations per mode and race, then a slabinfo snapshot of a domain after hotplug traffic.
//!
//! ```text
//! cargo run --release -p hotslab --features pause-points --example race_demo [-- --trials N]
//! ```

use std::time::Instant;

use hotslab::numa::NodeId;
use hotslab::race::{self, Race, RaceReport};
use hotslab::{CacheConfig, LockingMode, SlabDomain, SlabInfoRow};

fn main() {
    let mut trials_paused = 200;
    let mut trials_free = 2000;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--trials") {
        if let Some(n) = args.get(i + 1).and_then(|s| s.parse().ok()) {
            trials_paused = n;
            trials_free = n * 10;
        }
    }
    if !hotslab::hotplug_api::pause::enabled() {
        eprintln!("note: built without the `pause-points` feature: the paused rows race without widened windows");
    }
    let start = Instant::now();
    println!("hotslab race demo: cache create/destroy/shrink racing node online/offline");
    println!(
        "topology: 4 simulated nodes over the real ones; node 3 is the one that comes and goes\n"
    );
    println!("{}", RaceReport::HEADER);
    let mut legacy_found = 0;
    let mut fixed_found = 0;
    for pauses in [true, false] {
        for mode in LockingMode::ALL {
            for race in Race::ALL {
                let n = if pauses { trials_paused } else { trials_free };
                match race::run(mode, race, pauses, n) {
                    Ok(r) => {
                        println!("{r}");
                        if mode == LockingMode::Legacy {
                            legacy_found += r.violating_trials;
                        } else {
                            fixed_found += r.violating_trials;
                        }
                        if r.stuck_pauses > 0 {
                            println!("  warning: {} pauses hit the safety limit", r.stuck_pauses);
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
    }
    println!();
    println!("Legacy (slab_mutex only): {legacy_found} violating trials; OnlineMems and SlabNodes: {fixed_found}.");

    // A slabinfo snapshot of a domain after hotplug traffic.
    let d = SlabDomain::simulated(4).expect("domain");
    let dentry = d
        .create_cache(CacheConfig::new("dentry", 192))
        .expect("cache");
    let inode = d
        .create_cache(CacheConfig::new("inode_cache", 600))
        .expect("cache");
    let mut live = Vec::new();
    for i in 0..4000u16 {
        live.push((0, dentry.alloc_node(NodeId::new(i % 4)).expect("alloc")));
        if i % 3 == 0 {
            live.push((
                1,
                inode.alloc_node(NodeId::new((i / 3) % 3)).expect("alloc"),
            ));
        }
    }
    let refused = d.offline_node(NodeId::new(3)).is_err();
    for (which, p) in live.drain(..) {
        if which == 0 {
            dentry.free(p).expect("free")
        } else {
            inode.free(p).expect("free")
        }
    }
    d.offline_node(NodeId::new(3))
        .expect("offline after the objects were freed");
    let kept: Vec<_> = (0..1000).map(|_| dentry.alloc().expect("alloc")).collect();
    println!("\nslabinfo after 4000 allocations on 4 nodes, an offline of node 3 refused while busy ({refused}), then accepted:");
    println!("{}", SlabInfoRow::HEADER);
    for row in d
        .slabinfo()
        .iter()
        .filter(|r| !r.name.starts_with("kmalloc-") || r.active_objs > 0)
    {
        println!("{row}");
    }
    for p in kept {
        dentry.free(p).expect("free");
    }
    println!(
        "\ninvariant I1 holds: {}; done in {:.1} s",
        d.check_invariants().ok(),
        start.elapsed().as_secs_f64()
    );
    if legacy_found == 0 || fixed_found != 0 {
        std::process::exit(1);
    }
}
