//! The builder's helper process for kiln-worker's integration tests: the
//! worker starts sandboxes and file operations through a helper binary
//! (`kiln __helper MODE` in production); the tests use this one, started
//! as `kiln-worker-test-helper MODE`.

fn main() {
    let mode = std::env::args().nth(1);
    match mode.as_deref() {
        // Must run before any thread exists: it unshares namespaces.
        Some("sandbox") => kiln_sandbox::helper_main(),
        Some("fileop") => std::process::exit(kiln_build::fileop::helper_main()),
        other => {
            eprintln!("kiln-worker-test-helper: unknown mode {other:?} (sandbox or fileop)");
            std::process::exit(2)
        }
    }
}
