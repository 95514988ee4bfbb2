fn main() -> std::process::ExitCode {
    rstore_mount::cli::main()
}
