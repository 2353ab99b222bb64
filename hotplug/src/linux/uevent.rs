//! Kernel uevent messages (NETLINK_KOBJECT_UEVENT, group 1): parses one datagram into its action, device
//! path and subsystem, and classifies the devices the hotplug backend cares about (memory blocks and NUMA
//! nodes). Pure byte parsing: it owns no socket and never touches sysfs or a hotplug domain.

use crate::NodeId;
use core::fmt;

/// What happened to the device (`ACTION=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UeventAction {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `change`
    Change,
    /// `move`
    Move,
    /// `online`
    Online,
    /// `offline`
    Offline,
    /// `bind`
    Bind,
    /// `unbind`
    Unbind,
    /// Anything else the kernel may add later.
    Other,
}

impl UeventAction {
    /// Parses the action word (`add`, `online`, ...).
    pub fn from_bytes(s: &[u8]) -> UeventAction {
        match s {
            b"add" => UeventAction::Add,
            b"remove" => UeventAction::Remove,
            b"change" => UeventAction::Change,
            b"move" => UeventAction::Move,
            b"online" => UeventAction::Online,
            b"offline" => UeventAction::Offline,
            b"bind" => UeventAction::Bind,
            b"unbind" => UeventAction::Unbind,
            _ => UeventAction::Other,
        }
    }

    /// The action word.
    pub fn as_str(self) -> &'static str {
        match self {
            UeventAction::Add => "add",
            UeventAction::Remove => "remove",
            UeventAction::Change => "change",
            UeventAction::Move => "move",
            UeventAction::Online => "online",
            UeventAction::Offline => "offline",
            UeventAction::Bind => "bind",
            UeventAction::Unbind => "unbind",
            UeventAction::Other => "other",
        }
    }
}

/// The device a uevent is about, as far as memory hotplug is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UeventDevice {
    /// `/devices/system/memory/memoryN` (SUBSYSTEM=memory): memory block `N`.
    MemoryBlock(u32),
    /// `/devices/system/node/nodeK` (SUBSYSTEM=node): NUMA node `K`.
    Node(NodeId),
    /// Any other device.
    Other,
}

/// One parsed kernel uevent; borrows the datagram it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uevent<'a> {
    /// `ACTION=` (or the header's action if the variable is missing).
    pub action: UeventAction,
    /// `DEVPATH=` (or the header's path), e.g. `/devices/system/memory/memory32`.
    pub devpath: &'a [u8],
    /// `SUBSYSTEM=`, if present.
    pub subsystem: Option<&'a [u8]>,
    /// `SEQNUM=`, if present and numeric.
    pub seqnum: Option<u64>,
    /// The device class, from the path and subsystem.
    pub device: UeventDevice,
}

impl Uevent<'_> {
    /// Does this event change which nodes have memory? Memory blocks and nodes being added, removed,
    /// onlined or offlined (and `change` of a block, which some kernels send on state changes).
    pub fn is_hotplug_relevant(&self) -> bool {
        use UeventAction::*;
        match self.device {
            UeventDevice::MemoryBlock(_) => {
                matches!(self.action, Add | Remove | Online | Offline | Change)
            }
            UeventDevice::Node(_) => matches!(self.action, Add | Remove | Online | Offline),
            UeventDevice::Other => false,
        }
    }
}

/// Why a datagram is not a kernel uevent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UeventError {
    /// Empty datagram.
    Empty,
    /// A udev (libudev) monitor message, not the kernel's.
    Udev,
    /// No `action@devpath` header.
    NoHeader,
    /// The header and the `ACTION=`/`DEVPATH=` variables disagree.
    Inconsistent,
}

impl fmt::Display for UeventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UeventError::Empty => "empty datagram",
            UeventError::Udev => "udev monitor message",
            UeventError::NoHeader => "no action@devpath header",
            UeventError::Inconsistent => "header and variables disagree",
        })
    }
}

impl std::error::Error for UeventError {}

/// Parses one kernel uevent datagram: `action@devpath\0KEY=VALUE\0KEY=VALUE\0...`. Borrows from
/// `msg`; allocates nothing. Unknown actions, devices and variables are kept as "other", not errors.
///
/// # Errors
/// [`UeventError::Empty`] for an empty datagram, [`UeventError::Udev`] for a libudev monitor
/// message (`libudev\0` magic), [`UeventError::NoHeader`] without an `action@devpath` header, and
/// [`UeventError::Inconsistent`] when `ACTION=`/`DEVPATH=` contradict the header.
///
/// ```
/// use hotslab_hotplug::linux::uevent::{parse, UeventAction, UeventDevice};
/// let msg = b"online@/devices/system/memory/memory32\0ACTION=online\0\
///             DEVPATH=/devices/system/memory/memory32\0SUBSYSTEM=memory\0SEQNUM=1234\0";
/// let ev = parse(msg).unwrap();
/// assert_eq!(ev.action, UeventAction::Online);
/// assert_eq!(ev.device, UeventDevice::MemoryBlock(32));
/// assert_eq!(ev.seqnum, Some(1234));
/// assert!(ev.is_hotplug_relevant());
/// ```
pub fn parse(msg: &[u8]) -> Result<Uevent<'_>, UeventError> {
    if msg.is_empty() {
        return Err(UeventError::Empty);
    }
    if msg.starts_with(b"libudev\0") {
        return Err(UeventError::Udev);
    }
    let mut fields = msg.split(|&b| b == 0).filter(|f| !f.is_empty());
    let header = fields.next().ok_or(UeventError::NoHeader)?;
    let at = header
        .iter()
        .position(|&b| b == b'@')
        .ok_or(UeventError::NoHeader)?;
    let (h_action, h_path) = (&header[..at], &header[at + 1..]);
    if h_action.is_empty() || !h_path.starts_with(b"/") {
        return Err(UeventError::NoHeader);
    }
    let (mut action, mut devpath, mut subsystem, mut seqnum) = (None, None, None, None);
    for f in fields {
        if let Some(v) = f.strip_prefix(b"ACTION=") {
            action = Some(v);
        } else if let Some(v) = f.strip_prefix(b"DEVPATH=") {
            devpath = Some(v);
        } else if let Some(v) = f.strip_prefix(b"SUBSYSTEM=") {
            subsystem = Some(v);
        } else if let Some(v) = f.strip_prefix(b"SEQNUM=") {
            seqnum = parse_u64(v);
        }
    }
    if action.is_some_and(|a| a != h_action) || devpath.is_some_and(|p| p != h_path) {
        return Err(UeventError::Inconsistent);
    }
    let action = UeventAction::from_bytes(h_action);
    let device = classify(h_path, subsystem);
    Ok(Uevent {
        action,
        devpath: h_path,
        subsystem,
        seqnum,
        device,
    })
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// `<prefix><decimal>` with nothing after the number.
fn numbered(path: &[u8], prefix: &[u8]) -> Option<u64> {
    parse_u64(path.strip_prefix(prefix)?)
}

fn classify(path: &[u8], subsystem: Option<&[u8]>) -> UeventDevice {
    // A missing SUBSYSTEM is tolerated (the path alone is unambiguous); a different one is not ours.
    let sub_is = |want: &[u8]| subsystem.is_none_or(|s| s == want);
    if let Some(n) = numbered(path, b"/devices/system/memory/memory") {
        if sub_is(b"memory") {
            if let Ok(n) = u32::try_from(n) {
                return UeventDevice::MemoryBlock(n);
            }
        }
    }
    if let Some(k) = numbered(path, b"/devices/system/node/node") {
        if sub_is(b"node") {
            if let Ok(k) = u16::try_from(k) {
                let nid = NodeId::new(k);
                if nid.is_valid() {
                    return UeventDevice::Node(nid);
                }
            }
        }
    }
    UeventDevice::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a datagram the way the kernel lays it out.
    fn msg(action: &str, path: &str, subsystem: &str, seq: u64) -> Vec<u8> {
        format!(
            "{action}@{path}\0ACTION={action}\0DEVPATH={path}\0SUBSYSTEM={subsystem}\0SEQNUM={seq}\0"
        )
        .into_bytes()
    }

    #[test]
    fn memory_block_and_node_events() {
        for (a, want) in [
            ("add", UeventAction::Add),
            ("online", UeventAction::Online),
            ("offline", UeventAction::Offline),
            ("remove", UeventAction::Remove),
        ] {
            let m = msg(a, "/devices/system/memory/memory35", "memory", 7);
            let ev = parse(&m).unwrap();
            assert_eq!(ev.action, want);
            assert_eq!(ev.device, UeventDevice::MemoryBlock(35));
            assert_eq!(ev.devpath, b"/devices/system/memory/memory35");
            assert_eq!(ev.subsystem, Some(&b"memory"[..]));
            assert!(ev.is_hotplug_relevant());
        }
        let m = msg("add", "/devices/system/node/node2", "node", 9);
        let ev = parse(&m).unwrap();
        assert_eq!(ev.device, UeventDevice::Node(NodeId::new(2)));
        assert!(ev.is_hotplug_relevant());
        let m = msg("change", "/devices/system/node/node2", "node", 9);
        let ev = parse(&m).unwrap();
        assert!(!ev.is_hotplug_relevant());
    }

    #[test]
    fn other_devices_are_not_relevant() {
        for (path, sub) in [
            ("/devices/system/cpu/cpu1", "cpu"),
            (
                "/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A06:00/PNP0C80:00",
                "acpi",
            ),
            ("/devices/system/memory/memory32/extra", "memory"),
            ("/devices/system/memory/memory", "memory"),
            ("/devices/system/memory/memory32", "cpu"),
            ("/devices/system/node/node9999", "node"),
            ("/devices/system/node/nodex", "node"),
        ] {
            let m = msg("add", path, sub, 1);
            let ev = parse(&m).unwrap();
            assert_eq!(ev.device, UeventDevice::Other, "{path}");
            assert!(!ev.is_hotplug_relevant());
        }
    }

    #[test]
    fn header_only_and_missing_subsystem_still_classify() {
        let ev = parse(b"remove@/devices/system/memory/memory40\0").unwrap();
        assert_eq!(ev.action, UeventAction::Remove);
        assert_eq!(ev.device, UeventDevice::MemoryBlock(40));
        assert_eq!((ev.subsystem, ev.seqnum), (None, None));
    }

    #[test]
    fn malformed_and_foreign_messages_are_rejected() {
        assert_eq!(parse(b""), Err(UeventError::Empty));
        assert_eq!(
            parse(b"libudev\0\xfe\xed\xca\xfe...."),
            Err(UeventError::Udev)
        );
        assert_eq!(parse(b"ACTION=add\0"), Err(UeventError::NoHeader));
        assert_eq!(parse(b"@/devices\0"), Err(UeventError::NoHeader));
        assert_eq!(parse(b"add@devices\0"), Err(UeventError::NoHeader));
        assert_eq!(
            parse(b"add@/devices/system/node/node2\0ACTION=remove\0"),
            Err(UeventError::Inconsistent)
        );
        assert_eq!(
            parse(b"add@/devices/system/node/node2\0DEVPATH=/devices/system/node/node3\0"),
            Err(UeventError::Inconsistent)
        );
        // A bad SEQNUM is dropped, not fatal.
        let ev = parse(b"add@/devices/system/node/node2\0SEQNUM=12x\0").unwrap();
        assert_eq!(ev.seqnum, None);
        let ev =
            parse(b"add@/devices/system/node/node2\0SEQNUM=99999999999999999999999\0").unwrap();
        assert_eq!(ev.seqnum, None);
    }

    #[test]
    fn unknown_action_is_other() {
        let m = msg("frobnicate", "/devices/system/node/node1", "node", 3);
        let ev = parse(&m).unwrap();
        assert_eq!(ev.action, UeventAction::Other);
        assert!(!ev.is_hotplug_relevant());
        for a in [
            UeventAction::Add,
            UeventAction::Remove,
            UeventAction::Change,
            UeventAction::Move,
            UeventAction::Online,
            UeventAction::Offline,
            UeventAction::Bind,
            UeventAction::Unbind,
        ] {
            assert_eq!(UeventAction::from_bytes(a.as_str().as_bytes()), a);
        }
    }
}
