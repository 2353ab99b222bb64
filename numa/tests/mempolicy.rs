//! The task memory policy as the kernel reports it, decoded by `MemPolicy::current`, under real
//! policies: set by `numactl` (the test binary re-runs one test of itself under `numactl
//! --membind=0`, `--interleave=all`, `--preferred=0`, `--localalloc`; skipped if numactl is not
//! installed) and by `set_mempolicy` in a thread (weighted interleave on 6.9+, static nodes).
#![cfg(not(miri))]

use std::process::Command;

use hotslab_numa::policy::{
    self, set_mempolicy, MPOL_BIND, MPOL_DEFAULT, MPOL_F_STATIC_NODES, MPOL_INTERLEAVE,
    MPOL_WEIGHTED_INTERLEAVE,
};
use hotslab_numa::{
    placement_nodes, MemPolicy, NodeMask, NodeState, PlacementKind, PolicyMode, Topology,
};

/// What the child expects, passed in this variable: `<mode>:<nodes>:<kind>:<nodes>`, e.g.
/// `bind:0:bind:0`; `*` only reports.
const EXPECT: &str = "HOTSLAB_MEMPOLICY_EXPECT";

fn memory_nodes() -> NodeMask {
    hotslab_numa::sysfs::read_node_mask(NodeState::HasMemory).unwrap()
}

fn mode_name(m: PolicyMode) -> &'static str {
    match m {
        PolicyMode::Default => "default",
        PolicyMode::Preferred => "preferred",
        PolicyMode::Bind => "bind",
        PolicyMode::Interleave => "interleave",
        PolicyMode::Local => "local",
        PolicyMode::PreferredMany => "preferred-many",
        PolicyMode::WeightedInterleave => "weighted-interleave",
    }
}

fn kind_name(k: PlacementKind) -> &'static str {
    match k {
        PlacementKind::Local => "local",
        PlacementKind::Preferred => "preferred",
        PlacementKind::Bind => "bind",
        PlacementKind::Interleave => "interleave",
        PlacementKind::WeightedInterleave => "weighted-interleave",
    }
}

/// The policy of this thread as `<mode>:<nodes>:<placement kind>:<placement nodes>`.
fn describe() -> String {
    let p = MemPolicy::current().unwrap();
    let allowed = policy::mems_allowed().unwrap();
    let topo = Topology::from_sysfs().unwrap();
    let (kind, nodes) = placement_nodes(&p, &allowed, &topo);
    format!(
        "{}:{}:{}:{}",
        mode_name(p.mode),
        p.nodes,
        kind_name(kind),
        nodes
    )
}

/// The child half: a no-op unless the parent set [`EXPECT`].
#[test]
fn child_reports_its_policy() {
    let Ok(expect) = std::env::var(EXPECT) else {
        return;
    };
    let got = describe();
    println!("policy {got}");
    if expect != "*" {
        assert_eq!(got, expect);
    }
}

fn numactl_available() -> bool {
    Command::new("numactl")
        .arg("--show")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Re-run [`child_reports_its_policy`] under `numactl <args>`, expecting `expect`.
fn under_numactl(args: &[&str], expect: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("numactl")
        .args(args)
        .arg(&exe)
        .args(["--exact", "child_reports_its_policy", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(EXPECT, expect)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "numactl {args:?}: expected {expect}\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") && stdout.contains(&format!("policy {expect}")),
        "numactl {args:?}: the child did not run\n{stdout}\n{stderr}"
    );
}

#[test]
fn policies_set_by_numactl() {
    if !numactl_available() {
        eprintln!("numactl is not installed: skipping (apt-get install numactl)");
        return;
    }
    let mem = memory_nodes();
    let first = mem.first().unwrap();
    let all = mem.to_string();
    under_numactl(
        &[&format!("--membind={first}")],
        &format!("bind:{first}:bind:{first}"),
    );
    under_numactl(
        &["--interleave=all"],
        &format!("interleave:{all}:interleave:{all}"),
    );
    under_numactl(
        &[&format!("--preferred={first}")],
        &format!("preferred:{first}:preferred:{first}"),
    );
    // --localalloc: MPOL_LOCAL (or MPOL_PREFERRED with no node, which the kernel turns into it).
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("numactl")
        .arg("--localalloc")
        .arg(&exe)
        .args(["--exact", "child_reports_its_policy", "--nocapture"])
        .env(EXPECT, "*")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("policy "))
        .unwrap_or_else(|| panic!("no policy line: {stdout}"));
    assert!(
        line.starts_with("local::local:") || line.starts_with("preferred::local:"),
        "{line}"
    );
    // And without numactl: the default policy, placed on the local node (unless this test itself
    // runs under a policy, which the child inherits).
    if MemPolicy::current().unwrap() != MemPolicy::DEFAULT {
        return;
    }
    let mut cmd = Command::new(&exe);
    let out = cmd
        .args(["--exact", "child_reports_its_policy", "--nocapture"])
        .env(EXPECT, "*")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("policy default::local:"), "{stdout}");
}

#[test]
fn policies_set_in_a_thread() {
    std::thread::spawn(|| {
        let mem = memory_nodes();
        let first = NodeMask::single(mem.first().unwrap());
        assert_eq!(MemPolicy::current().unwrap(), MemPolicy::DEFAULT);

        set_mempolicy(MPOL_BIND | MPOL_F_STATIC_NODES, Some(&first)).unwrap();
        let p = MemPolicy::current().unwrap();
        assert_eq!(p.mode, PolicyMode::Bind);
        assert!(p.static_nodes() && !p.relative_nodes());
        assert_eq!(p.nodes, first);

        set_mempolicy(MPOL_INTERLEAVE, Some(&mem)).unwrap();
        let p = MemPolicy::current().unwrap();
        assert_eq!((p.mode, p.flags, p.nodes), (PolicyMode::Interleave, 0, mem));

        // Weighted interleave exists from Linux 6.9; older kernels refuse the mode.
        match set_mempolicy(MPOL_WEIGHTED_INTERLEAVE, Some(&mem)) {
            Ok(()) => {
                let p = MemPolicy::current().unwrap();
                assert_eq!(p.mode, PolicyMode::WeightedInterleave);
                assert_eq!(p.nodes, mem);
                let topo = Topology::from_sysfs().unwrap();
                let (kind, nodes) = placement_nodes(&p, &policy::mems_allowed().unwrap(), &topo);
                assert_eq!(kind, PlacementKind::WeightedInterleave);
                assert_eq!(nodes, mem);
            }
            Err(e) => assert_eq!(e, hotslab_numa::Errno(libc::EINVAL)),
        }

        set_mempolicy(MPOL_DEFAULT, None).unwrap();
        assert_eq!(MemPolicy::current().unwrap(), MemPolicy::DEFAULT);
    })
    .join()
    .unwrap();
}

#[test]
fn mems_allowed_matches_proc_status() {
    let a = policy::mems_allowed().unwrap();
    let b = hotslab_numa::sysfs::read_mems_allowed_list().unwrap();
    assert_eq!(a, b);
    assert!(a.is_subset(&hotslab_numa::sysfs::read_node_mask(NodeState::Possible).unwrap()));
}
