//! Per-feature statistics gathered in one pass over dense activation batches: how often each
//! feature fires, its mean and maximum, a histogram of its non-zero activations, and its top-k
//! activations with their store positions.
//!
//! The histogram's bins are chosen from the data without a second pass: each feature's range is
//! `[0, R)` with `R` a power of two, first the smallest one above the first activation seen;
//! when a larger activation arrives, `R` doubles and neighbouring bins merge pairwise. Because
//! `R` (and so the bin width) only changes by powers of two, a value's bin is
//! `floor(v · bins / R)` computed exactly in floating point, before and after any doubling, so
//! the counts are exactly those of binning every value into the final edges.

use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Features handled together by one task (each task owns its features' accumulators).
const FEATURES_PER_TASK: usize = 64;

/// One of a feature's largest activations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Top {
    /// The activation.
    pub activation: f32,
    /// Its row in the store (global, over all files).
    pub position: u64,
}

// Larger activations rank first; among equal ones, the earlier position.
impl Eq for Top {}
impl Ord for Top {
    fn cmp(&self, o: &Self) -> Ordering {
        self.activation
            .total_cmp(&o.activation)
            .then(o.position.cmp(&self.position))
    }
}
impl PartialOrd for Top {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A feature's accumulators.
#[derive(Debug, Clone)]
pub struct FeatureAcc {
    /// Tokens it fired on.
    pub count: u64,
    /// Sum of its non-zero activations.
    pub sum: f64,
    /// Its largest activation (0 if it never fired).
    pub max: f32,
    /// Histogram counts over `[0, range)`.
    pub hist: Vec<u64>,
    /// The histogram's upper edge (a power of two; 0 until the first activation).
    pub range: f32,
    /// The `k` largest, as a min-heap (the smallest kept on top).
    top: BinaryHeap<std::cmp::Reverse<Top>>,
}

impl FeatureAcc {
    fn new(bins: usize) -> Self {
        Self {
            count: 0,
            sum: 0.0,
            max: 0.0,
            hist: vec![0; bins],
            range: 0.0,
            top: BinaryHeap::new(),
        }
    }

    fn add(&mut self, v: f32, position: u64, k: usize) {
        self.count += 1;
        self.sum += v as f64;
        if v > self.max {
            self.max = v;
        }
        let bins = self.hist.len();
        if self.range == 0.0 {
            self.range = next_pow2_above(v);
        }
        while v >= self.range {
            // merge bins pairwise into the lower half; the upper half starts empty
            for i in 0..bins / 2 {
                self.hist[i] = self.hist[2 * i] + self.hist[2 * i + 1];
            }
            self.hist[bins / 2..].fill(0);
            self.range *= 2.0;
        }
        self.hist[bin(v, self.range, bins)] += 1;
        let t = Top {
            activation: v,
            position,
        };
        if self.top.len() < k {
            self.top.push(std::cmp::Reverse(t));
        } else if k > 0 && self.top.peek().is_some_and(|s| t > s.0) {
            self.top.pop();
            self.top.push(std::cmp::Reverse(t));
        }
    }

    /// The top activations, largest first.
    pub fn top(&self) -> Vec<Top> {
        let mut v: Vec<Top> = self.top.iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// The bin of activation `v > 0` in `bins` even bins over `[0, range)`, `range` a power of two.
pub fn bin(v: f32, range: f32, bins: usize) -> usize {
    // bins / range is a power of two, so the product is exact up to the floor
    ((v * (bins as f32 / range)) as usize).min(bins - 1)
}

/// The smallest power of two strictly above `v > 0`.
pub fn next_pow2_above(v: f32) -> f32 {
    let mut r = 2f32.powi(v.log2().floor() as i32);
    while r <= v {
        r *= 2.0;
    }
    while r / 2.0 > v {
        r /= 2.0;
    }
    r
}

/// A batch's non-zero activations grouped by feature (compressed sparse columns).
#[derive(Debug, Default)]
pub struct ByFeature {
    /// Feature `i`'s entries are `entries[starts[i]..starts[i + 1]]`.
    pub starts: Vec<usize>,
    /// `(row in the batch, activation)`, rows increasing within a feature.
    pub entries: Vec<(u32, f32)>,
}

impl ByFeature {
    /// Group `(row, feature, value)` triples (rows increasing) by feature, a counting sort.
    pub fn group(triples: &[(u32, u32, f32)], d_sae: usize) -> Self {
        let mut starts = vec![0usize; d_sae + 1];
        for &(_, i, _) in triples {
            starts[i as usize + 1] += 1;
        }
        for i in 0..d_sae {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut entries = vec![(0u32, 0f32); triples.len()];
        for &(r, i, v) in triples {
            entries[next[i as usize]] = (r, v);
            next[i as usize] += 1;
        }
        Self { starts, entries }
    }
}

/// The accumulators of every feature, filled batch by batch.
#[derive(Debug)]
pub struct Scanner {
    accs: Vec<FeatureAcc>,
    k: usize,
}

impl Scanner {
    /// `d_sae` features, histograms of `bins` bins (a power of two), the `k` largest kept.
    pub fn new(d_sae: usize, bins: usize, k: usize) -> Self {
        assert!(
            bins.is_power_of_two() && bins >= 2,
            "bins must be a power of two"
        );
        Self {
            accs: (0..d_sae).map(|_| FeatureAcc::new(bins)).collect(),
            k,
        }
    }

    /// Add a batch's non-zero activations, grouped by feature: `sparse.entries[sparse.starts[i]
    /// ..sparse.starts[i + 1]]` are feature `i`'s `(row, value)`, `positions[row]` the row's
    /// place in the store. Features are split across threads.
    pub fn add(&mut self, sparse: &ByFeature, positions: &[u64]) {
        let k = self.k;
        self.accs
            .par_chunks_mut(FEATURES_PER_TASK)
            .enumerate()
            .for_each(|(c, accs)| {
                for (j, acc) in accs.iter_mut().enumerate() {
                    let i = c * FEATURES_PER_TASK + j;
                    for &(row, v) in &sparse.entries[sparse.starts[i]..sparse.starts[i + 1]] {
                        acc.add(v, positions[row as usize], k);
                    }
                }
            });
    }

    /// The accumulators, in feature order.
    pub fn into_features(self) -> Vec<FeatureAcc> {
        self.accs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_keeps_counts_those_of_the_final_edges() {
        let vals = [0.3f32, 0.1, 0.9, 2.5, 0.05, 7.9, 3.0, 0.7, 1.0, 4.0];
        let mut a = FeatureAcc::new(8);
        for (i, v) in vals.iter().enumerate() {
            a.add(*v, i as u64, 3);
        }
        assert_eq!(a.range, 8.0);
        let mut want = [0u64; 8];
        for v in vals {
            want[(v / 1.0).floor() as usize] += 1;
        }
        assert_eq!(a.hist, want);
        assert_eq!(a.count, 10);
        assert_eq!(a.max, 7.9);
        let top: Vec<u64> = a.top().iter().map(|t| t.position).collect();
        assert_eq!(top, vec![5, 9, 6]);
        assert_eq!(next_pow2_above(1.0), 2.0);
        assert_eq!(next_pow2_above(0.75), 1.0);
    }
}
