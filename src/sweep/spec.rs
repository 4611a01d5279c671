//! A sweep's configuration: an ordinary run config plus a `[sweep]` table (a `vary` grid or
//! explicit `[[sweep.member]]` tables, and `devices`), expanded into named, validated members.

use crate::config::{Config, ConfigError, apply_sets, from_table, set_key};
use crate::device::{DeviceError, DeviceName};
use std::path::{Path, PathBuf};

/// A sweep configuration that cannot be used: one line naming the file, the key and what was
/// expected.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: cannot read sweep config: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Something in `[sweep]` is wrong.
    #[error("{origin}: {key}: {problem}")]
    Sweep {
        /// The file.
        origin: String,
        /// The key (`sweep.vary."train.lr"`, `sweep.member[2]`, …).
        key: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A member's configuration is invalid (the message names the member).
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// One member of a sweep: its name, the values that make it differ, and its full configuration.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    /// Its name (a file name: the member's run directory is `OUT/<name>`).
    pub name: String,
    /// The keys set for this member, with their values, in order.
    pub overrides: Vec<(String, toml::Value)>,
    /// Keys of the base that do not apply to this member's architecture and were left out.
    pub dropped: Vec<&'static crate::schema::keys::Key>,
    /// The validated configuration (`run.out` = `OUT/<name>`, `run.device` from `sweep.devices`).
    pub config: Config,
}

/// A sweep, expanded.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// The sweep's directory.
    pub out: PathBuf,
    /// The devices members are placed on, round-robin.
    pub devices: Vec<DeviceName>,
    /// The members, in order.
    pub members: Vec<MemberSpec>,
    /// Grid points that came out the same as an earlier member once the keys that do not apply
    /// to their architecture were left out (one line each, for the user).
    pub merged: Vec<String>,
    /// The base configuration as a TOML table (`--set` applied, no `[sweep]`).
    base: toml::Table,
}

/// Read the sweep file at `path` with `--set` overrides (for every member) and `out` (for
/// `--out`, else the base's `run.out`).
pub fn load(path: &Path, sets: &[String], out: Option<&Path>) -> Result<SweepSpec, SpecError> {
    let text = crate::durable::check_regular(path)
        .and_then(|()| std::fs::read_to_string(path))
        .map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    parse(&text, &path.display().to_string(), sets, out)
}

/// Parse a sweep file's text (see [`load`]).
pub fn parse(
    text: &str,
    origin: &str,
    sets: &[String],
    out: Option<&Path>,
) -> Result<SweepSpec, SpecError> {
    let fail = |key: &str, problem: String| SpecError::Sweep {
        origin: origin.to_string(),
        key: key.to_string(),
        problem,
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
    let sweep = match table.remove("sweep") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(fail("sweep", "expected a [sweep] table".into())),
        None => {
            return Err(fail(
                "sweep",
                "missing: a sweep config is a run config plus a [sweep] table with `vary` or [[sweep.member]] (for one run, use `jumpscope train`)".into(),
            ));
        }
    };
    apply_sets(&mut table, sets)?;
    if let Some(out) = out {
        set_key(
            &mut table,
            &crate::schema::keys::OUT.path(),
            toml::Value::String(out.display().to_string()),
        );
    }
    for key in sweep.keys() {
        if !["vary", "member", "devices"].contains(&key.as_str()) {
            return Err(fail(
                &format!("sweep.{key}"),
                "unknown key: expected vary, member or devices".into(),
            ));
        }
    }
    // unknown keys of the base are reported once, before any member; its values are checked
    // per member (a base may lack what every member sets, such as sae.k)
    let base = from_table(table.clone(), origin)?;
    let root = base
        .run
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/sweep"));
    if root.as_os_str().is_empty() {
        return Err(fail(
            &crate::schema::keys::OUT.path(),
            "\"\": expected a directory path (an empty one would write the sweep into the current directory)".into(),
        ));
    }
    let names = match sweep.get("devices") {
        None => vec![base.run.device.clone().unwrap_or_else(|| "cpu".into())],
        Some(toml::Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| fail("sweep.devices", "expected a list of device names".into()))?,
        Some(_) => {
            return Err(fail(
                "sweep.devices",
                "expected a non-empty list of device names (\"cpu\", \"cuda:0\", …)".into(),
            ));
        }
    };
    let mut devices = Vec::new();
    for d in &names {
        let name: DeviceName = d
            .parse()
            .map_err(|e: DeviceError| fail("sweep.devices", e.to_string()))?;
        name.resolve()
            .map_err(|e| fail("sweep.devices", e.to_string()))?;
        devices.push(name);
    }
    let points: Vec<Point> = match (sweep.get("vary"), sweep.get("member")) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "sweep",
                "both `vary` and [[sweep.member]]: give one of them".into(),
            ));
        }
        (None, None) => {
            return Err(fail(
                "sweep",
                format!(
                    "no members: give `vary = {{ \"{}\" = [1e-4, 3e-4] }}` or [[sweep.member]] tables",
                    crate::schema::keys::LR
                ),
            ));
        }
        (Some(v), None) => grid(v, &fail)?.into_iter().map(|p| (None, p)).collect(),
        (None, Some(m)) => explicit(m, &fail)?,
    };
    let mut members: Vec<MemberSpec> = Vec::new();
    let mut merged = Vec::new();
    for (i, (name, overrides)) in points.into_iter().enumerate() {
        let mut t = table.clone();
        for (k, v) in &overrides {
            check_key(k, v, origin, &fail)?;
            set_key(&mut t, k, v.clone());
        }
        let member_origin = format!(
            "{origin} [sweep member {}]",
            name.clone().unwrap_or_else(|| label(&overrides))
        );
        let mut file = from_table(t, &member_origin)?;
        let dropped = file.drop_inapplicable();
        let kept: Vec<(String, toml::Value)> = overrides
            .into_iter()
            .filter(|(k, _)| !dropped.iter().any(|d| d.is(k)))
            .collect();
        let mut config = file.validate(&member_origin)?;
        let name = match name {
            Some(n) => n,
            None if kept.is_empty() => "base".to_string(),
            None => label(&kept),
        };
        let name = file_safe(&name);
        config.device = devices[members.len() % devices.len()];
        config.out = root.join(&name);
        if let Some(same) = members.iter().find(|m| m.name == name) {
            if same.overrides == kept {
                // a grid point that differs only in keys its architecture leaves out
                merged.push(format!(
                    "grid point {} is member {name}: it does not take {}",
                    i + 1,
                    dropped
                        .iter()
                        .map(|k| k.path())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            }
            return Err(fail(
                &format!("sweep.member {name}"),
                "two members have this name: names must differ".into(),
            ));
        }
        members.push(MemberSpec {
            name,
            overrides: kept,
            dropped,
            config,
        });
    }
    // placement follows the members that remain
    for (i, m) in members.iter_mut().enumerate() {
        m.config.device = devices[i % devices.len()];
    }
    Ok(SweepSpec {
        out: root,
        devices,
        members,
        merged,
        base: table,
    })
}

impl SweepSpec {
    /// The sweep as run, as TOML: the base, `devices`, and every member as an explicit
    /// `[[sweep.member]]` table. Reading it back gives the same members.
    pub fn to_toml(&self) -> String {
        let mut t = self.base.clone();
        let mut sweep = toml::Table::new();
        sweep.insert(
            "devices".into(),
            toml::Value::Array(
                self.devices
                    .iter()
                    .map(|d| toml::Value::String(d.to_string()))
                    .collect(),
            ),
        );
        let members = self
            .members
            .iter()
            .map(|m| {
                let mut e = toml::Table::new();
                e.insert("name".into(), toml::Value::String(m.name.clone()));
                for (k, v) in &m.overrides {
                    e.insert(k.clone(), v.clone());
                }
                toml::Value::Table(e)
            })
            .collect();
        sweep.insert("member".into(), toml::Value::Array(members));
        t.insert("sweep".into(), toml::Value::Table(sweep));
        toml::to_string_pretty(&t).unwrap_or_default()
    }
}

/// A member before expansion: its name (explicit members) and its overrides, in order.
type Point = (Option<String>, Vec<(String, toml::Value)>);

type Fail<'a> = dyn Fn(&str, String) -> SpecError + 'a;

/// The cartesian product of `vary`'s lists, the first key varying slowest.
fn grid(v: &toml::Value, fail: &Fail<'_>) -> Result<Vec<Vec<(String, toml::Value)>>, SpecError> {
    let t = v.as_table().ok_or_else(|| {
        fail(
            "sweep.vary",
            format!(
                "expected a table of key = [values] (vary = {{ \"{}\" = [1e-4, 3e-4] }})",
                crate::schema::keys::LR
            ),
        )
    })?;
    if t.is_empty() {
        return Err(fail(
            "sweep.vary",
            "empty: expected at least one key = [values]".into(),
        ));
    }
    let mut points: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in flatten(t) {
        let at = format!("sweep.vary.\"{key}\"");
        let list = values
            .as_array()
            .ok_or_else(|| fail(&at, "expected a list of values".into()))?;
        if list.is_empty() {
            return Err(fail(
                &at,
                "an empty list: expected at least one value".into(),
            ));
        }
        points = points
            .into_iter()
            .flat_map(|p| {
                let key = &key;
                list.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((key.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    Ok(points)
}

/// `[[sweep.member]]` tables: each a `name` and overrides (quoted dotted keys or sub-tables).
fn explicit(m: &toml::Value, fail: &Fail<'_>) -> Result<Vec<Point>, SpecError> {
    let list = m.as_array().ok_or_else(|| {
        fail(
            "sweep.member",
            "expected [[sweep.member]] tables, each with a name".into(),
        )
    })?;
    if list.is_empty() {
        return Err(fail(
            "sweep.member",
            "empty: expected at least one member".into(),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let at = format!("sweep.member[{}]", i + 1);
            let mut t = e
                .as_table()
                .cloned()
                .ok_or_else(|| fail(&at, "expected a table".into()))?;
            let name = match t.remove("name") {
                Some(toml::Value::String(n)) if !n.trim().is_empty() => n,
                _ => {
                    return Err(fail(
                        &format!("{at}.name"),
                        "missing: every member needs a name (a string)".into(),
                    ));
                }
            };
            Ok((Some(name), flatten(&t)))
        })
        .collect()
}

/// `{ "train.lr" = x }` and `{ train = { lr = x } }` alike as `("train.lr", x)`, in order.
fn flatten(t: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (k, v) in t {
        match v {
            toml::Value::Table(sub) if !k.contains('.') => {
                out.extend(sub.iter().map(|(f, v)| (format!("{k}.{f}"), v.clone())))
            }
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// A varied key must be a known key that leaves the data stream alone.
fn check_key(
    key: &str,
    value: &toml::Value,
    origin: &str,
    fail: &Fail<'_>,
) -> Result<(), SpecError> {
    let at = format!("sweep: \"{key}\"");
    let Some((section, _)) = key.split_once('.') else {
        return Err(fail(
            &at,
            "expected a key of the form section.key (e.g. train.lr)".into(),
        ));
    };
    match section {
        "data" => {
            return Err(fail(
                &at,
                "a data key changes the data stream, which every member shares: set it for all (outside [sweep], or --set)".into(),
            ));
        }
        "run" => {
            return Err(fail(
                &at,
                "run keys are the sweep's: members write to OUT/<name> and are placed by sweep.devices".into(),
            ));
        }
        _ => {}
    }
    // unknown keys: deserialise the key alone (its value's type is checked per member)
    let mut probe = toml::Table::new();
    set_key(&mut probe, key, value.clone());
    if let Err(ConfigError::Parse { message, .. }) = from_table(probe, origin)
        && (message.contains("unknown field") || message.contains("unknown variant `"))
        && message.contains("field")
    {
        return Err(fail(&at, format!("unknown key ({message})")));
    }
    Ok(())
}

/// A member's name from its values: `lambda=3e-3,arch=topk`.
fn label(kv: &[(String, toml::Value)]) -> String {
    kv.iter()
        .map(|(k, v)| {
            let short = crate::schema::keys::find(k)
                .map(|key| key.short())
                .unwrap_or_else(|| k.rsplit('.').next().unwrap_or(k));
            format!("{short}={}", value_text(v))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A value as it reads in a name: strings bare, small and large floats in e-notation.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) if *f != 0.0 && (f.abs() < 1e-2 || f.abs() >= 1e5) => {
            format!("{f:e}")
        }
        other => other.to_string(),
    }
}

/// `name` with every character a file name should not hold replaced by `_`.
fn file_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=,.+-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().all(|c| c == '.') {
        format!("member{s}").replace('.', "_")
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
