//! Node state masks (the kernel's `node_states[]`): possible, online, has-memory (N_MEMORY) and
//! has-normal-memory (N_NORMAL_MEMORY), read as one consistent snapshot. Only the controller changes them,
//! and only while it holds the online-mems write side; this file knows nothing of the lock or notifiers.

use crate::sync::{self, Mutex};
use crate::{NodeId, NodeMask};

/// One node state class, as in the kernel's `enum node_states`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// The node may ever exist (`N_POSSIBLE`).
    Possible,
    /// The node is online (`N_ONLINE`); it stays online when its memory goes offline.
    Online,
    /// The node has memory of any zone (`N_MEMORY`). hotslab's per-node parts follow this mask.
    HasMemory,
    /// The node has memory in a normal (non-movable) zone (`N_NORMAL_MEMORY`); hot-added nodes never do.
    HasNormalMemory,
}

/// The four masks at one instant. Consistent: `has_normal_memory ⊆ has_memory ⊆ online ⊆ possible`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStateSnapshot {
    /// Nodes that may ever exist.
    pub possible: NodeMask,
    /// Nodes that are online.
    pub online: NodeMask,
    /// Nodes with memory (`N_MEMORY`).
    pub has_memory: NodeMask,
    /// Nodes with normal (non-movable) memory (`N_NORMAL_MEMORY`).
    pub has_normal_memory: NodeMask,
}

impl NodeStateSnapshot {
    /// Boot state: `possible`, with the nodes of `with_memory` online and holding normal memory (memory
    /// present at boot is normal memory).
    pub fn boot(possible: NodeMask, with_memory: NodeMask) -> Self {
        let with_memory = with_memory.intersection(&possible);
        NodeStateSnapshot {
            possible,
            online: with_memory,
            has_memory: with_memory,
            has_normal_memory: with_memory,
        }
    }

    /// The mask of one state class.
    pub fn mask(&self, which: NodeState) -> NodeMask {
        match which {
            NodeState::Possible => self.possible,
            NodeState::Online => self.online,
            NodeState::HasMemory => self.has_memory,
            NodeState::HasNormalMemory => self.has_normal_memory,
        }
    }

    /// `node_state(nid, which)`.
    pub fn test(&self, which: NodeState, nid: NodeId) -> bool {
        self.mask(which).test(nid)
    }

    /// Do the masks nest as they must (`has_normal_memory ⊆ has_memory ⊆ online ⊆ possible`)?
    pub fn is_consistent(&self) -> bool {
        self.has_normal_memory.is_subset(&self.has_memory)
            && self.has_memory.is_subset(&self.online)
            && self.online.is_subset(&self.possible)
    }
}

/// The node state masks of one hotplug domain.
///
/// Readers get a whole [`NodeStateSnapshot`] (never a torn one) at any time; the snapshot is *stable*
/// — equal to every other snapshot taken — for as long as the reader holds the domain's online-mems read
/// side, because the controller changes the masks only under the write side.
///
/// ```
/// use hotslab_hotplug::{NodeId, NodeMask, NodeState, NodeStates, NodeStateSnapshot};
///
/// let possible = NodeMask::range(0, 4); // nodes 0-3
/// let states = NodeStates::new(NodeStateSnapshot::boot(possible, NodeMask::single(NodeId::new(0))));
/// let s = states.snapshot();
/// assert!(s.test(NodeState::HasMemory, NodeId::new(0)));
/// assert!(!s.test(NodeState::Online, NodeId::new(2)));
/// assert!(s.is_consistent());
/// ```
pub struct NodeStates {
    // A mutex rather than a seqlock of atomics: a snapshot is 512 bytes copied under a briefly held lock,
    // cheap enough off the fast path, trivially untorn, and one scheduling point under loom.
    masks: Mutex<NodeStateSnapshot>,
}

impl NodeStates {
    /// Masks starting at `initial`.
    pub fn new(initial: NodeStateSnapshot) -> Self {
        NodeStates {
            masks: Mutex::new(initial),
        }
    }

    /// All four masks at one instant.
    pub fn snapshot(&self) -> NodeStateSnapshot {
        *sync::lock(&self.masks)
    }

    /// Nodes that may ever exist.
    pub fn possible(&self) -> NodeMask {
        sync::lock(&self.masks).possible
    }

    /// Nodes that are online.
    pub fn online(&self) -> NodeMask {
        sync::lock(&self.masks).online
    }

    /// Nodes with memory (`N_MEMORY`): the mask per-node parts follow.
    pub fn has_memory(&self) -> NodeMask {
        sync::lock(&self.masks).has_memory
    }

    /// Nodes with normal memory (`N_NORMAL_MEMORY`).
    pub fn has_normal_memory(&self) -> NodeMask {
        sync::lock(&self.masks).has_normal_memory
    }

    /// `node_state(nid, which)`.
    pub fn test(&self, which: NodeState, nid: NodeId) -> bool {
        sync::lock(&self.masks).test(which, nid)
    }

    /// Controller only (write side held): `nid` gains memory — online and has-memory, plus has-normal if
    /// `normal`. Returns the masks as they were, for rollback.
    pub(crate) fn set_has_memory(&self, nid: NodeId, normal: bool) -> NodeStateSnapshot {
        let mut m = sync::lock(&self.masks);
        let before = *m;
        m.online.set(nid);
        m.has_memory.set(nid);
        if normal {
            m.has_normal_memory.set(nid);
        }
        before
    }

    /// Controller only (write side held): `nid` loses its memory; it stays online, as Linux keeps a node
    /// online when its memory blocks go offline. Returns the masks as they were, for rollback.
    pub(crate) fn clear_has_memory(&self, nid: NodeId) -> NodeStateSnapshot {
        let mut m = sync::lock(&self.masks);
        let before = *m;
        m.has_memory.clear(nid);
        m.has_normal_memory.clear(nid);
        before
    }

    /// Controller only (write side held): put back masks returned by a setter.
    pub(crate) fn restore(&self, before: NodeStateSnapshot) {
        *sync::lock(&self.masks) = before;
    }

    /// Holds the masks' lock until the guard is dropped: a `fork` prepare handler takes it so that
    /// no thread is inside a mask read when the process forks (the child would find it locked).
    pub fn lock_for_fork(&self) -> sync::MutexGuard<'_, NodeStateSnapshot> {
        sync::lock(&self.masks)
    }
}

impl core::fmt::Debug for NodeStates {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("NodeStates")
            .field("possible", &s.possible)
            .field("online", &s.online)
            .field("has_memory", &s.has_memory)
            .field("has_normal_memory", &s.has_normal_memory)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn n(id: u16) -> NodeId {
        NodeId::new(id)
    }

    #[test]
    fn setters_keep_the_masks_nested_and_restore_is_exact() {
        let states = NodeStates::new(NodeStateSnapshot::boot(
            NodeMask::range(0, 8),
            NodeMask::single(n(0)),
        ));
        let boot = states.snapshot();
        assert!(boot.is_consistent());

        let before = states.set_has_memory(n(5), false);
        assert_eq!(before, boot);
        let s = states.snapshot();
        assert!(s.online.test(n(5)) && s.has_memory.test(n(5)) && !s.has_normal_memory.test(n(5)));
        assert!(s.is_consistent());

        let before_clear = states.clear_has_memory(n(0));
        assert_eq!(before_clear, s);
        let s2 = states.snapshot();
        assert!(s2.online.test(n(0)), "node stays online");
        assert!(!s2.has_memory.test(n(0)) && !s2.has_normal_memory.test(n(0)));
        assert!(s2.is_consistent());

        states.restore(before_clear);
        assert_eq!(states.snapshot(), s);
        states.restore(before);
        assert_eq!(states.snapshot(), boot);
        assert!(states.test(NodeState::HasNormalMemory, n(0)));
    }

    #[test]
    fn boot_clips_memory_to_possible_and_detects_inconsistency() {
        let s = NodeStateSnapshot::boot(NodeMask::range(0, 2), NodeMask::range(0, 4));
        assert_eq!(s.has_memory, NodeMask::range(0, 2));
        assert!(s.is_consistent());
        let bad = NodeStateSnapshot {
            has_normal_memory: NodeMask::single(n(3)),
            ..s
        };
        assert!(!bad.is_consistent());
        assert_eq!(s.mask(NodeState::Possible), s.possible);
    }
}
