//! The main entry points in one program: hotslab as the global allocator, a cache of one's
//! own, node-explicit allocation, and a simulated node going offline and coming back while the
//! caches follow. Runs on any machine (the extra nodes are simulated):
//!
//! ```sh
//! cargo run --release -p hotslab --example quickstart
//! ```

use hotslab::numa::NodeId;
use hotslab::{CacheConfig, DomainConfig, PartState, SlabDomain};

#[global_allocator]
static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();

fn main() {
    // 1. Every Vec and String of this program comes from hotslab's kmalloc caches.
    let words: Vec<String> = (0..100_000).map(|i| format!("w{i}")).collect();
    let st = hotslab::heap_stats().expect("default domain");
    println!(
        "global allocator: {} allocations served, {} KiB of slab slots in use",
        st.allocs,
        st.slab_used_bytes / 1024
    );
    drop(words);
    println!("trim: {} KiB given back", hotslab::trim() / 1024);

    // 2. A domain of four simulated nodes (without kmalloc caches, to keep its slabinfo short)
    //    and a cache of 192-byte objects.
    let config = DomainConfig {
        kmalloc: false,
        ..DomainConfig::default()
    };
    let d = SlabDomain::simulated_with(4, config).expect("simulated domain");
    let dentry = d
        .create_cache(CacheConfig::new("dentry", 192))
        .expect("create");

    // 3. Node-explicit allocation: one object from every node's part.
    let objs: Vec<_> = (0..4)
        .map(|n| dentry.alloc_node(NodeId::new(n)).expect("alloc_node"))
        .collect();
    for o in &objs {
        println!("object {:p} on node {:?}", o.as_ptr(), dentry.node_of(*o));
    }

    // 4. Hotplug: node 3 holds an object, so a refusable offline is refused...
    let n3 = NodeId::new(3);
    match d.offline_node(n3) {
        Err(e) => println!("offline node 3 refused: {e:?}"),
        Ok(()) => println!("offline node 3 accepted"),
    }
    // ... the forced one (what the kernel does) drains node 3's part instead.
    d.offline_node_forced(n3).expect("forced offline");
    println!("node 3 after forced offline: {:?}", dentry.part_state(n3));
    for o in objs {
        dentry.free(o).expect("free");
    }
    println!(
        "node 3 after its last object is freed: {:?}",
        dentry.part_state(n3)
    );
    d.online_node(n3).expect("online");
    assert_eq!(dentry.part_state(n3), Some(PartState::Live));
    assert!(d.check_invariants().ok());
    println!("node 3 back online: {:?}", dentry.part_state(n3));

    // 5. /proc/slabinfo of the domain, then the cache goes away.
    let mut table = String::new();
    d.write_slabinfo(&mut table).expect("slabinfo");
    print!("{table}");
    dentry.shrink().expect("shrink");
    dentry.destroy().expect("destroy");
}
