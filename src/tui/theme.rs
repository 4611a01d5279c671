//! Colours and chart markers of the screens: the built-in themes (`themes/*.toml`, compiled in),
//! theme files merged over the default, the terminal's palette (true colour only when
//! `COLORTERM` says so) and `NO_COLOR`.

use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The built-in themes: name and file text. The first is the default every file merges over.
pub const BUILTIN: [(&str, &str); 4] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("mono", include_str!("../../themes/mono.toml")),
];

/// The keys that hold a style.
const STYLE_KEYS: [&str; 6] = ["text", "dim", "border", "focus", "accent", "warn"];

/// A theme that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    /// `--theme` names neither a built-in theme nor an existing file.
    #[error(
        "theme `{0}`: no such built-in theme or file (built-in: dark, light, high-contrast, mono; or a path to a .toml file)"
    )]
    Unknown(String),
    /// The file cannot be read.
    #[error("{path}: cannot read theme: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}: not a theme file: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, on one line.
        reason: String,
    },
    /// A key is unknown or its value is not what it should be.
    #[error("{path}: `{key}`: {reason}")]
    Key {
        /// The file.
        path: String,
        /// The key (`accent.bg`, `series[1]`, …).
        key: String,
        /// What was wrong and what was expected.
        reason: String,
    },
}

/// How many colours the terminal shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Palette {
    /// 24-bit colour (`COLORTERM=truecolor` or `24bit`).
    TrueColor,
    /// The xterm 256-colour palette.
    Ansi256,
    /// The 16 ANSI colours.
    Ansi16,
}

impl Palette {
    /// What the environment says: `COLORTERM` for true colour, else `TERM` with "256color".
    pub fn from_env() -> Self {
        let colorterm = std::env::var("COLORTERM").unwrap_or_default();
        let term = std::env::var("TERM").unwrap_or_default();
        if matches!(colorterm.as_str(), "truecolor" | "24bit") {
            Palette::TrueColor
        } else if term.contains("256") {
            Palette::Ansi256
        } else {
            Palette::Ansi16
        }
    }

    /// `c` as this palette can show it.
    pub fn fit(self, c: Color) -> Color {
        match (self, c) {
            (Palette::TrueColor, c) => c,
            (Palette::Ansi256, Color::Rgb(r, g, b)) => Color::Indexed(nearest_256(r, g, b)),
            (Palette::Ansi16, Color::Rgb(r, g, b)) => Color::Indexed(nearest_16(r, g, b)),
            (Palette::Ansi16, Color::Indexed(i)) if i > 15 => {
                let (r, g, b) = xterm_rgb(i);
                Color::Indexed(nearest_16(r, g, b))
            }
            (_, c) => c,
        }
    }
}

/// The RGB value xterm gives palette entry `i`.
fn xterm_rgb(i: u8) -> (u8, u8, u8) {
    const BASE: [(u8, u8, u8); 16] = [
        (0, 0, 0),
        (205, 0, 0),
        (0, 205, 0),
        (205, 205, 0),
        (0, 0, 238),
        (205, 0, 205),
        (0, 205, 205),
        (229, 229, 229),
        (127, 127, 127),
        (255, 0, 0),
        (0, 255, 0),
        (255, 255, 0),
        (92, 92, 255),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
    ];
    const LEVEL: [u8; 6] = [0, 95, 135, 175, 215, 255];
    match i {
        0..=15 => BASE[i as usize],
        16..=231 => {
            let k = i - 16;
            (
                LEVEL[(k / 36) as usize],
                LEVEL[(k / 6 % 6) as usize],
                LEVEL[(k % 6) as usize],
            )
        }
        _ => {
            let v = 8 + 10 * (i - 232);
            (v, v, v)
        }
    }
}

fn distance(a: (u8, u8, u8), b: (u8, u8, u8)) -> u32 {
    let d = |x: u8, y: u8| (x as i32 - y as i32).pow(2) as u32;
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

// The nearest palette entry by search rather than a crate: the one well-known converter
// (ansi_colours) is LGPL, and 240 distances per colour at start-up cost nothing.
/// The nearest entry of the 256-colour palette, among the colour cube and the grays (the
/// first 16 vary between terminals).
fn nearest_256(r: u8, g: u8, b: u8) -> u8 {
    (16..=255u8)
        .min_by_key(|i| distance(xterm_rgb(*i), (r, g, b)))
        .unwrap_or(16)
}

/// The nearest of the 16 ANSI colours.
fn nearest_16(r: u8, g: u8, b: u8) -> u8 {
    (0..16u8)
        .min_by_key(|i| distance(xterm_rgb(*i), (r, g, b)))
        .unwrap_or(7)
}

/// The styles the screens use.
#[derive(Debug, Clone)]
pub struct Theme {
    /// Ordinary text.
    pub text: Style,
    /// Secondary text (labels, axes).
    pub dim: Style,
    /// Pane borders.
    pub border: Style,
    /// The focused pane's border.
    pub focus: Style,
    /// Selection and highlights.
    pub accent: Style,
    /// Warnings and refusals.
    pub warn: Style,
    /// Chart series, in order.
    pub series: [Style; 3],
    /// Marker for line charts (braille, or dots for fonts without braille).
    pub marker: Marker,
}

impl Theme {
    /// The default dark theme, as a true-colour terminal shows it.
    pub fn dark() -> Self {
        Self::builtin("dark")
    }

    /// No colour at all (`NO_COLOR`): emphasis through bold and reversed text.
    pub fn mono() -> Self {
        Self::builtin("mono")
    }

    fn builtin(name: &str) -> Self {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a built-in theme name");
        Self::from_text(text, name, Palette::TrueColor).expect("the built-in themes are valid")
    }

    /// The theme for the screens: `spec` is a built-in name or a file (default: dark);
    /// `NO_COLOR` turns colour off whatever the theme (the file is still checked), and colours
    /// are fitted to the terminal's palette. `marker` overrides the theme's chart marker.
    pub fn resolve(spec: Option<&str>, marker: Option<Marker>) -> Result<Self, ThemeError> {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let mut theme = Self::load(spec.unwrap_or("dark"), Palette::from_env())?;
        if no_color {
            theme = Self::mono().with_marker(theme.marker);
        }
        Ok(match marker {
            Some(m) => theme.with_marker(m),
            None => theme,
        })
    }

    /// A built-in theme by name, or a theme file (anything that is not a built-in name),
    /// merged over the default and fitted to `palette`.
    pub fn load(spec: &str, palette: Palette) -> Result<Self, ThemeError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == spec) {
            return Self::from_text(text, name, palette);
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(ThemeError::Unknown(spec.to_string()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ThemeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(&text, &path.display().to_string(), palette)
    }

    /// Parse theme-file `text` (named `origin` in errors) over the default theme.
    pub fn from_text(text: &str, origin: &str, palette: Palette) -> Result<Self, ThemeError> {
        let base: toml::Table = BUILTIN[0].1.parse().expect("the default theme is TOML");
        let file: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ThemeError::Syntax {
                path: origin.to_string(),
                reason: e.message().to_string(),
            })?;
        let key_err = |key: &str, reason: String| ThemeError::Key {
            path: origin.to_string(),
            key: key.to_string(),
            reason,
        };
        for k in file.keys() {
            if !STYLE_KEYS.contains(&k.as_str()) && k != "series" && k != "marker" {
                return Err(key_err(
                    k,
                    format!(
                        "unknown key (expected {}, series or marker)",
                        STYLE_KEYS.join(", ")
                    ),
                ));
            }
        }
        // a key the file leaves out comes from the default
        let get = |k: &str| {
            file.get(k)
                .or_else(|| base.get(k))
                .expect("dark has all keys")
        };
        let style = |k: &str| {
            parse_style(get(k), k, palette).map_err(|(key, reason)| key_err(&key, reason))
        };
        let series = match get("series") {
            toml::Value::Array(a) if (1..=3).contains(&a.len()) => {
                let mut out = [Style::new(); 3];
                for (i, slot) in out.iter_mut().enumerate() {
                    let key = format!("series[{i}]");
                    // fewer than three colours repeat
                    let v = &a[i % a.len()];
                    *slot = Style::new().fg(parse_color(v, &key, palette)
                        .map_err(|(key, reason)| key_err(&key, reason))?);
                }
                out
            }
            _ => {
                return Err(key_err(
                    "series",
                    "expected a list of 1 to 3 colours".into(),
                ));
            }
        };
        let marker = match get("marker").as_str() {
            Some(m) => parse_marker(m).ok_or_else(|| {
                key_err(
                    "marker",
                    format!("unknown marker `{m}` (expected braille, dot, block or halfblock)"),
                )
            })?,
            None => return Err(key_err("marker", "expected a string".into())),
        };
        Ok(Self {
            text: style("text")?,
            dim: style("dim")?,
            border: style("border")?,
            focus: style("focus")?,
            accent: style("accent")?,
            warn: style("warn")?,
            series,
            marker,
        })
    }

    /// The same theme with another chart marker.
    pub fn with_marker(mut self, marker: Marker) -> Self {
        self.marker = marker;
        self
    }
}

/// `braille`, `dot`, `block` or `halfblock`.
pub fn parse_marker(s: &str) -> Option<Marker> {
    Some(match s {
        "braille" => Marker::Braille,
        "dot" => Marker::Dot,
        "block" => Marker::Block,
        "halfblock" => Marker::HalfBlock,
        _ => return None,
    })
}

type KeyError = (String, String);

fn parse_color(v: &toml::Value, key: &str, palette: Palette) -> Result<Color, KeyError> {
    let expected = "expected a colour name like `cyan`, \"#rrggbb\" or a palette index 0-255";
    let c = match v {
        toml::Value::String(s) => Color::from_str(s).map_err(|_| {
            (
                key.to_string(),
                format!("unknown colour `{s}` ({expected})"),
            )
        })?,
        toml::Value::Integer(i) => u8::try_from(*i)
            .map(Color::Indexed)
            .map_err(|_| (key.to_string(), format!("unknown colour {i} ({expected})")))?,
        other => {
            return Err((
                key.to_string(),
                format!("{other} is not a colour ({expected})"),
            ));
        }
    };
    Ok(palette.fit(c))
}

fn parse_style(v: &toml::Value, key: &str, palette: Palette) -> Result<Style, KeyError> {
    let toml::Value::Table(t) = v else {
        return Ok(Style::new().fg(parse_color(v, key, palette)?));
    };
    let mut s = Style::new();
    for (k, v) in t {
        let sub = format!("{key}.{k}");
        let flag = |m: Modifier, s: Style| match v.as_bool() {
            Some(true) => Ok(s.add_modifier(m)),
            Some(false) => Ok(s),
            None => Err((sub.clone(), "expected true or false".to_string())),
        };
        s = match k.as_str() {
            "fg" => s.fg(parse_color(v, &sub, palette)?),
            "bg" => s.bg(parse_color(v, &sub, palette)?),
            "bold" => flag(Modifier::BOLD, s)?,
            "reversed" => flag(Modifier::REVERSED, s)?,
            "underlined" => flag(Modifier::UNDERLINED, s)?,
            _ => {
                return Err((
                    sub,
                    "unknown key (expected fg, bg, bold, reversed or underlined)".into(),
                ));
            }
        };
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_mapping_is_nearest() {
        // exact cube and gray entries map to themselves
        assert_eq!(nearest_256(95, 135, 175), 16 + 36 + 2 * 6 + 3);
        assert_eq!(nearest_256(128, 128, 128), 244);
        assert_eq!(nearest_16(250, 10, 10), 9);
        assert_eq!(
            Palette::Ansi16.fit(Color::Indexed(196)),
            Color::Indexed(9),
            "xterm 196 is pure red"
        );
        assert_eq!(Palette::Ansi256.fit(Color::Cyan), Color::Cyan);
    }
}
