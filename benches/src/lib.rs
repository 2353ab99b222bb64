//! Shared code of the hotslab benches: the peer allocators, the allocator-generic workloads the
//! criterion benches and bins drive, the whole-program workload, the report writer and the
//! standard-workload suite's data and report (`suite`), and the pictures drawn from the reports
//! (`plots`).
//! It owns nothing of the allocator itself and must not touch `slab/`, `numa/` or `hotplug/`.

pub mod peers;
pub mod plots;
pub mod program;
pub mod report;
pub mod rng;
pub mod suite;
pub mod workloads;

pub use rng::Rng;
