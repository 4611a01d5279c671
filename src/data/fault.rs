//! Store files truncated under their memory maps: a read of a page past the file's new end
//! raises SIGBUS, which by default kills the run with no message and no checkpoint. Every map a
//! store reads from is registered here; a fault inside a registered map is answered by putting
//! a page of zeros where the vanished one was and marking the map, so the read finishes, and
//! the store reports the map's file as changed before any row read from it reaches a batch
//! (the same clean stop, with a checkpoint, as a size change seen before a block).
//!
//! Written by hand with `libc` because no crate handles SIGBUS: `signal-hook` refuses it (a
//! synchronous fault cannot be deferred to a flag; the handler must repair the fault in place).
//! A fault outside every registered map goes to the handler that was there before (Rust's
//! stack-overflow handler reports a guard-page fault and otherwise restores the default action),
//! so every other SIGBUS ends the process as it did.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Maps watched at once: a store's shards (one map each), the held-out read and a sweep's
/// stores together stay far below it; a map beyond it is read unwatched, as before.
const SLOTS: usize = 512;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
/// The handler that was installed before ours (a `sigaction` the handler may call).
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static INSTALL: Once = Once::new();

/// A read-only map of a whole file, watched: a read of it that faults because the file shrank
/// reads zeros and marks the map ([`FileMap::faulted`]) instead of ending the process.
#[derive(Debug)]
pub struct FileMap {
    // declared first so it is dropped first: the watch ends before the pages are unmapped
    watch: Watch,
    map: memmap2::Mmap,
}

impl FileMap {
    /// Map `file` read-only.
    pub fn new(file: &std::fs::File) -> std::io::Result<Self> {
        // SAFETY: the map is read-only and private to this process. A file truncated under it
        // makes reads of the vanished pages fault, which the watch turns into zeros plus the
        // mark every reader checks before using what it read.
        let map = unsafe { memmap2::Mmap::map(file) }?;
        let watch = Watch::new(map.as_ptr(), map.len());
        Ok(Self { watch, map })
    }

    /// Whether a read faulted because the file shrank: what that read returned is zeros and
    /// must not be used.
    pub fn faulted(&self) -> bool {
        self.watch.faulted()
    }

    /// Take bytes `offset..offset + len` out of this process's resident set; the next touch
    /// maps them again from the page cache (or the file).
    pub fn release(&self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        // SAFETY: the map is read-only and backed by a file, so MADV_DONTNEED cannot lose data:
        // the pages read back unchanged from the file. A failure only leaves the pages resident.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
        };
    }

    /// Ask the kernel to read bytes `offset..offset + len` ahead (a hint only).
    pub fn will_need(&self, offset: usize, len: usize) {
        let _ = self
            .map
            .advise_range(memmap2::Advice::WillNeed, offset, len);
    }
}

impl std::ops::Deref for FileMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// A registered map: reads of it that fault on a truncated file are repaired and remembered.
/// Dropping it (before the map is unmapped) ends the watch.
#[derive(Debug)]
struct Watch {
    slot: Option<usize>,
}

impl Watch {
    /// Watch the `len` bytes mapped at `ptr`.
    fn new(ptr: *const u8, len: usize) -> Self {
        if len == 0 {
            return Self { slot: None };
        }
        install();
        let start = ptr as usize;
        let slot = TABLE.iter().position(|s| {
            s.start
                .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(k) = slot {
            TABLE[k].faulted.store(false, Ordering::Release);
            TABLE[k].len.store(len, Ordering::Release);
        }
        Self { slot }
    }

    /// Whether a read of the map faulted because its file shrank (what was read there is zeros).
    fn faulted(&self) -> bool {
        self.slot
            .is_some_and(|k| TABLE[k].faulted.load(Ordering::Acquire))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(k) = self.slot {
            TABLE[k].len.store(0, Ordering::Release);
            TABLE[k].start.store(0, Ordering::Release);
        }
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions; the handler reads the size it leaves here
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: a zeroed sigaction is a valid value to fill in; the handler only makes
        // async-signal-safe calls (mmap, sigaction) and touches atomics
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigbus as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut new.sa_mask);
            let old: *mut libc::sigaction = Box::into_raw(Box::new(std::mem::zeroed()));
            if libc::sigaction(libc::SIGBUS, &new, old) == 0 {
                PREVIOUS.store(old, Ordering::Release);
            } else {
                drop(Box::from_raw(old));
            }
        }
    });
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &TABLE {
        let len = s.len.load(Ordering::Acquire);
        let start = s.start.load(Ordering::Acquire);
        if len == 0 || addr < start || addr >= start + len {
            continue;
        }
        let page = addr & !(PAGE.load(Ordering::Relaxed) - 1);
        // SAFETY: the page lies inside a live read-only map this process owns (its Watch is
        // dropped before the map is unmapped); replacing it with zeros changes only what the
        // faulting read sees, and the store refuses those rows once the mark is seen
        let r = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                PAGE.load(Ordering::Relaxed),
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r != libc::MAP_FAILED {
            s.faulted.store(true, Ordering::Release);
            return;
        }
    }
    // not a store's map: whoever handled SIGBUS before us, or the default action
    let prev = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: `prev` was filled by sigaction and is never freed
    unsafe {
        if !prev.is_null() {
            let p = &*prev;
            let h = p.sa_sigaction;
            if h != libc::SIG_DFL && h != libc::SIG_IGN {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(h);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
                    f(sig);
                }
                return;
            }
        }
        // returning re-runs the faulting read, which now ends the process as SIGBUS always did
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_read_past_a_truncated_end_reads_zeros_and_is_marked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("store.bin");
        let page = PAGE.load(Ordering::Relaxed).max(4096);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(&vec![7u8; 4 * page]).unwrap();
        drop(f);
        let map = FileMap::new(&std::fs::File::open(&p).unwrap()).unwrap();
        let other = Watch::new([1u8; 8].as_ptr(), 8);
        assert_eq!(map[0], 7);
        assert!(!map.faulted());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(page as u64)
            .unwrap();
        // the first page is still in the file; the last three are gone
        let tail: Vec<u8> = map[page..].to_vec();
        assert!(tail.iter().all(|&b| b == 0), "vanished pages read as zeros");
        assert_eq!(map[0], 7);
        assert!(map.faulted(), "the map is marked");
        assert!(!other.faulted(), "only the map that faulted is marked");
        drop(map);
        // the slot is free again: a new map starts unmarked
        let again = FileMap::new(&std::fs::File::open(&p).unwrap()).unwrap();
        assert!(!again.faulted());
    }
}
