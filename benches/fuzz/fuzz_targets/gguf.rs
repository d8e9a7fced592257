//! A GGUF file's header, metadata, tensor table, tokenizer and chat template, read from arbitrary bytes the way
//! the server reads a model file before any weight: an error is fine, a panic or an allocation beyond the
//! file is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = std::io::Cursor::new(data);
    let _ = ferroserve_models::llm::read_gguf(&mut reader, data.len() as u64);
});
