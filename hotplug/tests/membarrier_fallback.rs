//! The asymmetric lock's barrier modes in a real process: membarrier when the kernel has it, the switch to
//! the SeqCst-fence fallback while readers and a writer run, and the fallback alone — the same exclusion
//! stress in each phase. One test (the mode is process-wide and only moves towards the fallback), in its
//! own binary so that no other test sees the switch. The `HOTSLAB_MEMBARRIER=0` start-up path is checked
//! by re-running this binary with it set. Owns no library code.
#![cfg(not(loom))]

use hotslab_hotplug::membarrier::{self, BarrierMode};
use hotslab_hotplug::{LockKind, OnlineMems};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;

/// Two readers check that `a == b` under the read side (nested), a writer bumps both under the write
/// side at least `writes` times; `mid` runs on the test thread while they race (the writer goes on
/// until `mid` returned).
fn stress(lock: &Arc<OnlineMems>, writes: u64, mid: impl FnOnce()) {
    let a = Arc::new(AtomicU64::new(0));
    let b = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mid_done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (lock, a, b, stop) = (lock.clone(), a.clone(), b.clone(), stop.clone());
            thread::spawn(move || {
                let mut checks = 0u64;
                while !stop.load(Relaxed) {
                    let _r = lock.read();
                    let x = a.load(Relaxed);
                    let _n = lock.read();
                    let y = b.load(Relaxed);
                    assert_eq!(x, y, "torn state under the read side");
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    let writer = {
        let (lock, a, b, mid_done) = (lock.clone(), a.clone(), b.clone(), mid_done.clone());
        thread::spawn(move || {
            let mut i = 0;
            while i < writes || !mid_done.load(Relaxed) {
                i += 1;
                let _w = lock.write();
                a.store(i, Relaxed);
                std::hint::spin_loop();
                b.store(i, Relaxed);
                drop(_w);
                thread::yield_now();
            }
            i
        })
    };
    mid();
    mid_done.store(true, Relaxed);
    let done = writer.join().unwrap();
    stop.store(true, Relaxed);
    let checks: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(checks > 0);
    assert!(done >= writes);
    assert_eq!(a.load(Relaxed), done);
}

#[test]
fn modes_and_the_switch_to_the_fallback() {
    let env_off = std::env::var("HOTSLAB_MEMBARRIER").is_ok_and(|v| v == "0");
    let lock = Arc::new(OnlineMems::new(LockKind::Asymmetric));
    drop(lock.read()); // probes the mode
    let first = membarrier::mode();
    println!("barrier mode at start: {first:?} (HOTSLAB_MEMBARRIER=0: {env_off})");
    assert_ne!(
        first,
        BarrierMode::Unknown,
        "the first read probes the mode"
    );
    if env_off {
        assert_eq!(first, BarrierMode::Fence);
    }
    stress(&lock, 500, || {});
    // Switch while readers and the writer run.
    stress(&lock, 500, || {
        thread::sleep(std::time::Duration::from_millis(2));
        membarrier::force_fence_fallback();
    });
    assert_eq!(membarrier::mode(), BarrierMode::Fence);
    stress(&lock, 500, || {});
    assert_eq!(lock.stats().put_without_get, 0);
    assert_eq!(lock.stats().depth_overflows, 0);

    if !env_off {
        // The start-up path of the knob: the same test in a child process with HOTSLAB_MEMBARRIER=0.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "modes_and_the_switch_to_the_fallback",
                "--nocapture",
            ])
            .env("HOTSLAB_MEMBARRIER", "0")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {text}");
        assert!(
            text.contains("barrier mode at start: Fence (HOTSLAB_MEMBARRIER=0: true)"),
            "{text}"
        );
    }
}
