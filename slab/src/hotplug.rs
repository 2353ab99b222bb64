//! The slab memory notifier (`slab_memory_callback`): gives every cache a part when a node comes
//! online, drains and retires them when it goes offline, and undoes either on CANCEL_*.
//! It runs inside the hotplug writer (online-mems write side held) and takes `slab_mutex`, then
//! thread-cache and part locks; it never allocates through the global allocator.

use std::sync::atomic::Ordering as StdOrdering;
use std::time::{Duration, Instant};

use hotslab_hotplug::{MemoryEvent, MemoryNotify, NotifyError};
use hotslab_numa::NodeId;

use crate::cache::CacheInner;
use crate::domain::{LockingMode, SlabDomain};
use crate::heap::{self as thread, ThreadCache};
use crate::node::{NodePart, PartState};
use crate::sync::Ordering;

pub(crate) fn handle(d: &SlabDomain, ev: &MemoryNotify) -> Result<(), NotifyError> {
    let nid = ev.node;
    match ev.event {
        MemoryEvent::GoingOnline => going_online(d, nid),
        MemoryEvent::CancelOnline => {
            cancel_online(d, nid);
            Ok(())
        }
        MemoryEvent::Online => {
            // Committed large mappings freed while the node was away may hold pages the kernel
            // migrated elsewhere: a reuse on the returning node must fault fresh pages.
            crate::kmalloc::LARGE.decommit_dirty(d.page_source());
            Ok(())
        }
        MemoryEvent::GoingOffline => going_offline(d, nid, ev.forced),
        MemoryEvent::CancelOffline => {
            set_parts(d, nid, PartState::Draining, PartState::Live);
            Ok(())
        }
        MemoryEvent::Offline => {
            offline(d, nid);
            Ok(())
        }
    }
}

/// GOING_ONLINE: every cache on the list gets a live part for `nid` (SlabNodes: then the node
/// joins `slab_nodes`). A failure vetoes; the chain then sends CANCEL_ONLINE, which undoes.
fn going_online(d: &SlabDomain, nid: NodeId) -> Result<(), NotifyError> {
    let mut reg = d.registry();
    let mut result = Ok(());
    SlabDomain::for_each_cache(&reg, |c| {
        if result.is_ok() {
            result = d.ensure_part_for(c, nid);
        }
    });
    if result.is_err() {
        // The vetoing callback gets no CANCEL_ONLINE of its own: undo here.
        drop(reg);
        cancel_online(d, nid);
        return result;
    }
    if d.mode() == LockingMode::SlabNodes {
        d.set_slab_node(&mut reg, nid, true);
    }
    result
}

fn cancel_online(d: &SlabDomain, nid: NodeId) {
    let mut reg = d.registry();
    SlabDomain::for_each_cache(&reg, |c| {
        let p = c.part(nid);
        if p.is_null() {
            return;
        }
        // SAFETY: parts live as long as the cache.
        let part = unsafe { &*p };
        let (gen, st) = part.snapshot();
        if st == PartState::Live {
            if part.nr_slabs.load(Ordering::Relaxed) == 0 && d.mode() != LockingMode::SlabNodes {
                part.retire(gen);
            } else {
                // Back to where it was: a part kept alive only by objects from before (a forced
                // offline's leftovers) drains again and retires when its last slab goes.
                part.transition(gen, PartState::Live, PartState::Draining);
                part.offlined.store(true, StdOrdering::Release);
                let lists = part.lock();
                if lists.nr_slabs() == 0 {
                    drop(lists);
                    d.part_drained(c, part);
                }
            }
        }
    });
    if d.mode() == LockingMode::SlabNodes {
        d.set_slab_node(&mut reg, nid, false);
    }
}

/// Moves every cache's part on `nid` from `from` to `to`.
fn set_parts(d: &SlabDomain, nid: NodeId, from: PartState, to: PartState) {
    let reg = d.registry();
    SlabDomain::for_each_cache(&reg, |c| {
        let p = c.part(nid);
        if !p.is_null() {
            // SAFETY: parts live as long as the cache.
            let part = unsafe { &*p };
            let (gen, st) = part.snapshot();
            if st == from {
                part.transition(gen, from, to);
            }
        }
    });
}

/// GOING_OFFLINE: stop new slabs on `nid`, take its slabs back from thread caches, shrink it;
/// if objects stay live beyond the drain timeout, refuse (unless forced).
fn going_offline(d: &SlabDomain, nid: NodeId, forced: bool) -> Result<(), NotifyError> {
    set_parts(d, nid, PartState::Live, PartState::Draining);
    let deadline = Instant::now() + d.config.drain_timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        let live = drain_node(d, nid);
        if live == 0 || forced {
            return Ok(());
        }
        if Instant::now() >= deadline {
            // The vetoing callback gets no CANCEL_OFFLINE of its own: undo here.
            set_parts(d, nid, PartState::Draining, PartState::Live);
            return Err(NotifyError::Busy);
        }
        // A bounded drain wait for other threads to free their objects (not a test sleep).
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Revokes thread caches that own slabs of `nid`, shrinks `nid` in every cache, and returns the
/// objects still live there.
fn drain_node(d: &SlabDomain, nid: NodeId) -> usize {
    let reg = d.registry();
    let mut live = 0;
    SlabDomain::for_each_cache(&reg, |c| {
        let p = c.part(nid);
        if p.is_null() {
            return;
        }
        // SAFETY: parts live as long as the cache.
        let part = unsafe { &*p };
        revoke_owners(c, part);
        c.shrink_part(part);
        live += c.part_in_use(part);
    });
    live
}

/// Revokes every thread cache that owns a slab of `part`. The owners are collected under the
/// part's lock and revoked after it is dropped (a revoker never waits while holding it).
fn revoke_owners(c: &CacheInner, part: &NodePart) {
    loop {
        let mut owners: [usize; 32] = [0; 32];
        let mut n = 0;
        {
            let lists = part.lock();
            for s in lists.owned.iter() {
                if n == owners.len() {
                    break;
                }
                // SAFETY: list members are valid under the lock.
                owners[n] = unsafe { (*s).tc.load(Ordering::Acquire) };
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        for &o in &owners[..n] {
            if o != 0 {
                // SAFETY: owned slabs name their ThreadCache, which lives as long as the cache.
                thread::revoke(c, unsafe { &*(o as *const ThreadCache) });
            }
        }
        // Owners revoked above cannot acquire slabs here again (the part is draining); loop
        // until the owned list is empty.
        let again = !part.lock().owned.head().is_null();
        if !again {
            return;
        }
    }
}

/// OFFLINE: the node has left the masks. Legacy/OnlineMems retire the node's parts (a part with
/// live objects after a forced offline keeps draining and retires when empty); SlabNodes parks
/// them and drops the node from `slab_nodes`.
fn offline(d: &SlabDomain, nid: NodeId) {
    // Committed large mappings cached for reuse may have had their pages migrated off `nid`:
    // decommit them, so a reuse faults fresh pages where its policy says.
    crate::kmalloc::LARGE.decommit_dirty(d.page_source());
    let mut reg = d.registry();
    let slab_nodes = d.mode() == LockingMode::SlabNodes;
    SlabDomain::for_each_cache(&reg, |c| {
        let p = c.part(nid);
        if p.is_null() {
            return;
        }
        // SAFETY: parts live as long as the cache.
        let part = unsafe { &*p };
        let (gen, st) = part.snapshot();
        if slab_nodes {
            if st == PartState::Live {
                part.transition(gen, PartState::Live, PartState::Draining);
            }
            return;
        }
        if st == PartState::Retired {
            // Someone retired it before OFFLINE did: the Legacy destroy race.
            d.violations
                .double_retire
                .fetch_add(1, StdOrdering::Relaxed);
            return;
        }
        // Frees may have landed since the drain: give empty slabs back before deciding (a
        // draining part whose last slab goes is retired by that settle).
        c.shrink_part(part);
        let (gen, st) = part.snapshot();
        if st == PartState::Retired {
            return;
        }
        if part.nr_slabs.load(Ordering::Relaxed) > 0 {
            // Forced offline with live objects: keep draining; retired by the last free's settle.
            if st == PartState::Live {
                part.transition(gen, PartState::Live, PartState::Draining);
            }
            let lists = part.lock();
            if lists.nr_slabs() > 0 {
                part.offlined.store(true, StdOrdering::Release);
                return;
            }
            // The last slab went while we looked: retire it here.
            drop(lists);
            let (gen, _) = part.snapshot();
            if !part.retire(gen) {
                d.violations
                    .double_retire
                    .fetch_add(1, StdOrdering::Relaxed);
            }
            return;
        }
        if !part.retire(gen) {
            d.violations
                .double_retire
                .fetch_add(1, StdOrdering::Relaxed);
        }
    });
    if slab_nodes {
        d.set_slab_node(&mut reg, nid, false);
    }
}
