//! The real-kernel test: boots the QEMU guest (see `host.rs`), lets it hot-add and remove a 512 MiB DIMM
//! on node 2 twice, and asserts on the guest's report: node 2 live in every cache after the add,
//! draining then retired after the removal, ≥ 99 % of pages on the node they were bound to (0, 1, 2),
//! every surviving object intact after the kernel migrated it, mbind to the removed node refused.
//! And the default allocator itself, in the first cycle: a `SlabAlloc` program and a C program under
//! `LD_PRELOAD=libhotslab.so`, both started before the add, with threads under membind / preferred
//! {2} (≥ 99 % of their pages on node 2) and interleave {0,1} (both nodes), every object intact after
//! the removal and new allocations falling back; node 2's HMAT figures (as configured), tier and
//! place after the DRAM nodes in the fallback orders.
//! Ignored by default (about a minute; needs qemu-system-x86 and busybox-static): run it with
//! `qemu/run.sh`, or `cargo test --manifest-path qemu/Cargo.toml -- --ignored`. Owns no library code.

use hotslab_qemu::host::{
    build_preload_program, hmat_access0, missing_tools, run, shared_deps, Options,
};

const CYCLES: u32 = 2;

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v == "true")
}

/// The guest's C program compiles warning-free with the host's `cc`, and `ldd` names the loader and
/// libc the initramfs must carry (no QEMU needed).
#[test]
fn preload_program_builds_and_its_libraries_are_found() {
    let dir = std::env::temp_dir().join(format!("hotslab-qemu-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = build_preload_program(&dir.join("preload-guest"))
        .unwrap_or_else(|e| panic!("compiling qemu/c/preload_guest.c: {e}"));
    let deps = shared_deps(&prog).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        deps.iter()
            .any(|(g, h)| g.contains("ld-linux") && h.is_file()),
        "{deps:?}"
    );
    assert!(
        deps.iter()
            .any(|(g, h)| g.ends_with("/libc.so.6") && h.is_file()),
        "{deps:?}"
    );
}

#[test]
#[ignore = "boots a QEMU guest (about a minute): qemu/run.sh"]
fn guest_follows_real_memory_hotplug() {
    let opts = Options {
        cycles: CYCLES,
        install: env_on("HOTSLAB_QEMU_INSTALL"),
        echo: env_on("HOTSLAB_QEMU_ECHO"),
        ..Options::default()
    };
    if !opts.install {
        let missing = missing_tools();
        // Asked for explicitly (--ignored), so a missing tool is a failure, never a silent pass.
        assert!(
            missing.is_empty(),
            "cannot run the QEMU test, missing: {missing:?} (qemu/run.sh installs them)"
        );
    }
    let out = run(&opts).unwrap_or_else(|e| panic!("the harness could not run: {e}"));
    println!("{out}");
    let r = &out.report;
    for c in &r.checks {
        println!(
            "{} {} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    for (k, v) in &r.values {
        println!("value {k} = {v}");
    }
    assert!(r.passed(), "guest checks failed:\n{r}");
    assert_eq!(r.exit, Some(0));

    // The checks the issue names must be among those that passed, for every cycle.
    for name in [
        "boot.masks",
        "boot.topology",
        "boot.follower",
        "boot.every_cache",
    ] {
        assert!(r.has_passed(name), "{name}");
    }
    for c in 1..=CYCLES {
        for what in [
            "node2_bindable_when_online",
            "node2_live_in_every_cache",
            "kernel_masks_after_add",
            "kernel_masks_after_remove",
            "node2_draining",
            "mbind_node2_gone",
            "node2_retired_when_empty",
            "invariants",
            "survivors_intact.hp-64",
            "survivors_intact.large-2048k",
            "placement.hp-192",
            "placement.large-512k",
            "fallback.hp-600",
        ] {
            let name = format!("c{c}.{what}");
            assert!(r.has_passed(&name), "{name} missing or failed");
        }
        let pct = r
            .number(&format!("c{c}.placement_pct"))
            .expect("node 2 placement reported");
        assert!(pct >= 99.0, "cycle {c}: {pct} % on node 2");
    }
    for node in [0, 1] {
        let pct = r
            .number(&format!("boot.node{node}.placement_pct"))
            .expect("boot placement reported");
        assert!(pct >= 99.0, "node {node}: {pct} %");
    }
    for name in [
        "boot.hmat",
        "children.started",
        "children.armed",
        "c1.hmat.topology",
        "c1.hmat.node2_slower",
        "c1.hmat.node2_tier",
        "c1.hmat.fallback_after_dram",
        "SlabAlloc.follows_add",
        "SlabAlloc.follows_removal",
        "SlabAlloc.fallback_after_dram",
        "LD_PRELOAD.active",
    ] {
        assert!(r.has_passed(name), "{name} missing or failed");
    }
    for who in ["SlabAlloc", "LD_PRELOAD"] {
        for what in [
            "before_add",
            "membind.policy",
            "membind.alloc",
            "membind.node2.slab",
            "membind.node2.large",
            "preferred.policy",
            "preferred.alloc",
            "preferred.node2.slab",
            "preferred.node2.large",
            "interleave.policy",
            "interleave.alloc",
            "interleave.spread.slab",
            "interleave.spread.large",
            "refresh.policy",
            "refresh.before_local",
            "refresh.node2.slab",
            "refresh.node2.large",
            "removal.intact",
            "removal.off_node2",
            "removal.fallback.membind",
            "removal.fallback.preferred",
            "removal.fallback.interleave",
            "removal.fallback.default",
            "completed",
        ] {
            let name = format!("{who}.{what}");
            assert!(r.has_passed(&name), "{name} missing or failed");
        }
    }
    // Each program again as a fresh process under the real numactl.
    assert!(r.has_passed("LD_PRELOAD.numactl.active"));
    for who in ["SlabAlloc", "LD_PRELOAD"] {
        for (policy, placed) in [
            ("membind", &["membind.node2.slab", "membind.node2.large"]),
            (
                "preferred",
                &["preferred.node2.slab", "preferred.node2.large"],
            ),
            (
                "interleave",
                &["interleave.spread.slab", "interleave.spread.large"],
            ),
        ] {
            let names = [
                format!("{policy}.policy"),
                format!("{policy}.alloc"),
                format!("{policy}.completed"),
            ];
            for what in names
                .iter()
                .map(String::as_str)
                .chain(placed.iter().copied())
            {
                let name = format!("{who}.numactl.{what}");
                assert!(r.has_passed(&name), "{name} missing or failed");
            }
        }
    }
    // The guest kernel reports the HMAT the host configured (best initiator per target).
    for node in 0..3u16 {
        let (lat, bw) = hmat_access0(node).expect("configured");
        assert_eq!(
            r.values.get(&format!("c1.hmat.node{node}")).map(String::as_str),
            Some(
                format!(
                    "read_latency={lat} write_latency={lat} read_bandwidth={bw} write_bandwidth={bw}"
                )
                .as_str()
            ),
            "node {node}'s HMAT figures"
        );
    }
    let checked = r.number("objects_checked").expect("objects checked");
    assert!(checked > 0.0);
    assert!(r.has_passed("follower.final"));
    assert_eq!(out.cycles.len(), CYCLES as usize);
    assert!(out
        .cycles
        .iter()
        .all(|c| c.add_to_online.is_some() && c.del_to_offline.is_some()));
}
