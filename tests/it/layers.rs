//! The library's layer order, as `docs/code-layout.md` states it, checked against the code: every
//! `crate::…` path in a module's files names itself or a module on a lower layer, so there are no
//! cycles among the top-level modules and the document stays true.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layers from docs/code-layout.md's "Layers" block, highest first: module → layer number
/// (0 is the lowest).
fn layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(root().join("docs/code-layout.md")).unwrap();
    let start = doc
        .find("```text layers")
        .expect("docs/code-layout.md has a ```text layers block");
    let body = &doc[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let body = &body[..body.find("```").expect("the layers block is closed")];
    let rows: Vec<Vec<&str>> = body
        .lines()
        .map(|l| l.split('#').next().unwrap().split_whitespace().collect())
        .filter(|r: &Vec<&str>| !r.is_empty())
        .collect();
    let mut out = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        for m in row {
            let layer = rows.len() - 1 - i;
            assert!(
                out.insert(m.to_string(), layer).is_none(),
                "`{m}` stands on two layers of docs/code-layout.md"
            );
        }
    }
    out
}

/// The top-level modules `src/lib.rs` declares.
fn modules() -> Vec<String> {
    std::fs::read_to_string(root().join("src/lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.is_file() && p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The top-level modules named by `crate::X` in the code (comments left out) of `file`, with the
/// line each is first named on.
fn named(file: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" // ").next().unwrap();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `jumpscope::crate::` cannot occur; `$crate::` in macros names the same crate
            out.push((name, n + 1));
            rest = after;
        }
    }
    out
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let layers = layers();
    let mut faults = Vec::new();
    for m in modules() {
        let Some(&own) = layers.get(&m) else {
            faults.push(format!(
                "module `{m}` is in src/lib.rs but on no layer of docs/code-layout.md"
            ));
            continue;
        };
        let mut files = Vec::new();
        rust_files(&root().join("src").join(&m), &mut files);
        rust_files(&root().join(format!("src/{m}.rs")), &mut files);
        assert!(!files.is_empty(), "no source for module `{m}`");
        for f in files {
            for (used, line) in named(&f) {
                if used == m {
                    continue;
                }
                match layers.get(&used) {
                    Some(&l) if l < own => {}
                    Some(&l) => faults.push(format!(
                        "{}:{line}: `{m}` (layer {own}) uses `{used}` (layer {l}), which is not below it",
                        f.strip_prefix(root()).unwrap().display()
                    )),
                    None => faults.push(format!(
                        "{}:{line}: `{m}` uses `{used}`, which is on no layer",
                        f.strip_prefix(root()).unwrap().display()
                    )),
                }
            }
        }
    }
    for m in layers.keys() {
        if !modules().contains(m) {
            faults.push(format!(
                "docs/code-layout.md puts `{m}` on a layer, but src/lib.rs has no such module"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

/// The check itself must be able to fail: an upward use in a scratch file is caught.
#[test]
fn an_upward_use_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rs");
    std::fs::write(
        &f,
        "// crate::tui in a comment does not count\nuse crate::tui::Theme; // crate::live\n",
    )
    .unwrap();
    assert_eq!(named(&f), vec![("tui".to_string(), 2)]);
}
