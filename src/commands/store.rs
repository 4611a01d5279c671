//! `jumpscope store …`: synthetic stores, `info` and `bench`.

use crate::cli::{DtypeArg, InfoArgs, StoreBenchArgs, StoreCommand};
use jumpscope::config::OnNonFinite;
use jumpscope::data::batches::{Batcher, Position};
use jumpscope::data::dtype::Dtype;
use jumpscope::data::prefetch::Prefetcher;
use jumpscope::data::scan::scan;
use jumpscope::data::store::{CACHE_FORMAT, FileInfo, Store, info};
use jumpscope::data::store::{Extra, write_store};
use jumpscope::data::synth::{SynthSpec, generate, generate_pairs};

/// Run the command; returns the process exit code.
pub fn exec(cmd: StoreCommand) -> anyhow::Result<i32> {
    match cmd {
        StoreCommand::Info(a) => store_info(a),
        StoreCommand::Bench(a) => store_bench(a),
        StoreCommand::Synth(a) => {
            anyhow::ensure!(
                a.d_in > 0 && a.features > 0 && a.tokens > 0,
                "--d-in, --features and --tokens must be at least 1"
            );
            anyhow::ensure!(
                a.mean_active > 0.0 && a.mean_active <= a.features as f64,
                "--mean-active = {}: expected a number in (0, --features]",
                a.mean_active
            );
            let spec = SynthSpec {
                d_in: a.d_in,
                features: a.features,
                mean_active: a.mean_active,
                tokens: a.tokens,
                noise: a.noise,
                seed: a.seed,
            };
            let d_out = a.d_out.unwrap_or(a.d_in);
            anyhow::ensure!(d_out > 0, "--d-out must be at least 1");
            let (s, targets) = match &a.target_out {
                Some(_) => {
                    let (s, t) = generate_pairs(&spec, d_out);
                    (s, Some(t))
                }
                None => (generate(&spec), None),
            };
            let dtype = match a.dtype {
                DtypeArg::F32 => Dtype::F32,
                DtypeArg::F16 => Dtype::F16,
                DtypeArg::F64 => Dtype::F64,
                DtypeArg::Bf16 => Dtype::Bf16,
            };
            let desc = format!(
                "synthetic: {} features in {} dims, mean active {}, noise {}, seed {}",
                a.features, a.d_in, a.mean_active, a.noise, a.seed
            );
            write_store(
                &a.out,
                "activations",
                &s.activations,
                a.d_in,
                dtype,
                &[
                    Extra::F32("true_features", &s.directions, a.features, a.d_in),
                    Extra::F32Vec("feature_probs", &s.probs),
                ],
                &[("source", desc.as_str())],
            )?;
            eprintln!(
                "wrote {} ({} tokens x {} dims; true directions in `true_features`)",
                a.out.display(),
                a.tokens,
                a.d_in
            );
            if let (Some(path), Some(t)) = (&a.target_out, &targets) {
                let desc = format!("{desc}; the target site of {}", a.out.display());
                write_store(
                    path,
                    "activations",
                    &t.activations,
                    d_out,
                    dtype,
                    &[Extra::F32(
                        "true_out_features",
                        &t.directions,
                        a.features,
                        d_out,
                    )],
                    &[("source", desc.as_str())],
                )?;
                eprintln!(
                    "wrote {} ({} tokens x {} dims, paired with {}; true output directions in `true_out_features`)",
                    path.display(),
                    a.tokens,
                    d_out,
                    a.out.display()
                );
            }
            Ok(0)
        }
    }
}

fn human(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut k = 0;
    while v >= 1000.0 && k + 1 < units.len() {
        v /= 1000.0;
        k += 1;
    }
    format!("{v:.1} {}", units[k])
}

fn store_info(a: InfoArgs) -> anyhow::Result<i32> {
    let files = info(&a.paths, a.dataset.as_deref())?;
    let n_tokens: usize = files.iter().map(|f| f.n_tokens).sum();
    let d_in = files.first().map_or(0, |f| f.d_in);
    let scanned = if a.scan {
        let store = Store::open(&a.paths, a.dataset.as_deref())?;
        let bar = super::progress_bar(store.rows() as u64);
        // 32 MiB of f32 per block: few enough blocks that the per-block work is negligible
        let block = (8 << 20) / store.d_in().max(1);
        let r = scan(&store, block.max(1), |done, _| bar.set_position(done))?;
        bar.finish_and_clear();
        Some(r)
    } else {
        None
    };
    if a.json {
        let v = serde_json::json!({
            "n_tokens": n_tokens,
            "d_in": d_in,
            "dataset": files.first().map(|f| f.dataset.clone()),
            "files": files,
            "scan": scanned,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let is_cache = files
        .first()
        .is_some_and(|f| f.attributes.get("format").map(String::as_str) == Some(CACHE_FORMAT));
    if is_cache {
        print_cache(&a.paths[0], &files);
    }
    for f in files.iter().filter(|_| !is_cache) {
        println!("{}", f.path.display());
        println!("  dataset      {} {:?} {}", f.dataset, f.shape, f.dtype);
        println!("  tokens       {} x d_in {}", f.n_tokens, f.d_in);
        println!(
            "  storage      {}; chunks {}; {}",
            human(f.bytes_on_disk),
            f.chunks
                .as_ref()
                .map_or("none (contiguous)".to_string(), |c| format!("{c:?}")),
            if f.compression.is_empty() {
                "uncompressed".to_string()
            } else {
                f.compression.join(", ")
            }
        );
        println!("  as f32       {}", human(f.bytes_f32));
        println!(
            "  token ids    {}",
            f.token_ids.as_deref().unwrap_or("none")
        );
        if let (Some(v), Some(at)) = (f.vocab_size, &f.vocab) {
            println!("  vocab        {at} ({v} strings)");
        }
        if let Some(m) = &f.mask {
            println!("  mask         {m} (positions where it is 0 are left out of training)");
        }
        for (k, v) in &f.attributes {
            println!("  attr {k:<8} {v}");
        }
    }
    if files.len() > 1 && !is_cache {
        println!(
            "total: {} files, {} tokens x d_in {}",
            files.len(),
            n_tokens,
            d_in
        );
    }
    if let Some(r) = scanned {
        println!(
            "scan: {} rows, {} with NaN, {} with Inf, mean |x| {:.4}, {:.0} rows/s ({:.0} MB/s as f32)",
            r.rows, r.nan_rows, r.inf_rows, r.mean_norm, r.rows_per_s, r.mb_per_s_f32
        );
    }
    Ok(0)
}

/// `store info` of a SAELens cache: the directory once, then one line per Arrow file.
fn print_cache(dir: &std::path::Path, files: &[FileInfo]) {
    let f0 = &files[0];
    let n_tokens: usize = files.iter().map(|f| f.n_tokens).sum();
    let seqs: usize = files.iter().map(|f| f.shape[0]).sum();
    let attr = |k: &str| f0.attributes.get(k).cloned().unwrap_or_default();
    println!("{}", dir.display());
    println!(
        "  cache        {CACHE_FORMAT} ({} Arrow files)",
        files.len()
    );
    println!(
        "  column       {} [{seqs}, {}, {}] {}",
        f0.dataset,
        f0.shape[1],
        f0.d_in,
        attr("dtype")
    );
    println!(
        "  tokens       {n_tokens} x d_in {} ({seqs} sequences of {})",
        f0.d_in, f0.shape[1]
    );
    println!(
        "  storage      {} on disk; {} as f32",
        human(files.iter().map(|f| f.bytes_on_disk).sum()),
        human(files.iter().map(|f| f.bytes_f32).sum())
    );
    println!(
        "  token ids    {}",
        match &f0.token_ids {
            Some(t) => format!("{t} (strings for inspect: --vocab tokenizer.json)"),
            None => "none".into(),
        }
    );
    println!("  columns      {}", attr("columns"));
    for f in files {
        let name = f.path.file_name().unwrap_or_default().to_string_lossy();
        println!("  file         {name}: {} tokens", f.n_tokens);
    }
}

fn store_bench(a: StoreBenchArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(a.passes > 0, "--passes must be at least 1");
    let store = Store::open(&a.paths, a.dataset.as_deref())?;
    let (rows, d) = (store.rows(), store.d_in());
    let batcher = Batcher::new(
        store,
        !a.no_shuffle,
        0,
        OnNonFinite::Skip,
        Position::default(),
    );
    let buffer = Batcher::default_block_rows(d);
    let mut data = Prefetcher::spawn(batcher.buffer_rows(buffer), a.batch, 4);
    let t0 = std::time::Instant::now();
    let mut done = 0usize;
    while done < rows * a.passes {
        let got = data.next_batch()?.batch;
        done += got.rows;
        data.recycle(got.data);
    }
    let secs = t0.elapsed().as_secs_f64();
    let rows_per_s = done as f64 / secs;
    let mb_per_s = (done * d * 4) as f64 / 1e6 / secs;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"rows": done, "d_in": d, "shuffle": !a.no_shuffle, "passes": a.passes, "seconds": secs,
                "rows_per_s": rows_per_s, "mb_per_s_f32": mb_per_s})
        );
    } else {
        println!(
            "{done} rows x d_in {d} ({}): {rows_per_s:.0} rows/s, {mb_per_s:.0} MB/s as f32",
            if a.no_shuffle {
                "file order"
            } else {
                "shuffled"
            }
        );
    }
    Ok(0)
}
