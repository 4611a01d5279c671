//! The prefetch thread: owns a [`Batcher`], reads and shuffles batches ahead of the trainer, and
//! hands them over through a bounded channel, so HDF5 reads and decompression overlap training.
//!
//! Memory stays bounded by the batcher's block plus `depth` batches. Each batch carries the reading
//! position after it, so a checkpoint records exactly what the trainer consumed, not what the
//! thread has read ahead; a resumed run starts a new thread at that position.

use crate::data::batches::{Batch, BatchError, Batcher, Position, Rows};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A batch and the reading position just after it.
#[derive(Debug)]
pub struct Prefetched {
    /// The batch.
    pub batch: Batch,
    /// Where reading stands once this batch is consumed.
    pub position: Position,
}

/// Batches read ahead on a background thread.
pub struct Prefetcher {
    rx: Receiver<Result<Prefetched, BatchError>>,
    /// Spent batch buffers going back to the thread.
    spent: Sender<Rows>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    waited: Duration,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher")
            .field("waited", &self.waited)
            .finish()
    }
}

fn send_until_stopped<T>(tx: &SyncSender<T>, mut item: T, stop: &AtomicBool) -> bool {
    loop {
        match tx.try_send(item) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                item = back;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

impl Prefetcher {
    /// Start reading `rows`-row batches from `batcher`'s position, `depth` batches ahead.
    pub fn spawn(batcher: Batcher, rows: usize, depth: usize) -> Self {
        let (tx, rx) = sync_channel(depth.max(1));
        let (spent, spent_rx) = channel::<Rows>();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut b = batcher;
        let handle = std::thread::Builder::new()
            .name("jumpscope-prefetch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let buf = spent_rx.try_recv().unwrap_or_default();
                    let item = b.next_batch_into(rows, buf).map(|batch| Prefetched {
                        batch,
                        position: b.position(),
                    });
                    let failed = item.is_err();
                    if !send_until_stopped(&tx, item, &flag) || failed {
                        break;
                    }
                }
            })
            .expect("spawning the prefetch thread");
        Self {
            rx,
            spent,
            stop,
            handle: Some(handle),
            waited: Duration::ZERO,
        }
    }

    /// The next batch, waiting for the thread if it is behind.
    pub fn next_batch(&mut self) -> Result<Prefetched, BatchError> {
        let t0 = Instant::now();
        let r = self.rx.recv().map_err(|_| BatchError::Stopped)?;
        self.waited += t0.elapsed();
        r
    }

    /// Hand a consumed batch's buffer back for reuse (optional; it saves faulting in fresh pages).
    pub fn recycle(&self, buf: Rows) {
        // the thread may have ended already; then the buffer is simply dropped
        let _ = self.spent.send(buf);
    }

    /// Total time spent waiting for data, and reset it.
    pub fn take_wait(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        while self.rx.try_recv().is_ok() {}
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
