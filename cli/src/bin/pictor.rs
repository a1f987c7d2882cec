//! `pictor`: the command line of the Pictor network (also usable as `kubectl pictor`).

fn main() -> std::process::ExitCode {
    pictor_cli::main()
}
