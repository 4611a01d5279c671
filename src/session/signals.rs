//! The process's one signal handler: SIGINT, SIGTERM and SIGHUP (through `ctrlc`, whose
//! `termination` feature covers all three) call whatever the current session asked for. `ctrlc`
//! takes one handler per process; the session layer installs it once and swaps what it calls.

use std::sync::{Mutex, Once};

type Handler = Box<dyn Fn() + Send>;

static CURRENT: Mutex<Option<Handler>> = Mutex::new(None);

/// On SIGINT, SIGTERM or SIGHUP, call `f` (instead of what an earlier call asked for).
pub fn on_signal(f: impl Fn() + Send + 'static) -> Result<(), ctrlc::Error> {
    if let Ok(mut cur) = CURRENT.lock() {
        *cur = Some(Box::new(f));
    }
    static INSTALL: Once = Once::new();
    let mut installed = Ok(());
    INSTALL.call_once(|| {
        installed = ctrlc::set_handler(|| {
            if let Ok(cur) = CURRENT.lock()
                && let Some(f) = cur.as_ref()
            {
                f()
            }
        });
    });
    installed
}
