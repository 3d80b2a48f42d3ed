//! JSON number formatting.
//!
//! serde_json writes every `f64` with a fraction (`85.0`), while the spec writes integral values as
//! integers (`"soc": 85`, `"power": -200`). Writing integral values as integers keeps the wire
//! identical to the spec's examples and a few bytes shorter; readers accept either form.

use serde::{Deserialize, Deserializer, Serializer};

/// Largest magnitude below which every integer is exact in an `f64`.
const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

pub(crate) fn write_f64<S: Serializer>(value: f64, s: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < EXACT_INT {
        // Lossless: |value| < 2^53, so the cast is exact. `-0.0` becomes `0`.
        s.serialize_i64(value as i64)
    } else {
        s.serialize_f64(value)
    }
}

pub(crate) fn opt_f64<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => write_f64(*v, s),
        None => s.serialize_none(),
    }
}

/// A field that must be present but may be `null` (unknown). Using `deserialize_with` switches
/// off serde's "missing Option means None", so a forgotten field is still an error.
pub(crate) fn required_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)
}
