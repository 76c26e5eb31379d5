//! Checks the layer rule of `src/lib.rs`: every `use crate::…` (and `crate::…` path) in a
//! module names only modules its layer may import. Dependencies point down only.

use std::fs;
use std::path::Path;

/// Top-level module → crate modules it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("metrics", &[]),
    ("settings", &[]),
    ("fabric", &["ws", "runtime", "metrics"]),
    ("ws", &["http"]),
    ("http", &[]),
    ("engineio", &[]),
    ("socketio", &[]),
    ("runtime", &[]),
    (
        "worker",
        &["ws", "http", "runtime", "config", "fabric", "metrics"],
    ),
    (
        "sio",
        &[
            "worker", "ws", "http", "fabric", "engineio", "socketio", "runtime",
        ],
    ),
    ("app", &["worker", "ws", "fabric", "sio"]),
    (
        "bridge",
        &["sio", "fabric", "engineio", "ws", "runtime", "config"],
    ),
    ("bench", &["ws", "http", "runtime"]),
    ("admin", &["fabric", "http", "worker"]),
    (
        "server",
        &[
            "admin", "app", "bridge", "config", "runtime", "worker", "fabric", "sio",
        ],
    ),
];

fn crate_refs(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines() {
        // Code before any `//` comment (no module path in this crate contains `//`).
        let mut rest = line.split("//").next().unwrap_or("");
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
            rest = after;
        }
    }
    out
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .expect("file name");
        if top == "lib" || top == "main" {
            continue;
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == top) else {
            violations.push(format!(
                "{}: module `{top}` missing from ALLOWED",
                rel.display()
            ));
            continue;
        };
        let text = fs::read_to_string(&file).expect("read file");
        for name in crate_refs(&text) {
            if name != top && !allowed.contains(&name.as_str()) {
                violations.push(format!(
                    "{}: `{top}` imports `crate::{name}`",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_imports() {
    let refs =
        crate_refs("use crate::ws::frame;\nlet x = crate::http::Reject::NotFound; // crate::no");
    assert_eq!(refs, vec!["ws", "http"]);
}
