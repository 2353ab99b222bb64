//! The whole-program workload with hotslab as the global allocator (see `hotslab_benches::program`).
//! Only the allocator choice lives here.

#[global_allocator]
static GLOBAL: hotslab::SlabAlloc = hotslab::SlabAlloc::new();

fn main() -> std::process::ExitCode {
    hotslab_benches::program::main_for("hotslab")
}
