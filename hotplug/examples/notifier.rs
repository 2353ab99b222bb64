//! A memory notifier on a simulated hotplug domain: it prints every event, refuses the first
//! offline of node 1, and the controller's masks and counters show what happened.
//!
//! ```sh
//! cargo run -p hotslab-hotplug --example notifier
//! ```

use hotslab_hotplug::{
    CallbackRef, HotplugDomain, LockKind, MemoryCallback, MemoryEvent, MemoryNotify, NodeId,
    NodeMask, NotifyError,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Printer {
    refused_once: AtomicBool,
}

impl MemoryCallback for Printer {
    fn name(&self) -> &'static str {
        "printer"
    }

    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        println!("  notifier: {:?} node {}", ev.event, ev.node.0);
        if ev.event == MemoryEvent::GoingOffline
            && ev.node.0 == 1
            && !self.refused_once.swap(true, Ordering::Relaxed)
        {
            println!("  notifier: refusing (objects still live)");
            return Err(NotifyError::Busy);
        }
        Ok(())
    }
}

fn main() {
    let n = NodeId::new;
    // Nodes 0..4 possible, 0 and 1 with memory at boot.
    let d = HotplugDomain::new(NodeMask::range(0, 4), NodeMask::range(0, 2), LockKind::Seed);
    let cb = Arc::new(Printer {
        refused_once: AtomicBool::new(false),
    });
    let _handle = d
        .register_notifier(CallbackRef::Shared(cb), 0)
        .expect("register");

    println!("online node 2:");
    d.online_node(n(2)).expect("online");
    println!("offline node 1 (refused):");
    println!("  -> {:?}", d.offline_node(n(1)));
    println!("offline node 1 again:");
    d.offline_node(n(1)).expect("offline");

    let s = d.snapshot();
    println!("has memory: {}  online: {}", s.has_memory, s.online);
    assert!(s.has_memory.test(n(2)) && !s.has_memory.test(n(1)));
    println!("{:?}", d.stats());
}
