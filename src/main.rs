//! The `murmur` binary: a thin shell over [`murmur::app::main`].

fn main() -> std::process::ExitCode {
    murmur::app::main()
}
