//! Bounded time series for the live charts: the whole run, thinned as it grows, plus the most
//! recent points at full resolution, so memory stays fixed however long the run.

use std::collections::VecDeque;

/// One `(step, value)` series.
#[derive(Debug, Clone)]
pub struct Series {
    /// The whole run: every point until `cap`, then every other one is dropped and only every
    /// `stride`-th new point is kept, so the span stays covered evenly.
    full: Vec<(f64, f64)>,
    /// The last `recent_cap` points, unthinned.
    recent: VecDeque<(f64, f64)>,
    cap: usize,
    recent_cap: usize,
    stride: u64,
    seen: u64,
}

impl Series {
    /// A series keeping at most `cap` thinned points and `recent_cap` recent ones.
    pub fn new(cap: usize, recent_cap: usize) -> Self {
        Self {
            full: Vec::with_capacity(cap.max(2)),
            recent: VecDeque::with_capacity(recent_cap.max(1)),
            cap: cap.max(2),
            recent_cap: recent_cap.max(1),
            stride: 1,
            seen: 0,
        }
    }

    /// Add a point (steps increase). Non-finite values are kept out of the charts.
    pub fn push(&mut self, x: f64, y: f64) {
        if !y.is_finite() {
            return;
        }
        if self.recent.len() == self.recent_cap {
            self.recent.pop_front();
        }
        self.recent.push_back((x, y));
        if self.seen.is_multiple_of(self.stride) {
            if self.full.len() == self.cap {
                let mut i = 0;
                self.full.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
            if self.seen.is_multiple_of(self.stride) {
                self.full.push((x, y));
            }
        }
        self.seen += 1;
    }

    /// Drop the points after step `x` (a resume trains them again).
    pub fn truncate_after(&mut self, x: f64) {
        self.full.retain(|p| p.0 <= x);
        self.recent.retain(|p| p.0 <= x);
    }

    /// Every kept point of the run.
    pub fn full(&self) -> &[(f64, f64)] {
        &self.full
    }

    /// The recent points, oldest first.
    pub fn recent(&self) -> Vec<(f64, f64)> {
        self.recent.iter().copied().collect()
    }

    /// The last value.
    pub fn last(&self) -> Option<f64> {
        self.recent.back().map(|p| p.1)
    }

    /// The step of the last point.
    pub fn last_x(&self) -> Option<f64> {
        self.recent.back().map(|p| p.0)
    }

    /// Points pushed so far (kept or not).
    pub fn len_seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stays_bounded_and_the_whole_span_stays_covered() {
        let mut s = Series::new(64, 10);
        for i in 0..100_000 {
            s.push(i as f64, (i % 7) as f64);
        }
        assert!(s.full().len() <= 64, "{}", s.full().len());
        assert!(s.full().len() >= 32);
        assert_eq!(s.full()[0].0, 0.0);
        assert!(s.full().last().unwrap().0 > 90_000.0);
        assert!(s.full().windows(2).all(|w| w[0].0 < w[1].0));
        let r = s.recent();
        assert_eq!(r.len(), 10);
        assert_eq!(r[9].0, 99_999.0);
        assert_eq!(s.last(), Some((99_999 % 7) as f64));
        s.push(1e6, f64::NAN);
        assert_eq!(s.len_seen(), 100_000, "NaN is not a point");
    }
}
