//! The on-disk frame: how one stored batch is laid out in a segment file, and how a segment's bytes are scanned
//! back into frames.
//!
//! A frame is a 12-byte header followed by its payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `FLB1` |
//! | 4..8 | payload length, u32 little-endian, at most [`MAX_PAYLOAD_LEN`] |
//! | 8..12 | CRC-32 (IEEE) of the payload, u32 little-endian |
//! | 12.. | payload: a prost-encoded `flowlog.v1.IngestBatch` |
//!
//! # Guarantees
//! - [`scan`] never panics, whatever the bytes: every byte of its input is accounted for exactly once, as part of a
//!   valid frame, of a corrupt stretch that a later valid frame follows ([`Scanned::Corrupt`]), or of an invalid
//!   tail that no valid frame follows ([`Scanned::Tail`]: a torn write, or corruption at the very end).
//! - After a corrupt stretch, scanning resynchronises on the next offset where a whole valid frame starts (magic,
//!   sane length, matching CRC), so one damaged frame never spoils the frames after it.

use thiserror::Error;

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"FLB1";

/// Length of the frame header: magic, payload length, payload CRC.
pub const HEADER_LEN: usize = 12;

/// Largest payload a frame may carry (64 MiB). Larger length fields are treated as corruption.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024 * 1024;

/// Why a payload cannot be framed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the frame limit of {MAX_PAYLOAD_LEN} bytes")]
    TooLarge {
        /// Length of the rejected payload, in bytes.
        len: usize,
    },
}

/// Appends one frame holding `payload` to `out`.
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(FrameError::TooLarge { len: payload.len() });
    }
    // Cannot truncate: the length was checked against MAX_PAYLOAD_LEN, which fits in a u32.
    let len = payload.len() as u32;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// One item found by [`scan`], in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned<'a> {
    /// A valid frame starting at `offset`.
    Frame {
        /// Offset of the frame header within the scanned bytes.
        offset: usize,
        /// The frame's payload.
        payload: &'a [u8],
    },
    /// `len` bytes starting at `offset` hold no valid frame, and a valid frame follows them.
    Corrupt {
        /// Offset of the first bad byte.
        offset: usize,
        /// Number of bytes skipped.
        len: usize,
    },
    /// The `len` bytes from `offset` to the end hold no valid frame (a torn write, or a damaged last frame).
    Tail {
        /// Offset of the first byte of the invalid tail.
        offset: usize,
        /// Number of bytes in the tail.
        len: usize,
    },
}

/// Iterates over the frames (and damaged stretches) of `bytes`.
pub fn scan(bytes: &[u8]) -> Scanner<'_> {
    Scanner { bytes, pos: 0 }
}

/// Iterator returned by [`scan`].
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Scanned<'a>;

    fn next(&mut self) -> Option<Scanned<'a>> {
        let start = self.pos;
        if start >= self.bytes.len() {
            return None;
        }
        if let Some(payload) = frame_at(self.bytes, start) {
            self.pos = start + HEADER_LEN + payload.len();
            return Some(Scanned::Frame {
                offset: start,
                payload,
            });
        }
        match resync(self.bytes, start + 1) {
            Some(next) => {
                self.pos = next;
                Some(Scanned::Corrupt {
                    offset: start,
                    len: next - start,
                })
            }
            None => {
                self.pos = self.bytes.len();
                Some(Scanned::Tail {
                    offset: start,
                    len: self.bytes.len() - start,
                })
            }
        }
    }
}

/// The payload of the valid frame starting at `offset`, if there is one.
fn frame_at(bytes: &[u8], offset: usize) -> Option<&[u8]> {
    let header = bytes.get(offset..offset.checked_add(HEADER_LEN)?)?;
    let (magic, rest) = header.split_first_chunk::<4>()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let (crc, _) = rest.split_first_chunk::<4>()?;
    if *magic != MAGIC {
        return None;
    }
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    if len > MAX_PAYLOAD_LEN {
        return None;
    }
    let body_start = offset + HEADER_LEN;
    let payload = bytes.get(body_start..body_start.checked_add(len)?)?;
    (crc32fast::hash(payload) == u32::from_le_bytes(*crc)).then_some(payload)
}

/// The first offset at or after `from` where a valid frame starts.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(window) = bytes.get(at..) {
        let found = window.windows(MAGIC.len()).position(|w| w == MAGIC)?;
        let candidate = at + found;
        if frame_at(bytes, candidate).is_some() {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(p, &mut out).unwrap();
        }
        out
    }

    fn frames(bytes: &[u8]) -> Vec<Scanned<'_>> {
        scan(bytes).collect()
    }

    #[test]
    fn round_trip() {
        let bytes = framed(&[b"alpha", b"", b"gamma gamma"]);
        assert_eq!(
            frames(&bytes),
            vec![
                Scanned::Frame {
                    offset: 0,
                    payload: b"alpha"
                },
                Scanned::Frame {
                    offset: 17,
                    payload: b""
                },
                Scanned::Frame {
                    offset: 29,
                    payload: b"gamma gamma"
                },
            ]
        );
        assert_eq!(frames(&[]), vec![]);
    }

    #[test]
    fn header_layout_is_fixed() {
        let bytes = framed(&[b"xyz"]);
        assert_eq!(&bytes[0..4], b"FLB1");
        assert_eq!(&bytes[4..8], &3u32.to_le_bytes());
        assert_eq!(&bytes[8..12], &crc32fast::hash(b"xyz").to_le_bytes());
        assert_eq!(&bytes[12..], b"xyz");
    }

    #[test]
    fn torn_tail_is_reported_at_every_cut() {
        let whole = framed(&[b"first frame", b"second frame"]);
        let second = HEADER_LEN + b"first frame".len();
        for cut in second + 1..whole.len() {
            let got = frames(&whole[..cut]);
            assert_eq!(
                got,
                vec![
                    Scanned::Frame {
                        offset: 0,
                        payload: b"first frame"
                    },
                    Scanned::Tail {
                        offset: second,
                        len: cut - second
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn corrupt_middle_frame_is_skipped() {
        let mut bytes = framed(&[b"one", b"two two", b"three"]);
        let second = HEADER_LEN + 3;
        // Flip a payload byte of the second frame: its CRC no longer matches.
        bytes[second + HEADER_LEN + 2] ^= 0x40;
        let third = second + HEADER_LEN + 7;
        assert_eq!(
            frames(&bytes),
            vec![
                Scanned::Frame {
                    offset: 0,
                    payload: b"one"
                },
                Scanned::Corrupt {
                    offset: second,
                    len: third - second
                },
                Scanned::Frame {
                    offset: third,
                    payload: b"three"
                },
            ]
        );
    }

    #[test]
    fn corrupt_length_field_resynchronises() {
        let mut bytes = framed(&[b"one", b"two two", b"three"]);
        let second = HEADER_LEN + 3;
        bytes[second + 4..second + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let got = frames(&bytes);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[2],
            Scanned::Frame {
                offset: second + HEADER_LEN + 7,
                payload: b"three"
            }
        );
    }

    #[test]
    fn garbage_never_panics_and_covers_every_byte() {
        // A deterministic pseudo-random byte soup, with valid frames spliced in.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = Vec::new();
        for round in 0..200 {
            for _ in 0..(round % 37) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            if round % 3 == 0 {
                bytes.extend_from_slice(&MAGIC);
            }
            if round % 5 == 0 {
                encode_into(&bytes.clone()[..round % 11], &mut bytes).unwrap();
            }
        }
        let mut covered = 0;
        for item in scan(&bytes) {
            match item {
                Scanned::Frame { offset, payload } => {
                    assert_eq!(offset, covered);
                    covered += HEADER_LEN + payload.len();
                }
                Scanned::Corrupt { offset, len } | Scanned::Tail { offset, len } => {
                    assert_eq!(offset, covered);
                    assert!(len > 0);
                    covered += len;
                }
            }
        }
        assert_eq!(covered, bytes.len());
    }

    #[test]
    fn oversized_payload_is_refused() {
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        let mut out = Vec::new();
        assert_eq!(
            encode_into(&big, &mut out),
            Err(FrameError::TooLarge {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
        assert!(out.is_empty());
    }
}
