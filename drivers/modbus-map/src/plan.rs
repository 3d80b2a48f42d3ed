//! Read planning: merging the registers a map needs into as few Modbus reads as possible.
//! Pure: no bus.

use ems_driver_sdk::regs::RegisterKind;

/// A range of registers some reading needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: RegisterKind,
    pub start: u16,
    pub count: u16,
}

impl Span {
    fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// Merges `spans` into reads: two spans of one table share a read when the unmapped registers
/// between them are at most `max_gap` and the read stays within `max_registers`. Overlapping and
/// repeated spans merge as well. The result is sorted by table and address.
///
/// Reading across a gap costs a few registers of bandwidth and saves a transaction (a round
/// trip of tens of milliseconds on RS-485), but only devices that answer reads across their
/// unmapped registers allow it, hence the map decides `max_gap` (default 0).
pub fn plan(spans: &[Span], max_gap: u16, max_registers: u16) -> Vec<Span> {
    let mut sorted = spans.to_vec();
    sorted.sort_by_key(|s| (s.kind, s.start, s.count));
    let mut reads: Vec<Span> = Vec::new();
    for s in sorted {
        if let Some(last) = reads.last_mut() {
            let end = last.end().max(s.end());
            let gap = u32::from(s.start).saturating_sub(last.end());
            if last.kind == s.kind
                && gap <= u32::from(max_gap)
                && end - u32::from(last.start) <= u32::from(max_registers)
            {
                last.count = (end - u32::from(last.start)) as u16;
                continue;
            }
        }
        reads.push(s);
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegisterKind::{Holding, Input};

    fn span(kind: RegisterKind, start: u16, count: u16) -> Span {
        Span { kind, start, count }
    }

    #[test]
    fn adjacent_and_overlapping_spans_merge() {
        let reads = plan(
            &[
                span(Input, 2, 2),
                span(Input, 0, 2),
                span(Input, 3, 2),
                span(Input, 3, 1),
            ],
            0,
            125,
        );
        assert_eq!(reads, [span(Input, 0, 5)]);
    }

    #[test]
    fn gaps_merge_up_to_max_gap_and_tables_never_mix() {
        let spans = [span(Input, 0, 2), span(Input, 12, 2), span(Holding, 2, 1)];
        assert_eq!(
            plan(&spans, 10, 125),
            [span(Holding, 2, 1), span(Input, 0, 14)]
        );
        assert_eq!(
            plan(&spans, 9, 125),
            [span(Holding, 2, 1), span(Input, 0, 2), span(Input, 12, 2)]
        );
    }

    #[test]
    fn reads_stay_within_the_register_limit() {
        let spans = [
            span(Holding, 0, 2),
            span(Holding, 123, 2),
            span(Holding, 124, 2),
        ];
        assert_eq!(
            plan(&spans, 200, 125),
            [span(Holding, 0, 125), span(Holding, 124, 2)]
        );
    }
}
