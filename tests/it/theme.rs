//! Theme files: the built-in ones, partial files merged over the default, the palette, and
//! one-line errors for bad files through the real binary.

use crate::common::{assert_user_error, run};
use jumpscope::tui::theme::{BUILTIN, Palette, Theme};
use ratatui::style::{Color, Modifier};
use ratatui::symbols::Marker;
use tempfile::tempdir;

#[test]
fn every_builtin_theme_loads_on_every_palette() {
    for (name, _) in BUILTIN {
        for p in [Palette::TrueColor, Palette::Ansi256, Palette::Ansi16] {
            let t = Theme::load(name, p).unwrap_or_else(|e| panic!("{name}: {e}"));
            for s in [t.text, t.dim, t.border, t.focus, t.accent, t.warn] {
                if p != Palette::TrueColor {
                    assert!(!matches!(s.fg, Some(Color::Rgb(..))), "{name} {p:?} {s:?}");
                }
                if p == Palette::Ansi16 {
                    assert!(!matches!(s.fg, Some(Color::Indexed(16..))), "{name} {s:?}");
                }
            }
        }
    }
    let light = Theme::load("light", Palette::TrueColor).unwrap();
    assert_eq!(light.dim.fg, Some(Color::Rgb(0x6c, 0x6c, 0x6c)));
    // #6c6c6c is gray 242 of the 256-colour palette
    let light256 = Theme::load("light", Palette::Ansi256).unwrap();
    assert_eq!(light256.dim.fg, Some(Color::Indexed(242)));
}

#[test]
fn a_partial_file_merges_over_the_default() {
    let d = tempdir().unwrap();
    let p = d.path().join("mine.toml");
    std::fs::write(
        &p,
        "warn = { fg = \"#ff0000\", bold = true }\nseries = [\"red\"]\nmarker = \"dot\"\n",
    )
    .unwrap();
    let t = Theme::load(p.to_str().unwrap(), Palette::TrueColor).unwrap();
    let dark = Theme::dark();
    assert_eq!(t.warn.fg, Some(Color::Rgb(255, 0, 0)));
    assert!(t.warn.add_modifier.contains(Modifier::BOLD));
    assert_eq!(t.series.map(|s| s.fg), [Some(Color::Red); 3]);
    assert_eq!(t.marker, Marker::Dot);
    // everything else is dark's
    assert_eq!(t.text, dark.text);
    assert_eq!(t.accent, dark.accent);
    assert_eq!(t.border, dark.border);
}

#[test]
fn bad_theme_files_name_the_file_and_the_key() {
    let d = tempdir().unwrap();
    let cases = [
        (
            "accent = { fg = \"blurple\" }",
            "accent.fg",
            "unknown colour `blurple`",
        ),
        ("text = 300", "text", "unknown colour 300"),
        (
            "series = [\"red\", \"nope\"]",
            "series[1]",
            "unknown colour `nope`",
        ),
        ("series = []", "series", "1 to 3 colours"),
        ("marker = \"emoji\"", "marker", "braille, dot"),
        ("colour = \"red\"", "colour", "unknown key"),
        (
            "warn = { fg = \"red\", blink = true }",
            "warn.blink",
            "unknown key",
        ),
        ("focus = { bold = \"yes\" }", "focus.bold", "true or false"),
    ];
    for (i, (body, key, reason)) in cases.iter().enumerate() {
        let p = d.path().join(format!("t{i}.toml"));
        std::fs::write(&p, body).unwrap();
        let e = Theme::load(p.to_str().unwrap(), Palette::Ansi256)
            .err()
            .unwrap_or_else(|| panic!("{body} accepted"))
            .to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.contains(&format!("`{key}`")), "{body}: {e}");
        assert!(e.contains(reason), "{body}: {e}");
    }
    let p = d.path().join("syntax.toml");
    std::fs::write(&p, "text = \n").unwrap();
    let e = Theme::load(p.to_str().unwrap(), Palette::Ansi256)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("not a theme file") && e.contains("syntax.toml"),
        "{e}"
    );
}

#[test]
fn the_binary_refuses_a_bad_theme_at_start_up() {
    let d = tempdir().unwrap();
    let p = d.path().join("bad.toml");
    std::fs::write(&p, "accent = { bg = \"blurple\" }\n").unwrap();
    // before anything is trained or any run directory made
    let out_dir = d.path().join("run");
    let o = run(&[
        "train",
        "--config",
        "sample_data/demo.toml",
        "--out",
        out_dir.to_str().unwrap(),
        "--theme",
        p.to_str().unwrap(),
    ]);
    assert_user_error(&o, &["bad.toml", "`accent.bg`", "blurple"]);
    assert!(!out_dir.exists());
    let o = run(&[
        "train",
        "--config",
        "sample_data/demo.toml",
        "--theme",
        "sepia",
    ]);
    assert_user_error(&o, &["theme `sepia`", "high-contrast"]);
}
