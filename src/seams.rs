//! Test seams: the few environment variables through which the tests make a production path do
//! what no real input can make it do here (panic, read slowly, take the generic kernels, die at
//! a chosen point). Each is
//! read once per process, the first time it is asked for, never per step or per block. They are
//! listed, with what each is for, in `docs/development.md` ("Test seams").

use std::sync::OnceLock;

/// Where `JUMPSCOPE_TEST_PANIC` asks for an injected panic (`ui` or `trainer`): the end-to-end
/// tests prove that a panic restores the terminal and still checkpoints, and no input makes our
/// code panic.
pub fn panic_place() -> Option<&'static str> {
    static V: OnceLock<Option<String>> = OnceLock::new();
    V.get_or_init(|| std::env::var("JUMPSCOPE_TEST_PANIC").ok())
        .as_deref()
}

/// Simulated slow storage from `JUMPSCOPE_TEST_SLOW_STORE=NAME:MS`: each block read that touches
/// the store file named `NAME` first sleeps `MS` milliseconds. The health tests need a trainer
/// that waits on its data, which no real store on a 2-core machine gives (compression makes
/// the reader compete for cores instead). A malformed value is ignored.
pub fn slow_store() -> Option<(&'static str, u64)> {
    static V: OnceLock<Option<(String, u64)>> = OnceLock::new();
    V.get_or_init(|| {
        let v = std::env::var("JUMPSCOPE_TEST_SLOW_STORE").ok()?;
        let (name, ms) = v.rsplit_once(':')?;
        Some((name.to_string(), ms.parse().ok()?))
    })
    .as_ref()
    .map(|(n, ms)| (n.as_str(), *ms))
}

/// Whether `JUMPSCOPE_NO_FUSED` is set: the CPU backend then takes the generic tensor-op
/// kernels instead of the fused host loops, so that the two can be compared (tests, selftest).
pub fn no_fused() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("JUMPSCOPE_NO_FUSED").is_some())
}

/// `JUMPSCOPE_TEST_KILL_AT=POINT`: the process sends itself SIGKILL (a kill -9, which nothing
/// can catch) the first time it reaches `POINT`, so the tests can kill it at a chosen moment of
/// a write instead of at a moment a sleep makes likely. Points: `checkpoint-written` (a
/// checkpoint complete under its temporary name, not yet in place), `dir-swapped` (a directory
/// rewritten whole, such as a checkpoint of a step that exists, in place, and the old copy not
/// yet removed).
pub fn kill_at(point: &str) {
    static V: OnceLock<Option<String>> = OnceLock::new();
    if V.get_or_init(|| std::env::var("JUMPSCOPE_TEST_KILL_AT").ok())
        .as_deref()
        == Some(point)
    {
        // SAFETY: kill of this very process; SIGKILL does not return
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
