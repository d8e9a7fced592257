//! Puts Swagger UI's two files (fetched by `deploy/fetch-assets.sh` into `assets/swagger-ui`, or the folder
//! named by `FERROSERVE_SWAGGER_UI`) where `api/http/openapi.rs` compiles them in. Without them the build still
//! succeeds: `/docs` then says how to add them, and `/openapi.json` is served as always.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let source = std::env::var_os("FERROSERVE_SWAGGER_UI")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../assets/swagger-ui"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("swagger-ui");
    std::fs::create_dir_all(&out).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-env-changed=FERROSERVE_SWAGGER_UI");
    let mut missing = false;
    for (file, placeholder) in [
        (
            "swagger-ui-bundle.js",
            "document.getElementById('swagger-ui').innerHTML = '<p style=\"font-family: sans-serif; margin: 2em\">\
             This build has no Swagger UI (run <code>deploy/fetch-assets.sh</code>, then rebuild). The API \
             description is at <a href=\"openapi.json\">openapi.json</a>.</p>';",
        ),
        ("swagger-ui.css", ""),
    ] {
        let from = source.join(file);
        println!("cargo:rerun-if-changed={}", from.display());
        let written = match std::fs::read(&from) {
            Ok(bytes) => std::fs::write(out.join(file), bytes),
            Err(_) => {
                missing = true;
                std::fs::write(out.join(file), placeholder)
            }
        };
        written.expect("OUT_DIR is writable");
    }
    if missing {
        println!("cargo:warning=Swagger UI not found in {}: /docs will say how to add it", source.display());
    }
}
