//! A float that may be NaN in JSON: written as `null` (as serde_json does anyway) and read back
//! from `null` as NaN, so a record with an unknown number still reads.

use serde::{Deserialize, Deserializer, Serializer};

/// NaN: the default of a number a record of an earlier version lacks.
pub fn nan() -> f64 {
    f64::NAN
}

/// Write `v` (NaN and ±∞ as `null`).
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

/// Read a number, or `null` as NaN.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
