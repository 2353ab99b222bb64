//! hotslab's real-kernel test harness: a host driver that boots a Debian kernel under QEMU (TCG) with a
//! memory-only NUMA node (and an HMAT that makes it slow), hot-adds and removes a DIMM on it over QMP,
//! and static guest programs that check hotslab following the kernel (placement, parts, no object
//! lost), the default allocator (`SlabAlloc`, and `libhotslab.so` under a C program) under memory
//! policies, and the topology's HMAT data (`guestkit` is what the guest programs share). This crate
//! is its own workspace; it depends on the hotslab crates by path and changes none of them.
//!
//! Run it with `qemu/run.sh` (installs the Debian packages) or
//! `HOTSLAB_QEMU=1 cargo test --manifest-path qemu/Cargo.toml --release -- --ignored --nocapture`.

pub mod cpio;
pub mod guestkit;
pub mod host;
pub mod protocol;
pub mod qmp;
