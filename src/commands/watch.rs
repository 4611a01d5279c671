//! `jumpscope watch DIR`: the screen of a run or a sweep another process runs, through the
//! session layer.

use crate::cli::WatchArgs;

/// Run the command; returns the process exit code.
pub fn exec(args: WatchArgs) -> anyhow::Result<i32> {
    let theme = super::theme(&args.look)?;
    jumpscope::session::watch(&args.run_dir, theme)?;
    Ok(0)
}
