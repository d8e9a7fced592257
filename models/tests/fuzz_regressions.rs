//! Inputs that crashed a fuzz target (`benches/fuzz`), kept under `tests/data/fuzz/<target>/`: each must now
//! be answered with a value or an error. A new crash goes into its target's folder once fixed.

use std::path::PathBuf;

use ferroserve_models::llm::read_gguf;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/fuzz").join(target);
    let Ok(entries) = std::fs::read_dir(&folder) else { return Vec::new() };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn gguf_crashes_are_errors_now() {
    let found = inputs("gguf");
    assert!(!found.is_empty(), "tests/data/fuzz/gguf holds the inputs benches/fuzz found");
    for (name, bytes) in found {
        let result = read_gguf(&mut std::io::Cursor::new(&bytes), bytes.len() as u64);
        assert!(result.is_err(), "{name} is not a valid GGUF file");
    }
}
