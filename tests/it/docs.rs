//! The documentation's links: every relative link in README.md and docs/*.md names a file of the
//! repository, and every `#anchor` a heading of that file (GitHub's slugs).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped, spaces
/// as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(file: &Path) -> Vec<String> {
    let mut fence = false;
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| {
            if l.starts_with("```") {
                fence = !fence;
            }
            !fence && l.starts_with('#')
        })
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// The `(target)` of every `[text](target)` in `text` outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(j) = after.find(')') else { break };
            out.push(after[..j].to_string());
            rest = &after[j..];
        }
    }
    out
}

fn broken(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let dir = file.parent().unwrap();
    let mut bad = Vec::new();
    for link in links(&text) {
        if link.starts_with("http://") || link.starts_with("https://") {
            continue;
        }
        let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
        let target = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !target.exists() {
            bad.push(format!("{}: {link}: no such file", file.display()));
        } else if !anchor.is_empty() && !anchors(&target).contains(&anchor.to_string()) {
            bad.push(format!("{}: {link}: no such heading", file.display()));
        }
    }
    bad
}

#[test]
fn every_link_of_the_readme_and_docs_resolves() {
    let mut files = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let bad: Vec<String> = files.iter().flat_map(|f| broken(f)).collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_broken_link_is_seen() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("a.md");
    std::fs::write(&f, "# Top\n[ok](a.md#top) [gone](b.md) [bad](#nowhere)\n").unwrap();
    assert_eq!(broken(&f).len(), 2, "{:?}", broken(&f));
}

#[test]
fn the_readme_is_a_front_door() {
    let n = std::fs::read_to_string(root().join("README.md"))
        .unwrap()
        .lines()
        .count();
    assert!(
        n <= 250,
        "README.md has {n} lines: move reference material into docs/"
    );
}

#[test]
fn train_help_lists_the_screens_keys_and_device_help_is_one_text() {
    let o = crate::common::run(&["train", "--help"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    for b in jumpscope::tui::keymap::BINDINGS
        .iter()
        .filter(|b| !b.shown.is_empty())
    {
        assert!(
            text.contains(b.shown) && text.contains(b.help),
            "{}: {text}",
            b.shown
        );
    }
    assert!(text.contains("docs/configuration.md"), "{text}");
    // every subcommand's --device says the same
    let device_help = |cmd: &str| {
        let o = crate::common::run(&[cmd, "--help"]);
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        let at = t
            .find("--device <DEVICE>")
            .unwrap_or_else(|| panic!("{cmd}: {t}"));
        let rest = &t[at..];
        let start = rest.find("Device: ").expect("the help text");
        rest[start..start + 60].to_string()
    };
    let first = device_help("train");
    for cmd in ["eval", "inspect", "compare", "bench", "selftest"] {
        assert_eq!(device_help(cmd), first, "{cmd}");
    }
}

/// The README's 80×24 capture of the training screen is the screen test's current snapshot, row
/// for row, so the front door never shows a screen the program no longer draws.
#[test]
fn the_readme_shows_the_current_80x24_training_screen() {
    let snap = std::fs::read_to_string(
        root().join("tests/it/snapshots/it__tui__main_screen_at_80x24.snap"),
    )
    .unwrap();
    let rows: Vec<String> = snap
        .splitn(3, "---\n")
        .nth(2)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(|l| l[1..l.len() - 1].trim_end().to_string())
        .collect();
    assert_eq!(rows.len(), 24, "{snap}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == rows[0])
        .expect("the README shows the 80×24 screen (its first row)");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            lines.get(at + i).map(|l| l.trim_end()),
            Some(row.as_str()),
            "README row {i} differs from the snapshot: update README.md from \
             tests/it/snapshots/it__tui__main_screen_at_80x24.snap"
        );
    }
}
