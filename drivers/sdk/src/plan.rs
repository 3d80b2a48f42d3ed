//! Read planning: merging the register ranges a driver needs into as few Modbus reads as
//! possible. Pure: no bus. Used by every driver that reads more than one range (the declarative
//! maps of `modbus-map`, the model chain of `sunspec`).

use crate::regs::RegisterKind;

/// A range of registers of one table: what some reading needs, or one planned read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: RegisterKind,
    pub start: u16,
    pub count: u16,
}

impl Span {
    /// One past the last register (as `u32`: a span may end at 65536).
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }

    /// Whether every register of `other` lies within this span (same table).
    pub fn contains(&self, other: &Span) -> bool {
        self.kind == other.kind && self.start <= other.start && other.end() <= self.end()
    }
}

/// Merges `spans` into reads: two spans of one table share a read when the unneeded registers
/// between them are at most `max_gap` and the read stays within `max_registers`. Overlapping and
/// repeated spans merge as well. A span longer than `max_registers` is a read of its own (the
/// caller splits it, as [`crate::regs::read_registers`] does). The result is sorted by table and
/// address; every input span lies within one of the reads.
///
/// Reading across a gap costs a few registers of bandwidth and saves a transaction (a round
/// trip of tens of milliseconds on RS-485), but only devices that answer reads across their
/// unmapped registers allow it, hence the caller decides `max_gap`.
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
    fn no_spans_no_reads() {
        assert_eq!(plan(&[], 10, 125), []);
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
    fn a_span_inside_another_adds_nothing() {
        let reads = plan(&[span(Holding, 10, 20), span(Holding, 12, 3)], 0, 125);
        assert_eq!(reads, [span(Holding, 10, 20)]);
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

    #[test]
    fn a_span_over_the_limit_is_a_read_of_its_own() {
        let spans = [
            span(Holding, 0, 2),
            span(Holding, 2, 300),
            span(Holding, 302, 2),
        ];
        assert_eq!(
            plan(&spans, 0, 125),
            [
                span(Holding, 0, 2),
                span(Holding, 2, 300),
                span(Holding, 302, 2)
            ]
        );
    }

    #[test]
    fn the_top_of_the_address_space_does_not_overflow() {
        let spans = [span(Input, 65530, 6), span(Input, 65534, 2)];
        let reads = plan(&spans, 0, 125);
        assert_eq!(reads, [span(Input, 65530, 6)]);
        assert_eq!(reads[0].end(), 65536);
    }

    #[test]
    fn every_span_lies_within_a_read() {
        let spans = [
            span(Holding, 40, 70),
            span(Holding, 0, 50),
            span(Input, 7, 1),
            span(Holding, 100, 60),
            span(Input, 130, 3),
        ];
        for (gap, max) in [(0, 125), (5, 60), (u16::MAX, 125), (u16::MAX, 1)] {
            let reads = plan(&spans, gap, max);
            for s in &spans {
                assert!(
                    reads.iter().any(|r| r.contains(s)),
                    "{s:?} not covered by {reads:?} (gap {gap}, max {max})"
                );
            }
        }
    }
}
