//! What the benchmark binaries share.

pub mod machine;
