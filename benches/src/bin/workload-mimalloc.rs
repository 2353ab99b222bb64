//! The whole-program workload with mimalloc as the global allocator (see `hotslab_benches::program`).
//! Only the allocator choice lives here.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hotslab_benches::program::main_for("mimalloc")
}
