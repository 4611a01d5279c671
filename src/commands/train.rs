//! `jumpscope train`: build or resume a run from the arguments and run it through the session
//! layer (the live screen on a terminal unless `--headless`, else headless output).

use crate::cli::TrainArgs;
use jumpscope::config;
use jumpscope::schema::keys;
use jumpscope::train::setup::Resumption;
use jumpscope::train::trainer::Trainer;
use std::io::Write;

/// Run the command; returns the process exit code.
pub fn exec(args: TrainArgs) -> anyhow::Result<i32> {
    // a bad theme is reported before the run directory is made, even when it is not needed
    let theme = super::theme(&args.look)?;
    let trainer = match &args.resume {
        Some(dir) => match Trainer::resume(dir, &args.sets)? {
            Resumption::Go(t) => *t,
            Resumption::Finished { step, sae } => {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}: already finished at step {step} (its SAE is in {}); nothing to do. To train it further: jumpscope train --resume {} --set train.steps=N",
                    dir.display(),
                    sae.display(),
                    dir.display()
                );
                return Ok(0);
            }
        },
        None => {
            let path = args
                .config
                .as_ref()
                .expect("clap requires --config or --resume");
            let mut sets = args.sets.clone();
            if let Some(out) = &args.out {
                sets.push(format!("{}={}", keys::OUT, toml_string(&out.display())));
            }
            if let Some(dev) = &args.device {
                sets.push(format!("{}={}", keys::DEVICE, toml_string(dev)));
            }
            let origin = path.display().to_string();
            Trainer::new(config::load(path, &sets)?.validate(&origin)?)?
        }
    };
    super::run_job(trainer, args.headless, theme)
}

fn toml_string(s: &impl std::fmt::Display) -> String {
    toml::Value::String(s.to_string()).to_string()
}
