//! `jumpscope doctor`: diagnose each run in a directory and print the reports (text or JSON).

use crate::cli::DoctorArgs;
use jumpscope::doctor::{diagnose, runs_in};

/// Run the command; returns the process exit code (0 whatever the runs' health).
pub fn exec(a: DoctorArgs) -> anyhow::Result<i32> {
    let reports = runs_in(&a.run_dir)?
        .iter()
        .map(|r| diagnose(r))
        .collect::<Result<Vec<_>, _>>()?;
    if a.json {
        println!("{}", serde_json::to_string(&reports)?);
    } else {
        let blocks: Vec<String> = reports.iter().map(|r| r.render()).collect();
        print!("{}", blocks.join("\n"));
    }
    Ok(0)
}
