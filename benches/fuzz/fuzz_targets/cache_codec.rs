//! Entries of the shared (Redis) cache, which another replica or anyone with access to Redis wrote: an
//! undecodable entry is a miss, never a panic.
#![no_main]

use std::sync::Arc;

use ferroserve::cache::codec::{decode_response, decode_vector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let model: Arc<str> = Arc::from("model");
    let _ = decode_vector(data, model.clone());
    let _ = decode_response(data, model);
});
