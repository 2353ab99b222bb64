//! The whole-program workload with system as the global allocator (see `hotslab_benches::program`).
//! Only the allocator choice lives here.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() -> std::process::ExitCode {
    hotslab_benches::program::main_for("system")
}
