//! `kubectl-pictor`: the pictor CLI as a kubectl plugin (`kubectl pictor ...`).

fn main() -> std::process::ExitCode {
    pictor_cli::main()
}
