//! One test binary for the workspace (STYLE 17): `standalone_*` cases run the real sidecar
//! against simulated providers on 127.0.0.1, through the shared [`switchyard_tests`] harness.

mod cases;
