// Records cross threads (allocated by a source, freed by an operator): mimalloc frees
// them without the lock glibc's malloc takes for another thread's memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    host::cli::main()
}
