//! The process-wide default domain (hotslab as the global allocator) covers every possible node
//! and follows hotplug by itself: each test re-runs this binary with a fresh default domain
//! (the environment is read when it is built) and checks the child's report. With a fake sysfs
//! tree (`HOTSLAB_TEST_SYSFS_ROOT`) and recorded uevents sent over a datagram socket
//! (`HOTSLAB_TEST_UEVENT_SOCKET`) the child sees a possible-but-absent node gain memory and
//! lose it again; `HOTSLAB_FOLLOW=0` keeps the follower off; a fork child starts its own; and
//! under `numactl` the default domain's threads see the policy `numactl` set. Owns no library
//! code.
#![cfg(all(target_os = "linux", not(any(miri, loom))))]

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use hotslab::linux::{default_follower_running, default_follower_wait_until, FakeSysfs};
use hotslab::numa::{NodeId, NodeMask, PolicyMode};
use hotslab::{CacheConfig, CacheError, PartState};
use hotslab_hotplug::NodeStateSnapshot;

#[global_allocator]
static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();

/// Which child body to run (unset: the child test is a no-op).
const ROLE: &str = "HOTSLAB_FOLLOW_TEST_ROLE";
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

/// The QEMU guest at boot: nodes 0 and 1 with a CPU and memory each, node 2 possible only.
fn guest_at_boot() -> FakeSysfs {
    let f = FakeSysfs::new().unwrap();
    f.set_masks(&masks(NodeMask::range(0, 2), NodeMask::range(0, 2)))
        .unwrap();
    f.set_node(n(0), "0", 512 << 20, &[10, 20]).unwrap();
    f.set_node(n(1), "1", 512 << 20, &[20, 10]).unwrap();
    f
}

fn write_masks(root: &str, m: &NodeStateSnapshot) {
    for (file, mask) in [
        ("possible", m.possible),
        ("online", m.online),
        ("has_memory", m.has_memory),
        ("has_normal_memory", m.has_normal_memory),
    ] {
        std::fs::write(format!("{root}/{file}"), format!("{mask}\n")).unwrap();
    }
}

fn uevent(action: &str, block: u32, seq: u64) -> Vec<u8> {
    format!(
        "{action}@/devices/system/memory/memory{block}\0ACTION={action}\0\
         DEVPATH=/devices/system/memory/memory{block}\0SUBSYSTEM=memory\0SEQNUM={seq}\0"
    )
    .into_bytes()
}

/// Allocates (slow paths start the follower) until it runs.
fn wait_for_follower() {
    let deadline = Instant::now() + WAIT;
    let mut keep = Vec::new();
    while !default_follower_running() {
        assert!(Instant::now() < deadline, "the follower never started");
        keep.push(vec![0u8; 100_000]);
        if keep.len() > 64 {
            keep.clear();
        }
        std::thread::yield_now();
    }
}

/// Child: a node that was possible but absent at start gains memory, then loses it.
fn child_follow() {
    let root = std::env::var("HOTSLAB_TEST_SYSFS_ROOT").unwrap();
    let sock = std::env::var("HOTSLAB_TEST_UEVENT_SOCKET").unwrap();
    let d = hotslab::default_domain().unwrap();
    assert_eq!(
        d.topology().nodes(),
        NodeMask::range(0, 3),
        "every possible node"
    );
    assert_eq!(d.hotplug().states.has_memory(), NodeMask::range(0, 2));
    assert!(d.task_placement());
    let early = d.create_cache(CacheConfig::new("early", 128)).unwrap();
    assert_eq!(early.part_state(n(1)), Some(PartState::Live));
    assert_eq!(
        early.part_state(n(2)),
        None,
        "no part for a node without memory"
    );
    assert!(d.check_invariants().ok());
    wait_for_follower();

    // Hot-add on node 2: the kernel changes the masks, then sends the block events.
    write_masks(&root, &masks(NodeMask::range(0, 3), NodeMask::range(0, 3)));
    let tx = UnixDatagram::unbound().unwrap();
    for (i, b) in (32..36).enumerate() {
        tx.send_to(&uevent("online", b, 100 + i as u64), &sock)
            .unwrap();
    }
    let st = default_follower_wait_until(WAIT, |s| s.domain.has_memory.test(n(2)))
        .expect("the default domain never saw node 2 come online");
    assert!(st.stats.relevant >= 1, "{st:?}");
    assert_eq!(early.part_state(n(2)), Some(PartState::Live));
    let rep = d.check_invariants();
    assert!(
        rep.ok(),
        "every kmalloc cache has a part on node 2: {rep:?}"
    );
    // kmalloc_node on the new node works (this host cannot bind there: the slab falls back).
    let p = hotslab::try_kmalloc_node(64, n(2)).unwrap();
    // SAFETY: p is a live 64-byte block.
    unsafe { p.as_ptr().write_bytes(7, 64) };

    // Removal: the kernel migrated the memory away and says so.
    write_masks(&root, &masks(NodeMask::range(0, 2), NodeMask::range(0, 2)));
    for (i, b) in (32..36).enumerate() {
        tx.send_to(&uevent("offline", b, 104 + i as u64), &sock)
            .unwrap();
    }
    default_follower_wait_until(WAIT, |s| !s.domain.has_memory.test(n(2)))
        .expect("the default domain never saw node 2 go");
    // SAFETY: p is still live; its data survived.
    assert!(unsafe { core::slice::from_raw_parts(p.as_ptr(), 64) }
        .iter()
        .all(|&b| b == 7));
    // SAFETY: p came from kmalloc and is not used again.
    unsafe { hotslab::kfree(p.as_ptr()) }.unwrap();
    assert_eq!(early.part_state(n(2)), Some(PartState::Retired));
    assert!(d.check_invariants().ok());
    assert_eq!(d.violations.total(), 0);
    println!("child follow ok");
}

/// Child: the cpuset (a fake `Mems_allowed_list:` file) loses node 2 and gets it back.
fn child_cpuset() {
    let file = std::env::var("HOTSLAB_TEST_MEMS_ALLOWED").unwrap();
    let set_allowed = |list: &str| {
        std::fs::write(&file, format!("Name:\tx\nMems_allowed_list:\t{list}\n")).unwrap();
    };
    let d = hotslab::default_domain().unwrap();
    assert_eq!(d.hotplug().states.has_memory(), NodeMask::range(0, 3));
    assert_eq!(
        hotslab::thread_placement().mems_allowed,
        NodeMask::range(0, 3)
    );
    let p = hotslab::try_kmalloc_node(64, n(2)).unwrap();
    wait_for_follower();

    set_allowed("0-1");
    assert!(hotslab::linux::default_follower_rescan());
    let st = default_follower_wait_until(WAIT, |s| !s.domain.has_memory.test(n(2)))
        .expect("the follower never saw the cpuset lose node 2");
    assert!(st.not_allowed.test(n(2)), "{st:?}");
    // Every thread reads its cpuset again: this one (read before) and a new one.
    assert_eq!(
        hotslab::try_kmalloc_node(64, n(2)),
        Err(CacheError::NodeNotAllowed(2))
    );
    assert_eq!(
        hotslab::thread_placement().mems_allowed,
        NodeMask::range(0, 2)
    );
    let other = std::thread::spawn(hotslab::thread_placement)
        .join()
        .unwrap();
    assert_eq!(other.mems_allowed, NodeMask::range(0, 2));
    // Allocations keep to the cpuset.
    let v: Vec<Vec<u8>> = (0..3000).map(|i| vec![3u8; 1 + i % 2000]).collect();
    assert!(v.iter().all(|b| b.iter().all(|&x| x == 3)));

    set_allowed("0-2");
    assert!(hotslab::linux::default_follower_rescan());
    default_follower_wait_until(WAIT, |s| s.domain.has_memory.test(n(2)))
        .expect("the follower never saw node 2 allowed again");
    let q = hotslab::try_kmalloc_node(64, n(2)).unwrap();
    // SAFETY: both came from kmalloc and are not used again.
    unsafe {
        hotslab::kfree(p.as_ptr()).unwrap();
        hotslab::kfree(q.as_ptr()).unwrap();
    }
    assert!(d.check_invariants().ok());
    println!("child cpuset ok");
}

/// Child: `HOTSLAB_FOLLOW=0`.
fn child_off() {
    let mut keep = Vec::new();
    for i in 0..2000 {
        keep.push(vec![i as u8; 1 + i * 37 % 70_000]);
    }
    drop(keep);
    assert!(!default_follower_running());
    assert!(hotslab::linux::default_follower_status().is_none());
    println!("child off ok");
}

/// Child: the follower runs; a fork child starts its own on its first slow paths.
fn child_fork() {
    wait_for_follower();
    // SAFETY: the child only allocates, checks and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = if default_follower_running() {
            10 // the parent's thread does not exist here
        } else {
            let deadline = Instant::now() + WAIT;
            let mut keep = Vec::new();
            loop {
                if default_follower_running() {
                    break 0;
                }
                if Instant::now() > deadline {
                    break 11;
                }
                keep.push(vec![1u8; 100_000]);
                if keep.len() > 64 {
                    keep.clear();
                }
                std::thread::yield_now();
            }
        };
        // SAFETY: leave the child without running the test harness's exit path.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "fork child");
    assert!(default_follower_running());
    println!("child fork ok");
}

/// Child under numactl: every thread of the default domain places by the policy numactl set.
fn child_numactl(expect: PolicyMode) {
    let mine = hotslab::thread_placement();
    assert_eq!(mine.mode, expect, "{mine:?}");
    let other = std::thread::spawn(hotslab::thread_placement)
        .join()
        .unwrap();
    assert_eq!(other.mode, expect, "inherited by new threads: {other:?}");
    let mem = hotslab::numa::sysfs::read_node_mask(hotslab::numa::NodeState::HasMemory).unwrap();
    let first = mem.first().unwrap();
    let v: Vec<Vec<u8>> = (0..5000).map(|i| vec![i as u8; 1 + i % 900]).collect();
    assert!(v.iter().enumerate().all(|(i, b)| b[0] == i as u8));
    // A node this task's cpuset does not have is refused with a clear error.
    let outside = (0..128u16).map(n).find(|&x| {
        !mine.mems_allowed.test(x) && hotslab::default_domain().unwrap().topology().contains(x)
    });
    if let Some(x) = outside {
        assert_eq!(
            hotslab::try_kmalloc_node(64, x),
            Err(CacheError::NodeNotAllowed(x.0))
        );
    }
    let p = hotslab::try_kmalloc_node(64, first).unwrap();
    // SAFETY: p came from kmalloc.
    unsafe { hotslab::kfree(p.as_ptr()) }.unwrap();
    println!("child numactl ok");
}

#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "follow" => child_follow(),
        "off" => child_off(),
        "fork" => child_fork(),
        "cpuset" => child_cpuset(),
        "bind" => child_numactl(PolicyMode::Bind),
        "preferred" => child_numactl(PolicyMode::Preferred),
        "interleave" => child_numactl(PolicyMode::Interleave),
        other => panic!("unknown role {other}"),
    }
}

/// Runs the child test with `role` under `prefix` (a command such as numactl, or nothing).
fn run_child(prefix: &[&str], role: &str, envs: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match prefix.split_first() {
        Some((p, args)) => {
            let mut c = Command::new(p);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = cmd
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env(ROLE, role)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("child {} ok", role_word(role))),
        "child {role}: {}\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

fn role_word(role: &str) -> &str {
    match role {
        "bind" | "preferred" | "interleave" => "numactl",
        r => r,
    }
}

fn fake_env(fake: &FakeSysfs, sock: &str) -> Vec<(String, String)> {
    vec![
        (
            "HOTSLAB_TEST_SYSFS_ROOT".into(),
            fake.root().to_str().unwrap().into(),
        ),
        ("HOTSLAB_TEST_UEVENT_SOCKET".into(), sock.into()),
        // Only the events (and the start scan) drive the follower in these tests.
        ("HOTSLAB_TEST_FOLLOW_RESCAN_MS".into(), "600000".into()),
    ]
}

#[test]
fn the_default_domain_follows_a_node_that_appears_and_goes() {
    let fake = guest_at_boot();
    let sock = fake.root().join("uevents.sock");
    let env = fake_env(&fake, sock.to_str().unwrap());
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    run_child(&[], "follow", &env);
}

#[test]
fn a_cpuset_change_is_followed_by_the_domain_and_every_thread() {
    let fake = FakeSysfs::new().unwrap();
    let all = NodeMask::range(0, 3);
    fake.set_masks(&NodeStateSnapshot {
        possible: all,
        online: all,
        has_memory: all,
        has_normal_memory: all,
    })
    .unwrap();
    fake.set_node(n(0), "0", 512 << 20, &[10, 20, 20]).unwrap();
    fake.set_node(n(1), "1", 512 << 20, &[20, 10, 20]).unwrap();
    fake.set_node(n(2), "", 512 << 20, &[20, 20, 10]).unwrap();
    let mems = fake.root().join("status");
    std::fs::write(&mems, "Name:\tx\nMems_allowed_list:\t0-2\n").unwrap();
    let sock = fake.root().join("uevents.sock");
    let mut env = fake_env(&fake, sock.to_str().unwrap());
    env.push((
        "HOTSLAB_TEST_MEMS_ALLOWED".into(),
        mems.to_str().unwrap().into(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    run_child(&[], "cpuset", &env);
}

#[test]
fn hotslab_follow_0_keeps_the_follower_off() {
    let fake = guest_at_boot();
    let sock = fake.root().join("uevents.sock");
    let mut env = fake_env(&fake, sock.to_str().unwrap());
    env.push(("HOTSLAB_FOLLOW".into(), "0".into()));
    env.push(("HOTSLAB_VERBOSE".into(), "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    run_child(&[], "off", &env);
}

#[test]
fn a_fork_child_starts_its_own_follower() {
    let fake = guest_at_boot();
    let sock = fake.root().join("uevents.sock");
    let env = fake_env(&fake, sock.to_str().unwrap());
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    run_child(&[], "fork", &env);
}

fn numactl_available() -> bool {
    Command::new("numactl")
        .arg("--show")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_default_domain_reads_the_policy_numactl_set() {
    if !numactl_available() {
        eprintln!("numactl is not installed: skipping (apt-get install numactl)");
        return;
    }
    let mem = hotslab::numa::sysfs::read_node_mask(hotslab::numa::NodeState::HasMemory).unwrap();
    let first = mem.first().unwrap().to_string();
    run_child(&["numactl", &format!("--membind={first}")], "bind", &[]);
    run_child(
        &["numactl", &format!("--preferred={first}")],
        "preferred",
        &[],
    );
    run_child(
        &["numactl", &format!("--interleave={first}")],
        "interleave",
        &[],
    );
}
