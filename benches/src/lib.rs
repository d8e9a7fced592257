//! What the benchmark binaries share.

pub use ferroserve::bench::machine;
