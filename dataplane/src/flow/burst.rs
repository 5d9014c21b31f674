//! A burst of received frames, as [`crate::flow::Meter::account_burst`] takes it.
//!
//! # Guarantees
//! A [`Burst`] is a fixed array of up to [`MAX_BURST`] (frame, wire length, action) triples on the stack: filling
//! it from a burst of mbufs allocates nothing. It borrows the frames, so build one per received burst (it is
//! cheap: a few hundred bytes of stack) or [`Burst::clear`] and refill one whose borrow still holds.

use super::key::Action;

/// Most frames in one [`Burst`] (DPDK's usual RX burst).
pub const MAX_BURST: usize = 32;

/// Up to [`MAX_BURST`] frames with their wire lengths and security-group verdicts.
#[derive(Debug, Clone, Copy)]
pub struct Burst<'a> {
    frames: [&'a [u8]; MAX_BURST],
    wire_lens: [usize; MAX_BURST],
    actions: [Action; MAX_BURST],
    len: usize,
}

/// [`Burst::push`] on a full burst: the frame was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the burst already holds {MAX_BURST} frames")]
pub struct BurstFull;

impl<'a> Burst<'a> {
    /// An empty burst.
    pub const fn new() -> Self {
        Burst {
            frames: [&[]; MAX_BURST],
            wire_lens: [0; MAX_BURST],
            actions: [Action::Accept; MAX_BURST],
            len: 0,
        }
    }

    /// Adds a frame: its captured bytes, its length on the wire (mbuf `pkt_len`) and the verdict.
    #[inline]
    pub fn push(
        &mut self,
        frame: &'a [u8],
        wire_len: usize,
        action: Action,
    ) -> Result<(), BurstFull> {
        let i = self.len;
        // One check for the three arrays: below it, the compiler drops the three `get_mut` checks.
        if i >= MAX_BURST {
            return Err(BurstFull);
        }
        let (Some(f), Some(w), Some(a)) = (
            self.frames.get_mut(i),
            self.wire_lens.get_mut(i),
            self.actions.get_mut(i),
        ) else {
            return Err(BurstFull);
        };
        *f = frame;
        *w = wire_len;
        *a = action;
        self.len = i + 1;
        Ok(())
    }

    /// Removes every frame.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Number of frames.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the burst holds no frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the burst holds [`MAX_BURST`] frames.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == MAX_BURST
    }

    /// The captured bytes of the frames, in order.
    #[inline]
    pub fn frames(&self) -> &[&'a [u8]] {
        self.frames.get(..self.len).unwrap_or_default()
    }

    /// The frames in order: (captured bytes, wire length, action).
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], usize, Action)> + '_ {
        self.frames
            .iter()
            .zip(&self.wire_lens)
            .zip(&self.actions)
            .take(self.len)
            .map(|((&f, &w), &a)| (f, w, a))
    }
}

impl Default for Burst<'_> {
    fn default() -> Self {
        Burst::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_to_the_limit_and_clears() {
        let data = [1u8, 2, 3];
        let mut b = Burst::new();
        assert!(b.is_empty());
        for i in 0..MAX_BURST {
            b.push(&data[..i % 4], 60 + i, Action::Reject).unwrap();
        }
        assert!(b.is_full());
        assert_eq!(b.push(&data, 1, Action::Accept), Err(BurstFull));
        assert_eq!(b.len(), MAX_BURST);
        let got: Vec<_> = b.iter().collect();
        assert_eq!(got[5], (&data[..1], 65, Action::Reject));
        b.clear();
        assert_eq!(b.iter().count(), 0);
    }
}
