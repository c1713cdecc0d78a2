//! The `handsign` command: the gateway and its tools. Everything lives in the library; this only
//! hands over the arguments.

/// jemalloc rather than glibc's malloc, for the memory that waiting connections hold. hyper gives
/// every connection 16 KiB of buffers, of which a waiting long poll writes a few hundred bytes,
/// and how much of the rest takes real memory depends on the allocator. With 10,000 agents
/// long-polling one gateway (BENCHMARKS.md): 7.8 KiB per waiting poll and a peak of 130 MB with
/// jemalloc, 15.1 KiB and 172 MB with glibc's malloc; mimalloc took more than glibc's malloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    handsign::cli::main()
}
