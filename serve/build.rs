//! Puts the files the binary compiles in where the code includes them from (`OUT_DIR`): Swagger UI's two files
//! (fetched by `deploy/fetch-assets.sh` into `assets/swagger-ui`, or the folder named by
//! `FERROSERVE_SWAGGER_UI`) for `api/http/openapi.rs`, and the DejaVu Sans font (`assets/fonts`) for the text of
//! the plots `bench/plot.rs` draws, and the web console (`serve/ui`: its page and style, and the script
//! `make ui` builds into `serve/ui/dist`) for `api/http/console.rs`. Without them the build still succeeds:
//! `/docs` then says how to add them (`/openapi.json` is served as always), `ferroserve bench` writes its
//! tables without plots, and `/ui` says how to build the console.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=FERROSERVE_SWAGGER_UI");
    let swagger = std::env::var_os("FERROSERVE_SWAGGER_UI")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../assets/swagger-ui"));
    let no_swagger = "document.getElementById('swagger-ui').innerHTML = '<p style=\"font-family: sans-serif; \
                      margin: 2em\">This build has no Swagger UI (run <code>deploy/fetch-assets.sh</code>, then \
                      rebuild). The API description is at <a href=\"openapi.json\">openapi.json</a>.</p>';";
    let missing_swagger = [("swagger-ui-bundle.js", no_swagger), ("swagger-ui.css", "")]
        .into_iter()
        .map(|(file, placeholder)| embed(&swagger, file, &out.join("swagger-ui"), placeholder))
        .collect::<Vec<bool>>() // every file embedded, missing or not
        .contains(&true);
    if missing_swagger {
        println!("cargo:warning=Swagger UI not found in {}: /docs will say how to add it", swagger.display());
    }
    let ui = manifest.join("ui");
    let no_console = "document.getElementById('app').innerHTML = '<p class=\"empty\">This build has no console \
                      script: run <code>make ui</code> (Node and npm), then rebuild.</p>';";
    embed(&ui, "index.html", &out.join("ui"), "<!doctype html><p>The web console's page is missing.</p>");
    embed(&ui, "style.css", &out.join("ui"), "");
    if embed(&ui.join("dist"), "app.js", &out.join("ui"), no_console) {
        println!("cargo:warning=no console script in {}: run `make ui`", ui.join("dist").display());
    }
    let fonts = manifest.join("../assets/fonts/ttf");
    if embed(&fonts, "DejaVuSans.ttf", &out.join("fonts"), "") {
        println!("cargo:warning=no plot font in {}: ferroserve bench will write no plots", fonts.display());
    }
}

/// Copies `from/file` into `to/file`, or writes `placeholder` there when it is missing; true when missing.
fn embed(from: &Path, file: &str, to: &Path, placeholder: &str) -> bool {
    std::fs::create_dir_all(to).expect("OUT_DIR is writable");
    let source = from.join(file);
    println!("cargo:rerun-if-changed={}", source.display());
    let (bytes, missing) = match std::fs::read(&source) {
        Ok(bytes) => (bytes, false),
        Err(_) => (placeholder.as_bytes().to_vec(), true),
    };
    std::fs::write(to.join(file), bytes).expect("OUT_DIR is writable");
    missing
}
