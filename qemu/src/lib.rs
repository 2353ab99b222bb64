//! hotslab's real-kernel test harness: a host driver that boots a Debian kernel under QEMU (TCG) with a
//! memory-only NUMA node, hot-adds and removes a DIMM on it over QMP, and a static guest program that
//! checks hotslab following the kernel (placement, parts, no object lost). This crate is its own
//! workspace; it depends on the hotslab crates by path and changes none of them.
//!
//! Run it with `qemu/run.sh` (installs the Debian packages) or
//! `HOTSLAB_QEMU=1 cargo test --manifest-path qemu/Cargo.toml --release -- --ignored --nocapture`.

pub mod cpio;
pub mod guestkit;
pub mod host;
pub mod protocol;
pub mod qmp;
