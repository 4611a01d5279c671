//! SAELens activation caches read in place: a Hugging Face `datasets` directory (`state.json`
//! listing `data-*.arrow` files, each an Arrow IPC stream) whose hook column holds one
//! `[context, d_in]` array per sequence (`Array2D`, stored as `list<list<float>>`), with
//! `token_ids` beside it (`Sequence(int32, length = context)`, a fixed-size list).
//!
//! Each stream's messages are indexed once (offsets only, from the memory-mapped file); a record
//! batch is decoded when its rows are read, projected to the columns asked for, so memory stays
//! bounded by one batch whatever the cache's size; the map's pages of rows read are released
//! after the copy, as `data::raw` does for HDF5 (its header says why). `data::store::Store` reads a cache through
//! this module when `data.stores` names a cache directory.

use crate::data::fault::FileMap;
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float16Array, Float32Array, ListArray};
use arrow_buffer::Buffer;
use arrow_ipc::{
    MessageHeader, convert::try_fb_to_schema, reader::read_record_batch, root_as_message,
};
use arrow_schema::{DataType, SchemaRef};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

/// A cache that cannot be read: one line naming the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Not a `datasets` directory with Arrow files.
    #[error(
        "{0}: not a SAELens activation cache (expected a `datasets` directory: state.json listing data-*.arrow files)"
    )]
    NotACache(PathBuf),
    /// The hook column is not there.
    #[error("{path}: no column `{column}` (columns: {found})")]
    MissingColumn {
        /// The Arrow file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// Those present.
        found: String,
    },
    /// A column of a type this reader does not take.
    #[error("{path}: column `{column}` is {found}: expected {expected}")]
    BadColumn {
        /// The Arrow file.
        path: PathBuf,
        /// The column.
        column: String,
        /// Its type.
        found: String,
        /// What is read.
        expected: String,
    },
    /// The file is not a readable Arrow stream.
    #[error("{path}: not a readable Arrow IPC stream: {why}")]
    Corrupt {
        /// The Arrow file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The files disagree on the column's shape.
    #[error(
        "{path}: column `{column}` holds [{context}, {d_in}] arrays; {first} holds [{c0}, {d0}]"
    )]
    Inconsistent {
        /// The Arrow file.
        path: PathBuf,
        /// The column.
        column: String,
        /// Its shape here …
        context: usize,
        /// …
        d_in: usize,
        /// … and in the first file.
        first: PathBuf,
        /// …
        c0: usize,
        /// …
        d0: usize,
    },
    /// A file changed size since the cache was opened (reading a truncated map would crash).
    #[error("{path}: the cache file changed size ({was} -> {now} bytes) during the run")]
    Changed {
        /// The Arrow file.
        path: PathBuf,
        /// Its size when opened …
        was: u64,
        /// … and now (0 when it vanished).
        now: u64,
    },
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// One record-batch message of a stream: where its metadata and body lie, and its sequences.
#[derive(Debug, Clone)]
struct Batch {
    meta: std::ops::Range<usize>,
    body: std::ops::Range<usize>,
    first_seq: usize,
    seqs: usize,
}

struct File {
    path: PathBuf,
    /// The file's map, also owned by `bytes`; kept to release pages once read.
    map: Arc<FileMap>,
    bytes: Buffer,
    schema: SchemaRef,
    batches: Vec<Batch>,
    first_seq: usize,
    seqs: usize,
}

/// An open cache: one hook column over every file, in `state.json`'s order.
pub struct ArrowCache {
    files: Vec<File>,
    column: String,
    context: usize,
    d_in: usize,
    float16: bool,
}

/// Whether `dir` looks like a `datasets` directory (it has a `state.json` listing data files).
pub fn is_cache(dir: &Path) -> bool {
    data_files(dir).is_ok()
}

/// A cache's columns: the names of those holding activations (`Array2D` of float32 or float16),
/// and every column's name with its type.
pub type Columns = (Vec<String>, Vec<(String, String)>);

/// The columns of a cache, from its first file's schema.
pub fn hook_columns(dir: &Path) -> Result<Columns, CacheError> {
    let first = data_files(dir)?.remove(0);
    let (_, bytes) = map(&first)?;
    let (schema, _) = index(&first, &bytes)?;
    let all = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    let hooks = schema
        .fields()
        .iter()
        .filter(|f| element(f.data_type()).is_some())
        .map(|f| f.name().clone())
        .collect();
    Ok((hooks, all))
}

fn data_files(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let not = || CacheError::NotACache(dir.to_path_buf());
    let text = std::fs::read_to_string(dir.join("state.json")).map_err(|_| not())?;
    let state: serde_json::Value = serde_json::from_str(&text).map_err(|_| not())?;
    let files: Vec<PathBuf> = state["_data_files"]
        .as_array()
        .ok_or_else(not)?
        .iter()
        .filter_map(|f| f["filename"].as_str().map(|n| dir.join(n)))
        .collect();
    if files.is_empty() {
        return Err(not());
    }
    Ok(files)
}

fn map(path: &Path) -> Result<(Arc<FileMap>, Buffer), CacheError> {
    let f = std::fs::File::open(path).map_err(|source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // a file changed under a running reader reads changed bytes, which the checks on decode
    // catch or not, as for any reader of a file being rewritten; one cut short reads zeros
    // that the map's fault mark refuses
    let m = FileMap::new(&f).map_err(|source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let len = m.len();
    let ptr = NonNull::new(m.as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
    let m = Arc::new(m);
    // SAFETY: `ptr` points at `len` bytes owned by the map, which the buffer keeps alive.
    let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, m.clone()) };
    Ok((m, buffer))
}

/// A record batch message found by [`index`]: its metadata and body ranges, and its length.
type Found = (std::ops::Range<usize>, std::ops::Range<usize>, usize);

/// Index a stream: its schema and the offsets of its record batches.
fn index(path: &Path, bytes: &Buffer) -> Result<(SchemaRef, Vec<Found>), CacheError> {
    let corrupt = |why: String| CacheError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let b = bytes.as_slice();
    let (mut at, mut schema, mut out) = (0usize, None, Vec::new());
    while at + 4 <= b.len() {
        let mut word = u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
        let mut head = 4;
        if word == 0xFFFF_FFFF {
            if at + 8 > b.len() {
                break;
            }
            word = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap_or([0; 4]));
            head = 8;
        }
        let meta_len = word as usize;
        if meta_len == 0 {
            break; // end of stream
        }
        let meta = at + head..at + head + meta_len;
        if meta.end > b.len() {
            return Err(corrupt(format!("a message at byte {at} runs past the end")));
        }
        let msg = root_as_message(&b[meta.clone()]).map_err(|e| corrupt(e.to_string()))?;
        let body = meta.end..meta.end + msg.bodyLength() as usize;
        if body.end > b.len() {
            return Err(corrupt(format!(
                "a message body at byte {} runs past the end",
                meta.end
            )));
        }
        match msg.header_type() {
            MessageHeader::Schema => {
                let s = msg
                    .header_as_schema()
                    .ok_or_else(|| corrupt("a schema message without a schema".into()))?;
                schema = Some(Arc::new(
                    try_fb_to_schema(s).map_err(|e| corrupt(e.to_string()))?,
                ));
            }
            MessageHeader::RecordBatch => {
                let rb = msg
                    .header_as_record_batch()
                    .ok_or_else(|| corrupt("a record batch message without its header".into()))?;
                out.push((meta.clone(), body.clone(), rb.length() as usize));
            }
            MessageHeader::DictionaryBatch => {
                return Err(corrupt(
                    "dictionary batches are not used by activation caches".into(),
                ));
            }
            _ => {}
        }
        at = body.end;
    }
    let schema = schema.ok_or_else(|| corrupt("no schema message".into()))?;
    Ok((schema, out))
}

/// `[context, d_in]` of a `list<list<float32|float16>>` column, from its first record batch.
fn element(t: &DataType) -> Option<bool> {
    match t {
        DataType::List(inner) | DataType::LargeList(inner) | DataType::FixedSizeList(inner, _) => {
            match inner.data_type() {
                DataType::List(v) | DataType::LargeList(v) | DataType::FixedSizeList(v, _) => {
                    match v.data_type() {
                        DataType::Float32 => Some(false),
                        DataType::Float16 => Some(true),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

impl ArrowCache {
    /// Open the cache in `dir` for the hook column `column`.
    pub fn open(dir: &Path, column: &str) -> Result<Self, CacheError> {
        let mut files = Vec::new();
        let mut seq = 0;
        let mut shape: Option<(usize, usize, bool, PathBuf)> = None;
        for path in data_files(dir)? {
            let (map, bytes) = map(&path)?;
            let (schema, msgs) = index(&path, &bytes)?;
            let field = schema
                .field_with_name(column)
                .map_err(|_| CacheError::MissingColumn {
                    path: path.clone(),
                    column: column.into(),
                    found: schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let float16 = element(field.data_type()).ok_or_else(|| CacheError::BadColumn {
                path: path.clone(),
                column: column.into(),
                found: field.data_type().to_string(),
                expected: "an Array2D of float32 or float16 (list<list<float>>)".into(),
            })?;
            let mut batches = Vec::new();
            let first = seq;
            for (meta, body, seqs) in msgs {
                batches.push(Batch {
                    meta,
                    body,
                    first_seq: seq,
                    seqs,
                });
                seq += seqs;
            }
            let file = File {
                path: path.clone(),
                map,
                bytes,
                schema,
                batches,
                first_seq: first,
                seqs: seq - first,
            };
            if file.seqs > 0 {
                let (context, d_in) = file.shape_of(column, 0)?;
                match &shape {
                    None => shape = Some((context, d_in, float16, path.clone())),
                    Some((c0, d0, _, p0)) if (*c0, *d0) != (context, d_in) => {
                        return Err(CacheError::Inconsistent {
                            path,
                            column: column.into(),
                            context,
                            d_in,
                            first: p0.clone(),
                            c0: *c0,
                            d0: *d0,
                        });
                    }
                    _ => {}
                }
            }
            files.push(file);
        }
        let (context, d_in, float16, _) =
            shape.ok_or_else(|| CacheError::NotACache(dir.to_path_buf()))?;
        Ok(Self {
            files,
            column: column.into(),
            context,
            d_in,
            float16,
        })
    }

    /// Rows (tokens): sequences × context.
    pub fn rows(&self) -> usize {
        self.files.iter().map(|f| f.seqs).sum::<usize>() * self.context
    }

    /// Activation width.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Tokens per sequence.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Whether the column is stored as float16.
    pub fn is_float16(&self) -> bool {
        self.float16
    }

    /// The hook column read.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Each Arrow file with its sequences and its size on disk, in reading order.
    pub fn files(&self) -> Vec<(&Path, usize, u64)> {
        self.files
            .iter()
            .map(|f| (f.path.as_path(), f.seqs, f.bytes.len() as u64))
            .collect()
    }

    /// Whether every file has a `token_ids` column.
    pub fn has_token_ids(&self) -> bool {
        self.files
            .iter()
            .all(|f| f.schema.field_with_name("token_ids").is_ok())
    }

    /// The file holding global row `row`, and the row's index inside that file.
    pub fn locate(&self, row: usize) -> (&Path, usize) {
        let seq = row / self.context;
        let f = self
            .files
            .partition_point(|f| f.first_seq + f.seqs <= seq)
            .min(self.files.len() - 1);
        let file = &self.files[f];
        (&file.path, row - file.first_seq * self.context)
    }

    /// The record batches holding rows `start..start + n`: each with its file, its index there,
    /// and the global rows it contributes.
    fn spans(&self, start: usize, n: usize) -> Vec<(&File, usize, std::ops::Range<usize>)> {
        let end = (start + n).min(self.rows());
        let mut out = Vec::new();
        let mut row = start;
        while row < end {
            let seq = row / self.context;
            let f = self.files.partition_point(|f| f.first_seq + f.seqs <= seq);
            let file = &self.files[f];
            let b = file
                .batches
                .partition_point(|b| b.first_seq + b.seqs <= seq);
            let batch = &file.batches[b];
            let batch_end = ((batch.first_seq + batch.seqs) * self.context).min(end);
            out.push((file, b, row..batch_end));
            row = batch_end;
        }
        out
    }

    /// Append `n` rows from global row `start` to `out`, as f32.
    pub fn read_rows(&self, start: usize, n: usize, out: &mut Vec<f32>) -> Result<(), CacheError> {
        for (file, b, rows) in self.spans(start, n) {
            file.check_unchanged()?;
            let first = file.batches[b].first_seq;
            let col = file.column(&self.column, b)?;
            let (outer, inner) = nested(&col).ok_or_else(|| file.bad(&self.column))?;
            let values = inner.values().as_any();
            let (v16, v32) = (
                values.downcast_ref::<Float16Array>(),
                values.downcast_ref::<Float32Array>(),
            );
            let mut read: Option<(*const u8, *const u8)> = None;
            for r in rows {
                let (s, t) = (r / self.context - first, r % self.context);
                let i = outer.value_offsets()[s] as usize + t;
                let lo = inner.value_offsets()[i] as usize;
                let span = match (self.float16, v16, v32) {
                    (true, Some(v), _) => {
                        let row = &v.values()[lo..lo + self.d_in];
                        out.extend(row.iter().map(|h| h.to_f32()));
                        bytes_of(row.as_ptr_range())
                    }
                    (false, _, Some(v)) => {
                        let row = &v.values()[lo..lo + self.d_in];
                        out.extend_from_slice(row);
                        bytes_of(row.as_ptr_range())
                    }
                    _ => return Err(file.bad(&self.column)),
                };
                let (a, b) = span;
                read = Some(read.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
            }
            if let Some((a, b)) = read {
                file.release(a, b);
            }
            file.check_faults()?;
        }
        Ok(())
    }

    /// Token ids of `n` rows from global row `start`, from the `token_ids` column (`None` when
    /// the cache has none).
    pub fn read_token_ids(&self, start: usize, n: usize) -> Result<Option<Vec<i64>>, CacheError> {
        if !self.has_token_ids() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(n);
        for (file, b, rows) in self.spans(start, n) {
            file.check_unchanged()?;
            let col = file.column("token_ids", b)?;
            let list = col
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .ok_or_else(|| file.bad("token_ids"))?;
            let ids = list
                .values()
                .as_any()
                .downcast_ref::<arrow_array::Int32Array>()
                .ok_or_else(|| file.bad("token_ids"))?;
            let base = (file.batches[b].first_seq * self.context) as isize
                - (list.offset() * self.context) as isize;
            out.extend(rows.map(|r| ids.value((r as isize - base) as usize) as i64));
        }
        Ok(Some(out))
    }
}

/// A slice's byte range.
fn bytes_of<T>(r: std::ops::Range<*const T>) -> (*const u8, *const u8) {
    (r.start as *const u8, r.end as *const u8)
}

/// The outer and inner lists of an Array2D column.
fn nested(col: &ArrayRef) -> Option<(&ListArray, &ListArray)> {
    let outer = col.as_any().downcast_ref::<ListArray>()?;
    let inner = outer.values().as_any().downcast_ref::<ListArray>()?;
    Some((outer, inner))
}

impl File {
    /// Take the map's pages of bytes `a..b` (rows just copied) out of the resident set; bytes
    /// not in the map (a buffer arrow had to copy) are left alone.
    fn release(&self, a: *const u8, b: *const u8) {
        let base = self.map.as_ptr() as usize;
        let (a, b) = (a as usize, b as usize);
        if a >= base && b <= base + self.map.len() && a < b {
            self.map.release(a - base, b - a);
        }
    }

    /// No read of the map faulted because the file shrank after the size check (what such a
    /// read returned is zeros).
    fn check_faults(&self) -> Result<(), CacheError> {
        if !self.map.faulted() {
            return Ok(());
        }
        Err(CacheError::Changed {
            path: self.path.clone(),
            was: self.bytes.len() as u64,
            now: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
        })
    }

    /// The file still has the size it was mapped with: a truncated map would fault on read.
    fn check_unchanged(&self) -> Result<(), CacheError> {
        let was = self.bytes.len() as u64;
        let now = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if now == was {
            Ok(())
        } else {
            Err(CacheError::Changed {
                path: self.path.clone(),
                was,
                now,
            })
        }
    }

    fn bad(&self, column: &str) -> CacheError {
        CacheError::BadColumn {
            path: self.path.clone(),
            column: column.into(),
            found: self
                .schema
                .field_with_name(column)
                .map(|f| f.data_type().to_string())
                .unwrap_or_else(|_| "missing".into()),
            expected: "the layout SAELens writes".into(),
        }
    }

    /// Decode column `name` of record batch `b`.
    fn column(&self, name: &str, b: usize) -> Result<ArrayRef, CacheError> {
        let corrupt = |why: String| CacheError::Corrupt {
            path: self.path.clone(),
            why,
        };
        let batch = &self.batches[b];
        let idx = self
            .schema
            .index_of(name)
            .map_err(|e| corrupt(e.to_string()))?;
        let msg = root_as_message(&self.bytes.as_slice()[batch.meta.clone()])
            .map_err(|e| corrupt(e.to_string()))?;
        let rb = msg
            .header_as_record_batch()
            .ok_or_else(|| corrupt("a record batch message without its header".into()))?;
        let body = self
            .bytes
            .slice_with_length(batch.body.start, batch.body.len());
        let decoded = read_record_batch(
            &body,
            rb,
            Arc::clone(&self.schema),
            &HashMap::new(),
            Some(&[idx]),
            &msg.version(),
        )
        .map_err(|e| corrupt(e.to_string()))?;
        Ok(Arc::clone(decoded.column(0)))
    }

    /// `[context, d_in]` of the first sequence of batch `b`.
    fn shape_of(&self, column: &str, b: usize) -> Result<(usize, usize), CacheError> {
        let col = self.column(column, b)?;
        let (outer, inner) = nested(&col).ok_or_else(|| self.bad(column))?;
        let context = outer.value_length(0) as usize;
        let d_in = if context > 0 {
            inner.value_length(outer.value_offsets()[0] as usize) as usize
        } else {
            0
        };
        if context == 0 || d_in == 0 {
            return Err(self.bad(column));
        }
        Ok((context, d_in))
    }
}

#[cfg(test)]
mod tests;
