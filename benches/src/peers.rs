//! The allocators compared in every bench, as statics, and the macros that run one piece of
//! generic code (`A: GlobalAlloc`) once per allocator in the same process. Only the benches'
//! choice of peers lives here; hotslab's own code is used through its public API only.

use std::alloc::System;

/// hotslab's `GlobalAlloc` (the process-wide default domain).
pub static HOTSLAB: hotslab::SlabAlloc = hotslab::SlabAlloc::new();
/// The system allocator (glibc malloc on this machine).
pub static SYSTEM: System = System;
/// mimalloc.
pub static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// jemalloc (prefixed symbols: it does not replace malloc in this process).
pub static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// snmalloc (only with the `snmalloc` feature).
#[cfg(feature = "snmalloc")]
pub static SNMALLOC: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

/// Names of the peers, in report order; `hotslab` is the reference of every ratio.
#[cfg(not(feature = "snmalloc"))]
pub const PEER_NAMES: &[&str] = &["hotslab", "system", "mimalloc", "jemalloc"];
/// Names of the peers, in report order; `hotslab` is the reference of every ratio.
#[cfg(feature = "snmalloc")]
pub const PEER_NAMES: &[&str] = &["hotslab", "system", "mimalloc", "jemalloc", "snmalloc"];

/// Runs `$body` once per peer with `$name: &'static str` and `$alloc: &'static impl GlobalAlloc`
/// bound, so generic code is monomorphised for each allocator (no dynamic dispatch in the timed
/// loop for anyone).
#[macro_export]
macro_rules! for_each_peer {
    (|$name:ident, $alloc:ident| $body:block) => {{
        {
            let $name: &'static str = "hotslab";
            let $alloc = &$crate::peers::HOTSLAB;
            $body
        }
        {
            let $name: &'static str = "system";
            let $alloc = &$crate::peers::SYSTEM;
            $body
        }
        {
            let $name: &'static str = "mimalloc";
            let $alloc = &$crate::peers::MIMALLOC;
            $body
        }
        {
            let $name: &'static str = "jemalloc";
            let $alloc = &$crate::peers::JEMALLOC;
            $body
        }
        $crate::__snmalloc_peer!(|$name, $alloc| $body);
    }};
}

/// Runs `$body` with the peer called `$which` bound to `$alloc`; evaluates to `Some(body)`, or
/// `None` for an unknown name.
#[macro_export]
macro_rules! with_peer {
    ($which:expr, |$alloc:ident| $body:expr) => {{
        match $which {
            "hotslab" => {
                let $alloc = &$crate::peers::HOTSLAB;
                Some($body)
            }
            "system" => {
                let $alloc = &$crate::peers::SYSTEM;
                Some($body)
            }
            "mimalloc" => {
                let $alloc = &$crate::peers::MIMALLOC;
                Some($body)
            }
            "jemalloc" => {
                let $alloc = &$crate::peers::JEMALLOC;
                Some($body)
            }
            #[cfg(feature = "snmalloc")]
            "snmalloc" => {
                let $alloc = &$crate::peers::SNMALLOC;
                Some($body)
            }
            _ => None,
        }
    }};
}

#[cfg(feature = "snmalloc")]
#[doc(hidden)]
#[macro_export]
macro_rules! __snmalloc_peer {
    (|$name:ident, $alloc:ident| $body:block) => {{
        let $name: &'static str = "snmalloc";
        let $alloc = &$crate::peers::SNMALLOC;
        $body
    }};
}

#[cfg(not(feature = "snmalloc"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __snmalloc_peer {
    (|$name:ident, $alloc:ident| $body:block) => {{}};
}

#[cfg(test)]
mod tests {
    use super::PEER_NAMES;
    use crate::workloads::pair;
    use core::alloc::Layout;

    #[test]
    fn every_peer_serves_a_pair_and_dispatch_matches_names() {
        let mut visited = Vec::new();
        for_each_peer!(|name, a| {
            assert!(pair(a, Layout::from_size_align(64, 8).unwrap()));
            visited.push(name);
        });
        assert_eq!(visited, PEER_NAMES);
        for n in PEER_NAMES {
            assert_eq!(
                with_peer!(*n, |a| pair(a, Layout::from_size_align(32, 8).unwrap())),
                Some(true)
            );
        }
        assert_eq!(
            with_peer!("nope", |a| pair(a, Layout::from_size_align(32, 8).unwrap())),
            None
        );
    }
}
