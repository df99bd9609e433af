//! One test binary for the workspace: `standalone_*` cases run the real sidecar
//! against simulated providers on 127.0.0.1, through the shared [`switchyard_tests`] harness.

mod cases;
