//! The Linux backend's follower thread end to end without a kernel: recorded uevents sent over a datagram
//! socket and a fake sysfs tree that the test rewrites as the kernel would. Checks the thread's mapping to
//! the controller, the wake-ups (events, rescan requests, periodic timer) and a clean stop. Owns no library
//! code.
#![cfg(all(target_os = "linux", not(loom)))]

use hotslab_hotplug::linux::{
    follow, FakeSysfs, FollowConfig, FollowStatus, MemsAllowed, UeventSource,
};
use hotslab_hotplug::{
    CallbackRef, HotplugDomain, LockKind, MemoryCallback, MemoryEvent, MemoryNotify, NodeId,
    NodeMask, NodeStateSnapshot, NotifyError,
};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Generous: only reached if the follower is broken.
const WAIT: Duration = Duration::from_secs(30);

fn n(id: u16) -> NodeId {
    NodeId::new(id)
}

fn masks(online: NodeMask, has_memory: NodeMask) -> NodeStateSnapshot {
    NodeStateSnapshot {
        possible: NodeMask::range(0, 3),
        online,
        has_memory,
        has_normal_memory: NodeMask::range(0, 2).intersection(&has_memory),
    }
}

/// What Linux 6.1 sent in the QEMU guest when a 512 MiB pc-dimm was hot-added on node 2 (blocks 32-35,
/// `memhp_default_state=online`), recorded with `hotslab-qemu --dump-uevents`.
const RECORDED_HOT_ADD: [&[u8]; 9] = [
    b"add@/devices/system/memory/memory32\0ACTION=add\0DEVPATH=/devices/system/memory/memory32\0SUBSYSTEM=memory\0SEQNUM=658\0",
    b"add@/devices/system/memory/memory33\0ACTION=add\0DEVPATH=/devices/system/memory/memory33\0SUBSYSTEM=memory\0SEQNUM=659\0",
    b"add@/devices/system/memory/memory34\0ACTION=add\0DEVPATH=/devices/system/memory/memory34\0SUBSYSTEM=memory\0SEQNUM=660\0",
    b"add@/devices/system/memory/memory35\0ACTION=add\0DEVPATH=/devices/system/memory/memory35\0SUBSYSTEM=memory\0SEQNUM=661\0",
    b"add@/devices/system/node/node2\0ACTION=add\0DEVPATH=/devices/system/node/node2\0SUBSYSTEM=node\0SEQNUM=662\0",
    b"online@/devices/system/memory/memory32\0ACTION=online\0DEVPATH=/devices/system/memory/memory32\0SUBSYSTEM=memory\0SEQNUM=663\0",
    b"online@/devices/system/memory/memory33\0ACTION=online\0DEVPATH=/devices/system/memory/memory33\0SUBSYSTEM=memory\0SEQNUM=664\0",
    b"online@/devices/system/memory/memory34\0ACTION=online\0DEVPATH=/devices/system/memory/memory34\0SUBSYSTEM=memory\0SEQNUM=665\0",
    b"online@/devices/system/memory/memory35\0ACTION=online\0DEVPATH=/devices/system/memory/memory35\0SUBSYSTEM=memory\0SEQNUM=666\0",
];

/// ... and when it was removed with `device_del` (the kernel offlined the blocks itself, then removed
/// them and the node).
const RECORDED_REMOVE: [&[u8]; 9] = [
    b"offline@/devices/system/memory/memory32\0ACTION=offline\0DEVPATH=/devices/system/memory/memory32\0SUBSYSTEM=memory\0SEQNUM=667\0",
    b"offline@/devices/system/memory/memory33\0ACTION=offline\0DEVPATH=/devices/system/memory/memory33\0SUBSYSTEM=memory\0SEQNUM=668\0",
    b"offline@/devices/system/memory/memory34\0ACTION=offline\0DEVPATH=/devices/system/memory/memory34\0SUBSYSTEM=memory\0SEQNUM=669\0",
    b"offline@/devices/system/memory/memory35\0ACTION=offline\0DEVPATH=/devices/system/memory/memory35\0SUBSYSTEM=memory\0SEQNUM=670\0",
    b"remove@/devices/system/memory/memory32\0ACTION=remove\0DEVPATH=/devices/system/memory/memory32\0SUBSYSTEM=memory\0SEQNUM=671\0",
    b"remove@/devices/system/memory/memory33\0ACTION=remove\0DEVPATH=/devices/system/memory/memory33\0SUBSYSTEM=memory\0SEQNUM=672\0",
    b"remove@/devices/system/memory/memory34\0ACTION=remove\0DEVPATH=/devices/system/memory/memory34\0SUBSYSTEM=memory\0SEQNUM=673\0",
    b"remove@/devices/system/memory/memory35\0ACTION=remove\0DEVPATH=/devices/system/memory/memory35\0SUBSYSTEM=memory\0SEQNUM=674\0",
    b"remove@/devices/system/node/node2\0ACTION=remove\0DEVPATH=/devices/system/node/node2\0SUBSYSTEM=node\0SEQNUM=675\0",
];

type Log = Arc<Mutex<Vec<(MemoryEvent, u16, bool)>>>;

struct Recorder(Log);

impl MemoryCallback for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn notify(&self, e: &MemoryNotify) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push((e.event, e.node.0, e.forced));
        Ok(())
    }
}

struct Rig {
    fake: FakeSysfs,
    domain: Arc<HotplugDomain>,
    log: Log,
}

fn rig() -> Rig {
    let fake = FakeSysfs::new().unwrap();
    let boot = masks(NodeMask::range(0, 2), NodeMask::range(0, 2));
    fake.set_masks(&boot).unwrap();
    fake.set_node(n(0), "0", 512 << 20, &[10, 20]).unwrap();
    fake.set_node(n(1), "1", 512 << 20, &[20, 10]).unwrap();
    let domain = Arc::new(HotplugDomain::with_states(boot, LockKind::PerCpu));
    let log: Log = Arc::default();
    let _ = domain
        .register_notifier(CallbackRef::Shared(Arc::new(Recorder(log.clone()))), 0)
        .unwrap();
    Rig { fake, domain, log }
}

fn has_memory_2(s: &FollowStatus) -> bool {
    s.domain.has_memory.test(n(2))
}

#[test]
fn the_thread_follows_recorded_hot_add_and_remove() {
    use MemoryEvent::*;
    let r = rig();
    let (tx, rx) = UnixDatagram::pair().unwrap();
    // A long timer: every change below must come from the events.
    let cfg = FollowConfig::default()
        .sysfs_root(r.fake.root())
        .mems_allowed(MemsAllowed::Ignore)
        .source(UeventSource::Datagram(rx))
        .rescan_interval(Duration::from_secs(3600));
    let h = follow(r.domain.clone(), cfg).unwrap();
    let st = h.status();
    assert!(st.running && st.in_sync());
    assert_eq!(
        st.stats.scans, 1,
        "the start scan ran before follow() returned"
    );
    assert_eq!(st.kernel.unwrap().has_memory, NodeMask::range(0, 2));
    assert_eq!(st.view.as_ref().unwrap().nodes.len(), 2);

    // Hot-add: the kernel updates sysfs, then sends the burst.
    r.fake
        .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 3)))
        .unwrap();
    r.fake.set_node(n(2), "", 512 << 20, &[20, 20, 10]).unwrap();
    for m in RECORDED_HOT_ADD {
        tx.send(m).unwrap();
    }
    let st = h
        .wait_until(WAIT, has_memory_2)
        .expect("node 2 came online");
    assert_eq!(st.stats.onlined, 1);
    assert!(!st.domain.has_normal_memory.test(n(2)));
    assert_eq!(
        r.log.lock().unwrap().as_slice(),
        [(GoingOnline, 2, false), (Online, 2, false)]
    );
    let st = h.wait_until(WAIT, |s| s.stats.relevant == 9).unwrap();
    assert_eq!(st.stats.onlined, 1, "nine events, one online");

    // Removal: blocks offline (node 2 leaves has_memory), then disappear.
    r.fake
        .set_masks(&masks(NodeMask::range(0, 2), NodeMask::range(0, 2)))
        .unwrap();
    r.fake.remove_node(n(2)).unwrap();
    for m in RECORDED_REMOVE {
        tx.send(m).unwrap();
    }
    let st = h
        .wait_until(WAIT, |s| !has_memory_2(s) && s.stats.relevant == 18)
        .expect("node 2 went offline");
    assert_eq!(st.stats.offlined, 1);
    assert_eq!(st.stats.seqnum_gaps, 0);
    assert!(st.in_sync());
    assert_eq!(
        r.log.lock().unwrap()[2..],
        [(GoingOffline, 2, true), (Offline, 2, true)]
    );

    let fin = h.stop();
    assert!(!fin.running);
}

#[test]
fn a_rescan_request_and_the_timer_catch_changes_no_event_announced() {
    let r = rig();
    let (_tx, rx) = UnixDatagram::pair().unwrap();
    let cfg = FollowConfig::default()
        .sysfs_root(r.fake.root())
        .mems_allowed(MemsAllowed::Ignore)
        .source(UeventSource::Datagram(rx))
        .rescan_interval(Duration::from_secs(3600));
    let h = follow(r.domain.clone(), cfg).unwrap();
    r.fake
        .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 3)))
        .unwrap();
    h.rescan();
    let st = h.wait_until(WAIT, has_memory_2).expect("rescan saw node 2");
    assert_eq!(st.stats.relevant, 0);
    drop(h);

    // Periodic only (no event source at all), with a short timer.
    r.fake
        .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 2)))
        .unwrap();
    let cfg = FollowConfig::default()
        .sysfs_root(r.fake.root())
        .mems_allowed(MemsAllowed::Ignore)
        .source(UeventSource::None)
        .rescan_interval(Duration::from_millis(5));
    let h = follow(r.domain.clone(), cfg).unwrap();
    // The start scan already took node 2 offline (the fake kernel says it has no memory).
    assert!(!has_memory_2(&h.status()));
    r.fake
        .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 3)))
        .unwrap();
    let st = h
        .wait_until(WAIT, has_memory_2)
        .expect("the timer saw node 2");
    assert!(st.stats.periodic_scans >= 1);
}

#[test]
fn a_closed_replay_socket_leaves_the_timer_running_and_drop_stops_the_thread() {
    let r = rig();
    let (tx, rx) = UnixDatagram::pair().unwrap();
    let cfg = FollowConfig::default()
        .sysfs_root(r.fake.root())
        .mems_allowed(MemsAllowed::Ignore)
        .source(UeventSource::Datagram(rx))
        .rescan_interval(Duration::from_millis(5));
    let h = follow(r.domain.clone(), cfg).unwrap();
    tx.send(b"libudev\0not the kernel").unwrap();
    drop(tx);
    let st = h
        .wait_until(WAIT, |s| {
            s.stats.malformed == 1 && s.stats.periodic_scans >= 2
        })
        .expect("keeps scanning after the peer closed");
    assert!(st.running);
    r.fake
        .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 3)))
        .unwrap();
    h.wait_until(WAIT, has_memory_2).unwrap();
    drop(h); // joins the thread; must not hang
    assert_eq!(
        Arc::strong_count(&r.domain),
        1,
        "the thread released the domain"
    );
}

#[test]
fn unreadable_sysfs_is_an_error_at_start() {
    let r = rig();
    let cfg = FollowConfig::default()
        .sysfs_root(r.fake.root().join("nope"))
        .mems_allowed(MemsAllowed::Ignore)
        .source(UeventSource::None);
    let e = follow(r.domain.clone(), cfg).unwrap_err();
    assert!(e.to_string().contains("possible"), "{e}");
}

#[test]
fn the_thread_retries_until_the_cpuset_lets_it_bind() {
    let r = rig();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    // Node 2 becomes bindable only on the fifth look (the kernel's cpuset work has run by then).
    let allowed = MemsAllowed::Custom(Arc::new(move || {
        let k = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(if k >= 4 {
            NodeMask::range(0, 3)
        } else {
            NodeMask::range(0, 2)
        })
    }));
    r.fake
        .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 3)))
        .unwrap();
    let cfg = FollowConfig::default()
        .sysfs_root(r.fake.root())
        .source(UeventSource::None)
        .mems_allowed(allowed)
        .rescan_interval(Duration::from_secs(3600));
    let h = follow(r.domain.clone(), cfg).unwrap();
    let st = h.status();
    assert_eq!(st.not_allowed, NodeMask::single(n(2)), "held back at start");
    assert!(!has_memory_2(&st));
    let st = h
        .wait_until(WAIT, has_memory_2)
        .expect("onlined by the retries");
    assert!(st.not_allowed.is_empty() && st.in_sync());
    assert!(st.stats.scans >= 5 && st.stats.periodic_scans == 0);
}
