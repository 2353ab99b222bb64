//! The race stress run with real threads (needs the `pause-points` feature):
//! `cargo test -p hotslab --features pause-points --test race_stress`.
//! Legacy must show violations with pause points; OnlineMems and SlabNodes must show none,
//! with or without them; the mutation switch (no read side in OnlineMems) must break it.

use hotslab::race::{run, Race};
use hotslab::LockingMode;

#[test]
fn legacy_breaks_with_pause_points() {
    for race in Race::ALL {
        let r = run(LockingMode::Legacy, race, true, 30).unwrap();
        eprintln!("{r}");
        assert!(
            r.violating_trials > 0,
            "{race:?}: Legacy must show the race: {r}"
        );
        assert_eq!(r.stuck_pauses, 0, "{r}");
    }
}

#[test]
fn fixed_modes_never_break() {
    for mode in [LockingMode::OnlineMems, LockingMode::SlabNodes] {
        for race in Race::ALL {
            for pauses in [true, false] {
                let r = run(mode, race, pauses, if pauses { 50 } else { 300 }).unwrap();
                eprintln!("{r}");
                assert_eq!(r.violating_trials, 0, "{r}");
                assert_eq!(r.stuck_pauses, 0, "{r}");
            }
        }
    }
}

#[test]
fn create_races_are_detected_per_kind() {
    let r = run(LockingMode::Legacy, Race::CreateVsOnline, true, 20).unwrap();
    assert!(
        r.i1_failures > 0,
        "a cache without a part for the onlined node: {r}"
    );
    let r = run(LockingMode::Legacy, Race::DestroyVsOffline, true, 20).unwrap();
    assert!(
        r.leaked_part + r.double_retire + r.use_after_retire > 0,
        "{r}"
    );
    let r = run(LockingMode::Legacy, Race::ShrinkVsOffline, true, 20).unwrap();
    assert!(r.use_after_retire > 0, "{r}");
}

#[test]
fn dropping_the_read_side_breaks_online_mems() {
    for race in Race::ALL {
        let r = hotslab::race::run_mutated(LockingMode::OnlineMems, race, true, 20).unwrap();
        eprintln!("mutated {r}");
        assert!(
            r.violating_trials > 0,
            "the stress run must catch a missing read side: {r}"
        );
    }
}
