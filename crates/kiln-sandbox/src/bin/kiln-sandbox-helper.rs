//! The helper binary for this crate's integration tests; the `kiln` binary calls
//! `helper_main` from a hidden subcommand the same way.

fn main() {
    kiln_sandbox::helper_main()
}
