//! `jumpscope selftest`: run the checks on a device, print the table (or JSON), exit 1 on a
//! mismatch.

use crate::cli::SelftestArgs;
use jumpscope::sae::kernels::Kernels;
use jumpscope::sae::perturb;
use jumpscope::selftest::{self, Options};

/// Run the command; returns the process exit code.
pub fn exec(a: SelftestArgs) -> anyhow::Result<i32> {
    let dev = a.device.resolve()?;
    let label = a.device.label();
    if let Some(g) = a.perturb_gradient {
        perturb::set(g, &dev, Kernels::for_device(&dev), 1e-3);
        eprintln!(
            "selftest: debug hook: every step on {label} adds 1e-3 to ∂L/∂{}",
            g.name()
        );
    }
    let opts = Options { bench: !a.no_bench };
    let report = selftest::run(&dev, &label, opts, &mut |what| {
        eprintln!("selftest: {what} …");
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", selftest::render(&report));
    }
    Ok(if report.passed { 0 } else { 1 })
}
