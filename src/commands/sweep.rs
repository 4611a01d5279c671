//! `jumpscope sweep`: expand the sweep config (or resume a sweep) and run it through the session
//! layer (the sweep screen on a terminal unless `--headless`, else a line per member report and
//! the member table at the end).

use crate::cli::SweepArgs;
use jumpscope::schema::sweep::MemberState;
use jumpscope::sweep::driver::Sweep;
use jumpscope::sweep::spec;
use std::io::Write;

/// Run the command; returns the process exit code.
pub fn exec(args: SweepArgs) -> anyhow::Result<i32> {
    let theme = super::theme(&args.look)?;
    let sweep = match &args.resume {
        Some(dir) => {
            // every member ended before: nothing to run, and nothing is appended to its logs
            if let Some(ended) = Sweep::over(dir) {
                let count = |s: MemberState| ended.iter().filter(|(_, e)| *e == s).count();
                let _ = writeln!(
                    std::io::stdout(),
                    "{}: already finished ({} finished, {} stopped, {} failed); nothing to do. A member can be trained further on its own: jumpscope train --resume {}/MEMBER --set train.steps=N",
                    dir.display(),
                    count(MemberState::Finished),
                    count(MemberState::Stopped),
                    count(MemberState::Failed),
                    dir.display()
                );
                return Ok(0);
            }
            Sweep::resume(dir)?
        }
        None => {
            let path = args
                .config
                .as_ref()
                .expect("clap requires --config or --resume");
            let spec = spec::load(path, &args.sets, args.out.as_deref())?;
            let mut sweep = Sweep::new(&spec)?;
            // said by the sweep as it starts: printed here, they would vanish behind the screen
            for line in &spec.merged {
                sweep.add_note(format!("note: {line}"));
            }
            sweep
        }
    };
    super::run_job(sweep, args.headless, theme)
}
