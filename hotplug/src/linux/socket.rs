//! The event sockets of the Linux backend: a NETLINK_KOBJECT_UEVENT socket bound to the kernel's
//! multicast group 1 (no udev involved), or any datagram socket carrying recorded uevents (tests and
//! replays), plus the eventfd that wakes the follower thread. Raw libc calls only; no parsing here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The kernel's uevent multicast group (`udev` listens to group 2, which carries its own re-broadcasts).
const KERNEL_GROUP: u32 = 1;

/// One receive attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recv {
    /// A datagram of this many bytes is in the buffer.
    Message(usize),
    /// A datagram longer than the buffer: its tail was cut off.
    Truncated,
    /// Nothing queued.
    Empty,
    /// The kernel dropped messages because the socket buffer was full (ENOBUFS).
    Overflow,
    /// A datagram not sent by the kernel (netlink port id ≠ 0): dropped.
    Foreign,
    /// A replay socket whose peer closed (end of file; never seen on netlink).
    Closed,
}

/// A datagram socket the follower reads uevents from.
#[derive(Debug)]
pub(crate) struct EventSocket {
    fd: OwnedFd,
    /// Netlink: check that each datagram comes from the kernel (port id 0).
    netlink: bool,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

impl EventSocket {
    /// Opens a non-blocking NETLINK_KOBJECT_UEVENT socket bound to the kernel's group, asking for a
    /// receive buffer of `rcvbuf` bytes (SO_RCVBUFFORCE when privileged, else SO_RCVBUF, capped by
    /// `net.core.rmem_max`).
    pub(crate) fn netlink(rcvbuf: usize) -> io::Result<EventSocket> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(last_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: `size` is a live c_int and its size is passed; setsockopt only reads it.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    core::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = 0; // let the kernel assign the port id
        addr.nl_groups = KERNEL_GROUP;
        // SAFETY: `addr` is a valid sockaddr_nl and its exact size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                core::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(last_error());
        }
        Ok(EventSocket { fd, netlink: true })
    }

    /// Wraps any datagram socket (e.g. one end of a `UnixDatagram` pair); made non-blocking.
    pub(crate) fn datagram(fd: OwnedFd) -> io::Result<EventSocket> {
        set_nonblocking(fd.as_raw_fd())?;
        Ok(EventSocket { fd, netlink: false })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Receives one datagram into `buf` without blocking.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Recv> {
        loop {
            // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
            let mut addr: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
            let mut alen = core::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            let (addr_ptr, alen_ptr) = if self.netlink {
                (
                    (&mut addr as *mut libc::sockaddr_nl).cast::<libc::sockaddr>(),
                    &mut alen as *mut libc::socklen_t,
                )
            } else {
                (core::ptr::null_mut(), core::ptr::null_mut())
            };
            // SAFETY: `buf` is writable for `buf.len()` bytes; `addr`/`alen` are live and sized (or null,
            // which recvfrom accepts). MSG_TRUNC makes the return value the full datagram length.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    addr_ptr,
                    alen_ptr,
                )
            };
            if n < 0 {
                let e = last_error();
                return match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => Ok(Recv::Empty),
                    Some(libc::ENOBUFS) => Ok(Recv::Overflow),
                    _ => Err(e),
                };
            }
            let n = n as usize;
            if n == 0 && !self.netlink {
                return Ok(Recv::Closed);
            }
            if self.netlink && addr.nl_pid != 0 {
                return Ok(Recv::Foreign);
            }
            if n > buf.len() {
                return Ok(Recv::Truncated);
            }
            return Ok(Recv::Message(n));
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(last_error());
    }
    // SAFETY: as above; F_SETFL takes an int of flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(last_error());
    }
    Ok(())
}

/// An eventfd that wakes the follower thread (stop, rescan request).
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2) call; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(last_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the descriptor readable.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of a live u64 to our eventfd. It can only fail if the counter
        // would overflow (then it is readable anyway).
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Clears the readable state.
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd; EAGAIN is fine.
        unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8);
        }
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes (-1: no timeout). Returns which were
/// readable (EINTR counts as a timeout: the caller's loop re-checks its deadlines).
pub(crate) fn poll_readable<const N: usize>(
    fds: [Option<RawFd>; N],
    timeout_ms: i32,
) -> io::Result<[bool; N]> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; N];
    for (p, fd) in pfds.iter_mut().zip(fds) {
        // A negative fd is ignored by poll(2).
        p.fd = fd.unwrap_or(-1);
        p.events = libc::POLLIN;
    }
    // SAFETY: `pfds` is a live array of N pollfd structures.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = last_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok([false; N]);
        }
        return Err(e);
    }
    let mut out = [false; N];
    for (o, p) in out.iter_mut().zip(pfds.iter()) {
        *o = p.fd >= 0 && p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    #[cfg_attr(miri, ignore)] // sockets, eventfd and poll are not supported by Miri
    fn datagram_socket_receives_and_reports_empty_and_truncation() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let s = EventSocket::datagram(OwnedFd::from(b)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.recv(&mut buf).unwrap(), Recv::Empty);
        a.send(b"add@/x\0").unwrap();
        assert_eq!(
            poll_readable([Some(s.raw())], 1000).unwrap(),
            [true],
            "a queued datagram makes the socket readable"
        );
        assert_eq!(s.recv(&mut buf).unwrap(), Recv::Message(7));
        assert_eq!(&buf[..7], b"add@/x\0");
        a.send(&[b'x'; 40]).unwrap();
        assert_eq!(s.recv(&mut buf).unwrap(), Recv::Truncated);
        assert_eq!(s.recv(&mut buf).unwrap(), Recv::Empty);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // sockets, eventfd and poll are not supported by Miri
    fn waker_wakes_poll_and_drains() {
        let w = Waker::new().unwrap();
        assert_eq!(poll_readable([Some(w.raw())], 0).unwrap(), [false]);
        w.wake();
        w.wake();
        assert_eq!(
            poll_readable([None, Some(w.raw())], 1000).unwrap(),
            [false, true]
        );
        w.drain();
        assert_eq!(poll_readable([Some(w.raw())], 0).unwrap(), [false]);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // sockets, eventfd and poll are not supported by Miri
    fn netlink_uevent_socket_opens_where_the_kernel_allows_it() {
        // Containers may forbid NETLINK_KOBJECT_UEVENT; then the error is the kernel's, not a panic.
        match EventSocket::netlink(1 << 20) {
            Ok(s) => {
                let mut buf = [0u8; 8192];
                // Usually nothing is queued; any kernel datagram must parse as a message.
                let r = s.recv(&mut buf).unwrap();
                assert!(matches!(r, Recv::Empty | Recv::Message(_)), "{r:?}");
            }
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
    }
}
