//! Tests of the notifier chain and the simulated controller: priority order, vetoes and CANCEL_* in
//! reverse, typed errors, forced offline, stage-hook faults rolling back at every stage, and node masks that
//! stay stable under the read side. Every domain test runs for both lock kinds. Owns no library code.
#![cfg(not(loom))]

use hotslab_hotplug::{
    CallbackRef, HotplugDomain, HotplugError, LockKind, MemoryCallback, MemoryEvent, MemoryNotify,
    NodeId, NodeMask, NodeState, NodeStateSnapshot, NotifierChain, NotifyError, RegisterError,
    Stage, Veto, CHAIN_CAPACITY, SIM_NODE_PAGES,
};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::thread;

const KINDS: [LockKind; 3] = LockKind::ALL;

fn n(id: u16) -> NodeId {
    NodeId::new(id)
}

type Log = Arc<Mutex<Vec<(&'static str, MemoryEvent, u16, bool)>>>;

/// Records every event it sees into a shared log; may veto one event.
struct Recorder {
    name: &'static str,
    log: Log,
    veto: Option<(MemoryEvent, NotifyError)>,
    fail_non_vetoable: bool,
}

impl MemoryCallback for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }
    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        self.log
            .lock()
            .unwrap()
            .push((self.name, ev.event, ev.node.0, ev.forced));
        match self.veto {
            Some((e, err)) if e == ev.event => Err(err),
            _ if self.fail_non_vetoable && !ev.event.is_vetoable() => {
                Err(NotifyError::Other("nope"))
            }
            _ => Ok(()),
        }
    }
}

fn recorder(name: &'static str, log: &Log) -> Arc<Recorder> {
    Arc::new(Recorder {
        name,
        log: log.clone(),
        veto: None,
        fail_non_vetoable: false,
    })
}

fn vetoer(name: &'static str, log: &Log, ev: MemoryEvent, err: NotifyError) -> Arc<Recorder> {
    Arc::new(Recorder {
        name,
        log: log.clone(),
        veto: Some((ev, err)),
        fail_non_vetoable: false,
    })
}

fn shared(r: Arc<Recorder>) -> CallbackRef {
    CallbackRef::Shared(r)
}

fn events(log: &Log) -> Vec<(&'static str, MemoryEvent)> {
    log.lock().unwrap().iter().map(|e| (e.0, e.1)).collect()
}

/// Nodes 0-3 possible; 0 and 1 with memory at boot.
fn domain(kind: LockKind) -> HotplugDomain {
    let mut boot = NodeMask::new();
    boot.set(n(0));
    boot.set(n(1));
    HotplugDomain::new(NodeMask::range(0, 4), boot, kind)
}

fn ev(event: MemoryEvent) -> MemoryNotify {
    MemoryNotify {
        event,
        node: n(3),
        start_pfn: 0,
        nr_pages: 1,
        forced: false,
    }
}

// ------------------------------------------------------------------------------------------------
// The chain on its own.

#[test]
fn chain_calls_in_priority_order_higher_first_ties_in_registration_order() {
    let log: Log = Default::default();
    let chain = NotifierChain::new();
    let _a = chain.register(shared(recorder("p0", &log)), 0).unwrap();
    let _b = chain.register(shared(recorder("p10a", &log)), 10).unwrap();
    let c = chain.register(shared(recorder("m5", &log)), -5).unwrap();
    let _d = chain.register(shared(recorder("p10b", &log)), 10).unwrap();
    let _e = chain.register(shared(recorder("p3", &log)), 3).unwrap();
    let order: Vec<_> = chain.snapshot().names().collect();
    assert_eq!(order, ["p10a", "p10b", "p3", "p0", "m5"]);
    assert_eq!(chain.call_all(&ev(MemoryEvent::Online)), 0);
    let called: Vec<_> = events(&log).into_iter().map(|e| e.0).collect();
    assert_eq!(called, order);

    assert!(chain.unregister(c));
    let order: Vec<_> = chain.snapshot().names().collect();
    assert_eq!(order, ["p10a", "p10b", "p3", "p0"]);
    assert_eq!(chain.len(), 4);
}

#[test]
fn chain_veto_cancels_accepted_callbacks_in_reverse() {
    let log: Log = Default::default();
    let chain = NotifierChain::new();
    let _a = chain.register(shared(recorder("a", &log)), 30).unwrap();
    let _b = chain.register(shared(recorder("b", &log)), 20).unwrap();
    let _c = chain
        .register(
            shared(vetoer(
                "c",
                &log,
                MemoryEvent::GoingOnline,
                NotifyError::NoMemory,
            )),
            10,
        )
        .unwrap();
    let _d = chain.register(shared(recorder("d", &log)), 0).unwrap();
    let r = chain.call_vetoable(&ev(MemoryEvent::GoingOnline));
    assert_eq!(
        r,
        Err(Veto {
            by: "c",
            error: NotifyError::NoMemory
        })
    );
    use MemoryEvent::*;
    assert_eq!(
        events(&log),
        [
            ("a", GoingOnline),
            ("b", GoingOnline),
            ("c", GoingOnline),
            ("b", CancelOnline),
            ("a", CancelOnline)
        ]
    );
}

#[test]
fn chain_is_fixed_capacity_and_handles_are_per_registration() {
    struct Nop;
    impl MemoryCallback for Nop {
        fn name(&self) -> &'static str {
            "nop"
        }
        fn notify(&self, _: &MemoryNotify) -> Result<(), NotifyError> {
            Ok(())
        }
    }
    static NOP: Nop = Nop;
    let chain = NotifierChain::new();
    let mut handles: Vec<_> = (0..CHAIN_CAPACITY)
        .map(|i| chain.register(CallbackRef::Static(&NOP), i as i32).unwrap())
        .collect();
    assert_eq!(
        chain.register(CallbackRef::Static(&NOP), 0),
        Err(RegisterError::Full)
    );
    assert_eq!(chain.snapshot().all_mask(), u32::MAX);
    // A handle of another chain removes nothing here.
    let other = NotifierChain::new();
    let foreign = other.register(CallbackRef::Static(&NOP), 0).unwrap();
    assert!(!chain.unregister(foreign));
    assert_eq!(chain.len(), CHAIN_CAPACITY);
    assert_eq!(other.len(), 1);
    let h = handles.pop().unwrap();
    assert!(chain.unregister(h));
    assert_eq!(chain.len(), CHAIN_CAPACITY - 1);
    let _h = chain.register(CallbackRef::Static(&NOP), 0).unwrap();
    assert_eq!(chain.len(), CHAIN_CAPACITY);
}

#[test]
fn unregistered_shared_callback_is_released() {
    let log: Log = Default::default();
    let chain = NotifierChain::new();
    let r = recorder("r", &log);
    let h = chain.register(shared(r.clone()), 0).unwrap();
    assert_eq!(Arc::strong_count(&r), 2);
    assert!(chain.unregister(h));
    assert_eq!(Arc::strong_count(&r), 1);
    assert_eq!(chain.call_all(&ev(MemoryEvent::Online)), 0);
    assert!(events(&log).is_empty());
}

// ------------------------------------------------------------------------------------------------
// The controller, for both lock kinds.

#[test]
fn boot_state_and_consistency() {
    for kind in KINDS {
        let d = domain(kind);
        assert_eq!(d.lock.kind(), kind);
        let s = d.snapshot();
        assert!(s.is_consistent());
        assert_eq!(s.possible.weight(), 4);
        for id in [0, 1] {
            assert!(s.test(NodeState::Online, n(id)));
            assert!(s.test(NodeState::HasMemory, n(id)));
            assert!(s.test(NodeState::HasNormalMemory, n(id)));
        }
        assert!(!s.test(NodeState::Online, n(2)));
        // with_states repairs inconsistent masks.
        let bad = NodeStateSnapshot {
            possible: NodeMask::range(0, 2),
            has_memory: NodeMask::range(0, 3),
            has_normal_memory: NodeMask::range(0, 4),
            ..Default::default()
        };
        let d = HotplugDomain::with_states(bad, kind);
        let s = d.snapshot();
        assert!(s.is_consistent());
        assert_eq!(s.has_memory, NodeMask::range(0, 2));
        assert_eq!(s.online, NodeMask::range(0, 2));
    }
}

#[test]
fn online_then_offline_updates_masks_and_notifies_in_order() {
    for kind in KINDS {
        let d = domain(kind);
        let log: Log = Default::default();
        let _h = d.register_notifier(shared(recorder("r", &log)), 0).unwrap();
        d.online_node(n(3)).unwrap();
        let s = d.snapshot();
        assert!(s.online.test(n(3)) && s.has_memory.test(n(3)));
        assert!(
            !s.has_normal_memory.test(n(3)),
            "hot-added memory is movable only"
        );
        assert!(s.is_consistent());

        d.offline_node(n(3)).unwrap();
        let s = d.snapshot();
        assert!(!s.has_memory.test(n(3)) && !s.has_normal_memory.test(n(3)));
        assert!(s.online.test(n(3)), "the node stays online");

        // A boot node loses normal memory when offlined.
        d.offline_node(n(1)).unwrap();
        assert!(!d.states.has_normal_memory().test(n(1)));

        use MemoryEvent::*;
        let got: Vec<_> = log
            .lock()
            .unwrap()
            .iter()
            .map(|e| (e.1, e.2, e.3))
            .collect();
        assert_eq!(
            got,
            [
                (GoingOnline, 3, false),
                (Online, 3, false),
                (GoingOffline, 3, false),
                (Offline, 3, false),
                (GoingOffline, 1, false),
                (Offline, 1, false)
            ]
        );
        let st = d.stats();
        assert_eq!(
            (st.onlined, st.offlined, st.vetoed, st.rolled_back),
            (1, 2, 0, 0)
        );
        assert_eq!(d.lock.stats().writes, 3);
    }
}

#[test]
fn notification_carries_the_simulated_span() {
    struct Span(Mutex<Option<MemoryNotify>>);
    impl MemoryCallback for Span {
        fn name(&self) -> &'static str {
            "span"
        }
        fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
            *self.0.lock().unwrap() = Some(*ev);
            Ok(())
        }
    }
    let d = domain(LockKind::Seed);
    let cb = Arc::new(Span(Mutex::new(None)));
    let _h = d
        .register_notifier(CallbackRef::Shared(cb.clone()), 0)
        .unwrap();
    d.online_node(n(2)).unwrap();
    let got = cb.0.lock().unwrap().unwrap();
    assert_eq!(got.event, MemoryEvent::Online);
    assert_eq!(got.node, n(2));
    assert_eq!(got.start_pfn, 2 * SIM_NODE_PAGES);
    assert_eq!(got.nr_pages, SIM_NODE_PAGES);
}

#[test]
fn controller_errors_change_nothing_and_call_nobody() {
    for kind in KINDS {
        let d = domain(kind);
        let log: Log = Default::default();
        let _h = d.register_notifier(shared(recorder("r", &log)), 0).unwrap();
        let before = d.snapshot();
        assert_eq!(d.online_node(n(7)), Err(HotplugError::UnknownNode));
        assert_eq!(d.offline_node(n(7)), Err(HotplugError::UnknownNode));
        assert_eq!(
            d.offline_node_forced(n(900)),
            Err(HotplugError::UnknownNode)
        );
        assert_eq!(d.online_node(n(0)), Err(HotplugError::AlreadyOnline));
        assert_eq!(d.offline_node(n(2)), Err(HotplugError::AlreadyOffline));
        assert_eq!(
            d.offline_node_forced(n(3)),
            Err(HotplugError::AlreadyOffline)
        );
        assert_eq!(d.snapshot(), before);
        assert!(events(&log).is_empty());
        assert_eq!(d.stats().onlined + d.stats().offlined, 0);
    }
}

#[test]
fn vetoed_online_cancels_accepted_in_reverse_and_changes_nothing() {
    for kind in KINDS {
        let d = domain(kind);
        let log: Log = Default::default();
        let _a = d
            .register_notifier(shared(recorder("a", &log)), 30)
            .unwrap();
        let _b = d
            .register_notifier(shared(recorder("b", &log)), 20)
            .unwrap();
        let _c = d
            .register_notifier(
                shared(vetoer(
                    "c",
                    &log,
                    MemoryEvent::GoingOnline,
                    NotifyError::NoMemory,
                )),
                10,
            )
            .unwrap();
        let _d = d.register_notifier(shared(recorder("d", &log)), 0).unwrap();
        let before = d.snapshot();
        let r = d.online_node(n(2));
        assert_eq!(
            r,
            Err(HotplugError::Vetoed {
                by: "c",
                error: NotifyError::NoMemory
            })
        );
        assert!(!r.unwrap_err().is_busy());
        assert_eq!(d.snapshot(), before);
        use MemoryEvent::*;
        assert_eq!(
            events(&log),
            [
                ("a", GoingOnline),
                ("b", GoingOnline),
                ("c", GoingOnline),
                ("b", CancelOnline),
                ("a", CancelOnline)
            ]
        );
        assert_eq!(d.stats().vetoed, 1);
        // The write side was released.
        drop(d.lock.read());
        assert!(!d.lock.is_active_writer());
    }
}

#[test]
fn busy_offline_is_refused_and_cancelled() {
    for kind in KINDS {
        let d = domain(kind);
        let log: Log = Default::default();
        let _a = d.register_notifier(shared(recorder("a", &log)), 1).unwrap();
        let _b = d
            .register_notifier(
                shared(vetoer(
                    "slab",
                    &log,
                    MemoryEvent::GoingOffline,
                    NotifyError::Busy,
                )),
                0,
            )
            .unwrap();
        let before = d.snapshot();
        let r = d.offline_node(n(1));
        assert_eq!(
            r,
            Err(HotplugError::Vetoed {
                by: "slab",
                error: NotifyError::Busy
            })
        );
        assert!(r.unwrap_err().is_busy());
        assert_eq!(d.snapshot(), before);
        use MemoryEvent::*;
        assert_eq!(
            events(&log),
            [
                ("a", GoingOffline),
                ("slab", GoingOffline),
                ("a", CancelOffline)
            ]
        );
    }
}

#[test]
fn forced_offline_ignores_vetoes() {
    for kind in KINDS {
        let d = domain(kind);
        let log: Log = Default::default();
        let _a = d
            .register_notifier(
                shared(vetoer(
                    "v",
                    &log,
                    MemoryEvent::GoingOffline,
                    NotifyError::Busy,
                )),
                5,
            )
            .unwrap();
        let _b = d.register_notifier(shared(recorder("b", &log)), 0).unwrap();
        d.offline_node_forced(n(1)).unwrap();
        assert!(!d.states.has_memory().test(n(1)));
        let got = log.lock().unwrap().clone();
        use MemoryEvent::*;
        assert_eq!(
            got,
            [
                ("v", GoingOffline, 1, true),
                ("b", GoingOffline, 1, true),
                ("v", Offline, 1, true),
                ("b", Offline, 1, true)
            ]
        );
        let st = d.stats();
        assert_eq!((st.vetoes_ignored, st.offlined, st.vetoed), (1, 1, 0));
    }
}

#[test]
fn errors_on_non_vetoable_events_are_ignored_and_counted() {
    let d = domain(LockKind::PerCpu);
    let log: Log = Default::default();
    let cb = Arc::new(Recorder {
        name: "grumpy",
        log: log.clone(),
        veto: None,
        fail_non_vetoable: true,
    });
    let _h = d.register_notifier(CallbackRef::Shared(cb), 0).unwrap();
    d.online_node(n(2)).unwrap();
    d.offline_node(n(2)).unwrap();
    assert_eq!(d.stats().callback_errors_ignored, 2);
    assert!(!d.states.has_memory().test(n(2)));
}

#[test]
fn stage_hook_fault_at_every_stage_rolls_back_exactly() {
    for kind in KINDS {
        for stage in Stage::ALL {
            let d = domain(kind);
            let log: Log = Default::default();
            let _a = d.register_notifier(shared(recorder("a", &log)), 2).unwrap();
            let _b = d.register_notifier(shared(recorder("b", &log)), 1).unwrap();
            // Offline tests take node 1 (boot, normal memory) down; online tests bring node 2 up.
            let (node, going, cancel) = if stage.is_online() {
                (n(2), MemoryEvent::GoingOnline, MemoryEvent::CancelOnline)
            } else {
                (n(1), MemoryEvent::GoingOffline, MemoryEvent::CancelOffline)
            };
            let seen: Arc<Mutex<Vec<Stage>>> = Default::default();
            {
                let seen = seen.clone();
                d.set_stage_hook(Some(Arc::new(move |s: Stage, nid: NodeId| {
                    assert_eq!(nid, node);
                    seen.lock().unwrap().push(s);
                    if s == stage {
                        Err(NotifyError::Injected)
                    } else {
                        Ok(())
                    }
                })));
            }
            let before = d.snapshot();
            let r = if stage.is_online() {
                d.online_node(node)
            } else {
                d.offline_node(node)
            };
            assert_eq!(
                r,
                Err(HotplugError::Aborted {
                    stage,
                    error: NotifyError::Injected
                }),
                "{kind:?} {stage}"
            );
            assert_eq!(d.snapshot(), before, "{kind:?} {stage}: state not restored");
            assert_eq!(
                events(&log),
                [("a", going), ("b", going), ("b", cancel), ("a", cancel)],
                "{kind:?} {stage}"
            );
            assert_eq!(d.stats().rolled_back, 1);
            assert_eq!(seen.lock().unwrap().last(), Some(&stage));

            // Forced offline: the veto is ignored but a controller fault still rolls back.
            if !stage.is_online() {
                log.lock().unwrap().clear();
                let r = d.offline_node_forced(node);
                assert!(matches!(r, Err(HotplugError::Aborted { .. })));
                assert_eq!(d.snapshot(), before);
                assert_eq!(events(&log).len(), 4);
            }

            // Without the hook the same operation goes through: the lock was released cleanly.
            d.set_stage_hook(None);
            if stage.is_online() {
                d.online_node(node).unwrap();
                assert!(d.states.has_memory().test(node));
            } else {
                d.offline_node(node).unwrap();
                assert!(!d.states.has_memory().test(node));
            }
        }
    }
}

#[test]
fn stage_hook_sees_the_masks_of_each_stage() {
    for kind in KINDS {
        let d = Arc::new(domain(kind));
        let seen: Arc<Mutex<Vec<(Stage, bool)>>> = Default::default();
        {
            let seen = seen.clone();
            let weak: Weak<HotplugDomain> = Arc::downgrade(&d);
            d.set_stage_hook(Some(Arc::new(move |s, nid| {
                let d = weak.upgrade().unwrap();
                // The hook runs on the writer's thread: its reads pass straight through.
                let _r = d.read();
                seen.lock()
                    .unwrap()
                    .push((s, d.states.has_memory().test(nid)));
                Ok(())
            })));
        }
        d.online_node(n(2)).unwrap();
        d.offline_node(n(2)).unwrap();
        d.set_stage_hook(None);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (Stage::OnlineAfterGoingOnline, false),
                (Stage::OnlineAfterMaskSet, true),
                (Stage::OfflineAfterGoingOffline, true),
                (Stage::OfflineAfterMaskClear, false)
            ]
        );
    }
}

/// A callback that re-enters the domain: reads the masks under the read side (passes through), tries a
/// nested hotplug operation (refused: busy), and registers another callback (no deadlock; it sees the
/// next operation only).
struct Reenter {
    domain: Mutex<Weak<HotplugDomain>>,
    log: Log,
    registered: AtomicBool,
    nested: Mutex<Vec<Result<(), HotplugError>>>,
}

impl MemoryCallback for Reenter {
    fn name(&self) -> &'static str {
        "reenter"
    }
    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        let d = self.domain.lock().unwrap().upgrade().unwrap();
        let _r = d.read();
        assert!(_r.is_writer_passthrough());
        let _snap = d.snapshot();
        if ev.event == MemoryEvent::GoingOnline {
            self.nested.lock().unwrap().push(d.online_node(n(3)));
            if !self.registered.swap(true, Relaxed) {
                // Stays registered: the handle is dropped (never used to unregister).
                let _ = d
                    .register_notifier(shared(recorder("late", &self.log)), 100)
                    .unwrap();
            }
        }
        Ok(())
    }
}

#[test]
fn callbacks_may_reenter_the_read_side_and_the_chain() {
    for kind in KINDS {
        let d = Arc::new(domain(kind));
        let log: Log = Default::default();
        let cb = Arc::new(Reenter {
            domain: Mutex::new(Arc::downgrade(&d)),
            log: log.clone(),
            registered: AtomicBool::new(false),
            nested: Mutex::new(Vec::new()),
        });
        let _h = d
            .register_notifier(CallbackRef::Shared(cb.clone()), 0)
            .unwrap();
        d.online_node(n(2)).unwrap();
        assert_eq!(*cb.nested.lock().unwrap(), [Err(HotplugError::Busy)]);
        assert!(
            events(&log).is_empty(),
            "late callback saw the running operation"
        );
        d.offline_node(n(2)).unwrap();
        use MemoryEvent::*;
        assert_eq!(events(&log), [("late", GoingOffline), ("late", Offline)]);
        assert_eq!(d.lock.stats().put_without_get, 0);
    }
}

#[test]
fn try_operations_report_busy_while_another_runs() {
    for kind in KINDS {
        let d = Arc::new(domain(kind));
        let w = d.lock.write();
        let d2 = d.clone();
        let r = thread::spawn(move || (d2.try_online_node(n(2)), d2.try_offline_node(n(1))))
            .join()
            .unwrap();
        assert_eq!(r, (Err(HotplugError::Busy), Err(HotplugError::Busy)));
        // The writer's own thread is refused too (it is mid-operation).
        assert_eq!(d.online_node(n(2)), Err(HotplugError::Busy));
        drop(w);
        d.try_online_node(n(2)).unwrap();
        d.try_offline_node(n(2)).unwrap();
    }
}

#[test]
fn masks_are_stable_while_the_read_side_is_held() {
    for kind in KINDS {
        let d = Arc::new(domain(kind));
        let r = d.read();
        let s1 = d.snapshot();
        let done = Arc::new(AtomicBool::new(false));
        let controller = {
            let (d, done) = (d.clone(), done.clone());
            thread::spawn(move || {
                d.online_node(n(2)).unwrap();
                d.offline_node(n(0)).unwrap();
                done.store(true, Relaxed);
            })
        };
        // Wait until the controller is observably blocked on the write side.
        while d.lock.writer_waits() == 0 && !done.load(Relaxed) {
            thread::yield_now();
        }
        assert!(!done.load(Relaxed));
        for _ in 0..100 {
            assert_eq!(d.snapshot(), s1, "masks changed under the read side");
            let _nested = d.read();
            assert_eq!(d.states.has_memory(), s1.has_memory);
            thread::yield_now();
        }
        drop(r);
        controller.join().unwrap();
        let s2 = d.snapshot();
        assert!(s2.has_memory.test(n(2)) && !s2.has_memory.test(n(0)));
        assert!(s2.is_consistent());
    }
}

#[test]
fn concurrent_transitions_and_readers_keep_masks_consistent() {
    for kind in KINDS {
        let d = Arc::new(domain(kind));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (d, stop) = (d.clone(), stop.clone());
                thread::spawn(move || {
                    let mut reads = 0u32;
                    while !stop.load(Relaxed) {
                        let _r = d.read();
                        let a = d.snapshot();
                        thread::yield_now();
                        assert_eq!(d.snapshot(), a);
                        assert!(a.is_consistent());
                        reads += 1;
                        drop(_r);
                        // Give the seed's writer a gap (readers can starve it: measured, not fixed).
                        thread::yield_now();
                    }
                    reads
                })
            })
            .collect();
        let writers: Vec<_> = [2u16, 3]
            .into_iter()
            .map(|id| {
                let d = d.clone();
                thread::spawn(move || {
                    for _ in 0..50 {
                        d.online_node(n(id)).unwrap();
                        d.offline_node(n(id)).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(d.stats().onlined, 100);
        assert_eq!(d.stats().offlined, 100);
    }
}

#[test]
fn default_domain_is_consistent_and_unique() {
    let d = hotslab_hotplug::default_domain();
    let s = d.snapshot();
    assert!(s.is_consistent());
    assert!(!s.has_memory.is_empty());
    assert!(std::ptr::eq(d, hotslab_hotplug::default_domain()));
    assert_eq!(d.lock.kind(), LockKind::default());
}

// ------------------------------------------------------------------------------------------------
// Pause points.

#[cfg(feature = "pause-points")]
#[test]
fn pause_points_call_the_hook_at_each_stage() {
    use hotslab_hotplug::pause;
    static SEEN: Mutex<Vec<(&'static str, u16)>> = Mutex::new(Vec::new());
    fn hook(name: &'static str, node: NodeId) {
        SEEN.lock().unwrap().push((name, node.0));
    }
    assert!(pause::enabled());
    // Use a node id no other test touches, since the hook is process-wide.
    let d = HotplugDomain::new(
        NodeMask::range(0, 64),
        NodeMask::single(n(0)),
        LockKind::Seed,
    );
    assert!(pause::set_hook(Some(hook)).is_none());
    d.online_node(n(63)).unwrap();
    d.offline_node(n(63)).unwrap();
    pause::set_hook(None);
    let seen: Vec<_> = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.1 == 63)
        .copied()
        .collect();
    assert_eq!(
        seen,
        [
            ("online:after-going-online", 63),
            ("online:after-mask-set", 63),
            ("offline:after-going-offline", 63),
            ("offline:after-mask-clear", 63)
        ]
    );
}

#[cfg(not(feature = "pause-points"))]
#[test]
fn pause_points_compile_to_nothing_without_the_feature() {
    use hotslab_hotplug::pause;
    fn hook(_: &'static str, _: NodeId) {
        panic!("pause hook called without the feature");
    }
    assert!(!pause::enabled());
    assert!(pause::set_hook(Some(hook)).is_none());
    let d = domain(LockKind::Seed);
    d.online_node(n(2)).unwrap();
    assert!(pause::set_hook(None).is_none());
}
