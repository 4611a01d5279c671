//! `OUT/sweep.jsonl`: the sweep-level records (start, resume, member state changes, checkpoints
//! of all members at one step, the end), one JSON object per line, tagged by `type`. Each
//! member's own records are in `OUT/<member>/metrics.jsonl`.

use crate::data::batches::Position;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Training on the shared stream.
    Running,
    /// Paused: the stream goes on without it.
    Paused,
    /// All its steps done, its SAE exported.
    Finished,
    /// Stopped on request, with a checkpoint.
    Stopped,
    /// Failed (a non-finite loss, or an error of its own); the others go on.
    Failed,
}

impl MemberState {
    /// Whether the member still takes part (steps, checkpoints).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }

    /// The state as the table shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Finished => "finished",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// A member as the opening record describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its name (and run directory under the sweep's).
    pub name: String,
    /// The keys set for it, with their values as TOML text.
    pub varied: Vec<(String, String)>,
    /// Keys of the base left out because its architecture does not take them.
    pub dropped: Vec<String>,
    /// Its device.
    pub device: String,
    /// Its architecture.
    pub architecture: String,
    /// Its dictionary size.
    pub d_sae: usize,
}

/// One line of `sweep.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SweepRecord {
    /// A new sweep.
    Start {
        /// The members, in order.
        members: Vec<MemberInfo>,
        /// Activation width.
        d_in: usize,
        /// Rows in the store (held-out rows included).
        store_rows: usize,
        /// The input scale every member shares.
        scale: f64,
        /// The target scale every transcoder member shares (none without one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_scale: Option<f64>,
        /// The devices members were placed on.
        devices: Vec<String>,
        /// Bytes all members need together, by device (a floor; see `train::memory`).
        memory_estimate: BTreeMap<String, u64>,
    },
    /// The sweep continued from a sweep checkpoint.
    Resume {
        /// Stream steps (batches read) at the checkpoint.
        step: u64,
        /// The members continuing.
        members: Vec<String>,
    },
    /// A member changed state.
    Member {
        /// Stream steps so far.
        step: u64,
        /// The member.
        name: String,
        /// Its new state.
        state: MemberState,
        /// The member's own steps.
        member_step: u64,
        /// Why (failures).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Every live member checkpointed after the same batch.
    Checkpoint {
        /// Stream steps so far.
        step: u64,
        /// Rows read from the store so far (the store is read once for all members).
        rows_read: u64,
        /// Where reading continues.
        position: Position,
        /// Each live member's checkpoint.
        members: BTreeMap<String, PathBuf>,
    },
    /// The sweep ended: every member finished, stopped or failed.
    Finish {
        /// Stream steps.
        step: u64,
        /// Rows read from the store.
        rows_read: u64,
        /// Each member's end state.
        states: BTreeMap<String, MemberState>,
    },
    /// The sweep was stopped (every live member checkpointed).
    Stop {
        /// Stream steps.
        step: u64,
        /// Rows read from the store.
        rows_read: u64,
    },
}

/// Read `sweep.jsonl`; lines that do not parse (a torn last line) are skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<SweepRecord>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

impl crate::schema::tail::Line for SweepRecord {
    fn parse(line: &[u8]) -> Result<Option<Self>, serde_json::Error> {
        serde_json::from_slice(line).map(Some)
    }
}

/// Follows `sweep.jsonl` as the sweep appends to it (for `watch` on a sweep).
pub type SweepTail = crate::schema::tail::Tail<SweepRecord>;
