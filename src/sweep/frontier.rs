//! The L0–FVU frontier: of a set of points, those no other point beats on both (fewer features
//! firing and a better reconstruction), in order of L0.

/// Indices of the Pareto-optimal points of `points` (L0, FVU), lower being better on both, in
/// increasing L0. Ties in L0 keep the lower FVU; non-finite points are left out.
pub fn pareto(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[a].1.total_cmp(&points[b].1))
    });
    let mut out = Vec::new();
    let mut best = f64::INFINITY;
    for i in idx {
        if points[i].1 < best {
            best = points[i].1;
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_keeps_what_nothing_beats_on_both() {
        let p = [
            (10.0, 0.30), // 0: on it
            (20.0, 0.35), // 1: beaten by 0 (more L0, worse FVU)
            (40.0, 0.10), // 2: on it
            (5.0, 0.50),  // 3: on it (sparsest)
            (40.0, 0.20), // 4: same L0 as 2, worse
            (f64::NAN, 0.0),
            (80.0, 0.10), // 6: same FVU as 2 at more L0: beaten
        ];
        assert_eq!(pareto(&p), [3, 0, 2]);
        assert!(pareto(&[]).is_empty());
    }
}
