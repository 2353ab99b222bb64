//! The whole-program workload with snmalloc as the global allocator (see
//! `hotslab_benches::program`); built only with the `snmalloc` feature. Only the allocator choice
//! lives here.

#[global_allocator]
static GLOBAL: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

fn main() -> std::process::ExitCode {
    hotslab_benches::program::main_for("snmalloc")
}
