//! The whole-program workload with jemalloc as the global allocator (see `hotslab_benches::program`).
//! Only the allocator choice lives here.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    hotslab_benches::program::main_for("jemalloc")
}
