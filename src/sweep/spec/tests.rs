//! Sweep configs expanded into members, and every refusal as one line.

use super::*;

const BASE: &str = r#"
[data]
stores = ["s.h5"]
[sae]
d_sae = 64
k = 8
threshold_init = 0.05
[train]
steps = 10
[run]
out = "runs/sw"
"#;

fn sweep(extra: &str) -> Result<SweepSpec, SpecError> {
    parse(&format!("{BASE}\n{extra}"), "sw.toml", &[], None)
}

fn err(extra: &str) -> String {
    let e = sweep(extra).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn a_grid_is_the_product_named_by_its_values_and_architectures_drop_what_does_not_apply() {
    let s = sweep(
        r#"[sweep]
vary = { "train.sparsity_coefficient" = [1e-3, 3e-3, 0.5], "sae.architecture" = ["jumprelu", "topk"] }"#,
    )
    .unwrap();
    let names: Vec<&str> = s.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "arch=jumprelu,lambda=1e-3",
            "arch=jumprelu,lambda=3e-3",
            "arch=jumprelu,lambda=0.5",
            "arch=topk"
        ]
    );
    // λ does not apply to TopK: its three grid points are one member, and the user is told
    assert_eq!(s.merged.len(), 2, "{:?}", s.merged);
    let topk = &s.members[3];
    assert_eq!(
        topk.config.sae.architecture,
        crate::config::Architecture::TopK
    );
    assert!(
        topk.dropped
            .iter()
            .any(|k| k.is("train.sparsity_coefficient"))
    );
    assert!(topk.dropped.iter().any(|k| k.is("sae.threshold_init")));
    assert_eq!(topk.config.hyper.k, 8);
    let j = &s.members[1];
    assert!((j.config.hyper.sparsity_coefficient - 3e-3).abs() < 1e-12);
    assert!(j.dropped.iter().any(|k| k.is("sae.k")));
    assert_eq!(
        j.config.out,
        PathBuf::from("runs/sw/arch=jumprelu,lambda=3e-3")
    );
    assert!(
        s.members
            .iter()
            .all(|m| m.config.device.to_string() == "cpu")
    );
}

#[test]
fn explicit_members_take_dotted_keys_or_tables_and_devices_go_round_robin() {
    let s = sweep(
        r#"[sweep]
devices = ["cpu", "auto"]
[[sweep.member]]
name = "small lr"
"train.lr" = 1e-4
[[sweep.member]]
name = "wide"
sae = { d_sae = 128 }
[[sweep.member]]
name = "plain"
"#,
    )
    .unwrap();
    let m = &s.members;
    assert_eq!(m[0].name, "small_lr");
    assert!((m[0].config.hyper.lr - 1e-4).abs() < 1e-15);
    assert_eq!(m[1].config.sae.d_sae, Some(128));
    assert_eq!(
        m[1].overrides,
        [("sae.d_sae".to_string(), toml::Value::Integer(128))]
    );
    let devices: Vec<String> = m.iter().map(|m| m.config.device.to_string()).collect();
    assert_eq!(devices, ["cpu", "auto", "cpu"]);
    // the sweep as run reads back to the same members
    let again = parse(&s.to_toml(), "again", &[], None).unwrap();
    for (a, b) in s.members.iter().zip(&again.members) {
        assert_eq!(
            (&a.name, &a.overrides, &a.config.device),
            (&b.name, &b.overrides, &b.config.device)
        );
        assert_eq!(a.config.to_toml(), b.config.to_toml());
    }
}

#[test]
fn sets_apply_to_every_member_and_out_moves_the_sweep() {
    let s = parse(
        &format!("{BASE}\n[sweep]\nvary = {{ \"train.lr\" = [1e-3, 2e-3] }}"),
        "sw.toml",
        &["train.steps=7".to_string()],
        Some(Path::new("elsewhere")),
    )
    .unwrap();
    assert!(s.members.iter().all(|m| m.config.length.steps == Some(7)));
    assert_eq!(s.members[0].config.out, PathBuf::from("elsewhere/lr=1e-3"));
    assert_eq!(s.out, PathBuf::from("elsewhere"));
}

#[test]
fn bad_sweeps_are_one_line_each() {
    let e = err("[sweep]\nvary = { \"train.lr\" = [] }");
    assert!(e.contains("train.lr") && e.contains("empty list"), "{e}");
    let e = err("[sweep]\nvary = { \"train.learning_rate\" = [1e-3] }");
    assert!(
        e.contains("train.learning_rate") && e.contains("unknown key"),
        "{e}"
    );
    let e = err("[sweep]\nvary = { \"data.batch_size\" = [64, 128] }");
    assert!(
        e.contains("data.batch_size") && e.contains("data stream"),
        "{e}"
    );
    let e = err(
        "[sweep]\n[[sweep.member]]\nname = \"a\"\n[[sweep.member]]\nname = \"a\"\n\"train.lr\" = 1e-3",
    );
    assert!(e.contains("two members have this name"), "{e}");
    let e = err("[sweep]\ndevices = [\"tpu:0\"]\nvary = { \"train.lr\" = [1e-3] }");
    assert!(e.contains("sweep.devices") && e.contains("tpu:0"), "{e}");
    let e = err("[sweep]\nvary = { \"train.lr\" = [1e-3] }\n[[sweep.member]]\nname = \"a\"");
    assert!(e.contains("give one of them"), "{e}");
    let e = err("[sweep]\ndevices = [\"cpu\"]");
    assert!(e.contains("no members"), "{e}");
    let e = err("[sweep]\nvary = { \"run.device\" = [\"cpu\"] }");
    assert!(e.contains("run keys"), "{e}");
    let e = err("[sweep]\nvary = { \"train.lr\" = [-1.0] }");
    assert!(
        e.contains("[sweep member lr=-1.0]") && e.contains("train.lr"),
        "{e}"
    );
    let e = parse(BASE, "sw.toml", &[], None).unwrap_err().to_string();
    assert!(
        e.contains("[sweep]") && e.contains("jumpscope train"),
        "{e}"
    );
    let e = err("[sweep]\nvary = { \"train.lr\" = [1e-3] }\ncolour = 1");
    assert!(e.contains("sweep.colour"), "{e}");
}
