fn main() -> std::process::ExitCode {
    // glibc raises its mmap threshold after large frees, after which 8 MiB read and upload
    // buffers come from arenas that never shrink. A fixed threshold hands them back; it
    // sits above the 1 MiB FUSE write copies, which would otherwise be mapped, faulted
    // in and unmapped once per write. Heap freed below 16 MiB is kept for reuse
    // instead of being returned and faulted in again by the next copy.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
    rstore_mount::cli::main()
}
