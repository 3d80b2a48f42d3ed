//! SunSpec point decoding: "not implemented" sentinels and scale factors, per the SunSpec
//! Information Model Specification (table of point types and their unimplemented values).

/// `uint16`, `enum16`, `bitfield16`: 0xFFFF means not implemented.
pub(crate) fn u16(raw: u16) -> Option<u16> {
    (raw != 0xFFFF).then_some(raw)
}

/// `int16`: 0x8000 means not implemented.
pub(crate) fn i16(raw: u16) -> Option<i16> {
    (raw != 0x8000).then_some(raw as i16)
}

/// `bitfield32` (high word first): 0xFFFFFFFF means not implemented.
pub(crate) fn bitfield32(hi: u16, lo: u16) -> Option<u32> {
    let v = (u32::from(hi) << 16) | u32::from(lo);
    (v != 0xFFFF_FFFF).then_some(v)
}

/// `sunssf`: a power-of-ten exponent in -10..=10; 0x8000 means not implemented, and anything
/// outside the range is treated the same (a device bug must not scale by 10^-32768).
pub(crate) fn sf(raw: u16) -> Option<i32> {
    let v = raw as i16;
    (-10..=10).contains(&v).then_some(i32::from(v))
}

/// An unsigned point times 10^sf; absent if either is not implemented.
pub(crate) fn scaled_u16(raw: u16, sf_raw: u16) -> Option<f64> {
    Some(f64::from(u16(raw)?) * 10f64.powi(sf(sf_raw)?))
}

/// A signed point times 10^sf; absent if either is not implemented.
pub(crate) fn scaled_i16(raw: u16, sf_raw: u16) -> Option<f64> {
    Some(f64::from(i16(raw)?) * 10f64.powi(sf(sf_raw)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_are_absent() {
        assert_eq!(scaled_u16(0xFFFF, 0), None);
        assert_eq!(scaled_i16(0x8000, 0), None);
        assert_eq!(scaled_i16(100, 0x8000), None);
        assert_eq!(bitfield32(0xFFFF, 0xFFFF), None);
        assert_eq!(scaled_i16((-1234i16) as u16, (-1i16) as u16), Some(-123.4));
        assert_eq!(scaled_u16(5, 2), Some(500.0));
        assert_eq!(scaled_u16(0, 0), Some(0.0), "zero is a value");
    }
}
