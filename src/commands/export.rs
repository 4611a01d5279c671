//! `jumpscope export`: a checkpoint to a SAELens directory.

use crate::cli::ExportArgs;
use jumpscope::train::export::{check_destination, export_checkpoint};

/// Run the command; returns the process exit code.
pub fn exec(args: ExportArgs) -> anyhow::Result<i32> {
    check_destination(&args.checkpoint, &args.out_dir, args.force)?;
    export_checkpoint(&args.checkpoint, &args.out_dir)?;
    eprintln!(
        "wrote {} (SAELens layout, scale and pre-encoder bias folded)",
        args.out_dir.display()
    );
    Ok(0)
}
