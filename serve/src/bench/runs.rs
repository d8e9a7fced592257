//! The results of earlier `ferroserve bench` runs in a folder, for the web console's bench page: each
//! sub-folder holding a `variants.csv` or `load.csv` (what `bench variants` and `bench load` write) is a run,
//! listed with its table and the plots beside it; [`run_file`] reads one of its files.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;

/// One run: its folder's name, what kind of run it was, its table as CSV and its plots' file names.
#[derive(Debug, Serialize, PartialEq)]
pub struct BenchRun {
    pub name: String,
    /// `variants` or `load`.
    pub kind: &'static str,
    /// Seconds since the epoch of the table's last change.
    pub modified_unix: u64,
    pub csv: String,
    /// PNG and SVG files of the run, by name (an SVG hides the PNG of the same plot).
    pub plots: Vec<String>,
}

/// The tables a run folder may hold, and the kind of run each means.
const TABLES: [(&str, &str); 2] = [("variants.csv", "variants"), ("load.csv", "load")];

/// Every run under `folder`, newest first. A missing folder has none.
pub fn list_runs(folder: &Path) -> Vec<BenchRun> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut runs: Vec<BenchRun> = entries.flatten().filter_map(|e| read_run(&e.path())).collect();
    runs.sort_by(|a, b| b.modified_unix.cmp(&a.modified_unix).then_with(|| a.name.cmp(&b.name)));
    runs
}

fn read_run(dir: &Path) -> Option<BenchRun> {
    let name = dir.file_name()?.to_str()?.to_string();
    let (table, kind) = TABLES.iter().find(|(table, _)| dir.join(table).is_file())?;
    let path = dir.join(table);
    let csv = std::fs::read_to_string(&path).ok()?;
    let modified_unix = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut files: Vec<String> =
        std::fs::read_dir(dir).ok()?.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
    files.sort();
    let plots = files
        .iter()
        .filter(|f| f.ends_with(".svg") || (f.ends_with(".png") && !files.contains(&f.replace(".png", ".svg"))))
        .cloned()
        .collect();
    Some(BenchRun { name, kind, modified_unix, csv, plots })
}

/// A file of a run (a plot, a table or the JSON report) and its content type. `None` for a name that is not
/// a plain file name of one of those kinds, or a file that is not there.
pub fn run_file(folder: &Path, run: &str, file: &str) -> Option<(&'static str, Vec<u8>)> {
    let plain = |s: &str| !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\']);
    if !plain(run) || !plain(file) {
        return None;
    }
    let content_type = match Path::new(file).extension()?.to_str()? {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        _ => return None,
    };
    let path: PathBuf = folder.join(run).join(file);
    std::fs::read(path).ok().map(|bytes| (content_type, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_runs_and_reads_only_their_files() {
        let root = std::env::temp_dir().join(format!("ferroserve-bench-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let results = root.join("results");
        let run = results.join("minilm");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("variants.csv"), "variant,throughput\na,1\n").unwrap();
        std::fs::write(run.join("throughput.png"), b"png").unwrap();
        std::fs::write(run.join("throughput.svg"), b"<svg/>").unwrap();
        std::fs::write(run.join("latency.png"), b"png").unwrap();
        std::fs::create_dir(results.join("empty")).unwrap();
        std::fs::write(root.join("secret.json"), b"{}").unwrap();

        let runs = list_runs(&results);
        assert_eq!(runs.len(), 1, "a folder without a table is no run: {runs:?}");
        assert_eq!((runs[0].name.as_str(), runs[0].kind), ("minilm", "variants"));
        assert_eq!(runs[0].plots, ["latency.png", "throughput.svg"]);
        assert!(runs[0].csv.starts_with("variant,"));

        assert_eq!(run_file(&results, "minilm", "throughput.svg").unwrap().0, "image/svg+xml");
        assert!(run_file(&results, "minilm", "missing.png").is_none());
        assert!(run_file(&results, "..", "secret.json").is_none(), "no way out of the folder");
        assert!(run_file(&results, "minilm", "../../secret.json").is_none());
        assert!(run_file(&results, "minilm", "variants.toml").is_none(), "only plots, tables and reports");
        assert!(list_runs(&results.join("nowhere")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
