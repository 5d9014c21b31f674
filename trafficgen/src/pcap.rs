//! Classic pcap writer: microsecond timestamps, `LINKTYPE_ETHERNET`, little-endian, streaming.
//!
//! # Guarantees
//! The file header is written on creation; every [`PcapWriter::write_frame`] appends one record whose captured
//! length is the frame's length and whose original length is what the caller says (never smaller than the captured
//! length). Nothing is buffered here beyond what the inner writer buffers; memory stays constant.

use std::io::{self, Write};

/// Magic number of a microsecond-resolution classic pcap file.
pub const PCAP_MAGIC_MICROS: u32 = 0xA1B2_C3D4;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Snapshot length written in the file header: larger than any frame the generator writes.
pub const SNAPLEN: u32 = 65_535;

/// Errors of the pcap writer.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The underlying writer failed.
    #[error("writing the capture failed: {0}")]
    Io(#[from] io::Error),
    /// A frame longer than the snapshot length, or an original length shorter than the frame.
    #[error(
        "frame of {captured} bytes (on the wire {wire}) does not fit a record with snaplen {SNAPLEN}"
    )]
    BadLength {
        /// Bytes given to be written.
        captured: usize,
        /// Original (wire) length given.
        wire: usize,
    },
    /// A timestamp whose seconds do not fit the format's 32-bit field.
    #[error("timestamp {micros} us is past what classic pcap can hold (year 2106)")]
    TimestampOutOfRange {
        /// The timestamp, microseconds since the Unix epoch.
        micros: u64,
    },
}

/// A pcap file being written.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    frames: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header and returns the writer.
    pub fn new(mut out: W) -> Result<Self, PcapError> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&PCAP_MAGIC_MICROS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out, frames: 0 })
    }

    /// Appends one frame captured at `micros` (microseconds since the Unix epoch) that was `wire_len` bytes long on
    /// the wire.
    pub fn write_frame(
        &mut self,
        micros: u64,
        frame: &[u8],
        wire_len: usize,
    ) -> Result<(), PcapError> {
        let bad_length = PcapError::BadLength {
            captured: frame.len(),
            wire: wire_len,
        };
        if wire_len < frame.len() {
            return Err(bad_length);
        }
        let (Ok(captured), Ok(wire)) = (u32::try_from(frame.len()), u32::try_from(wire_len)) else {
            return Err(bad_length);
        };
        if captured > SNAPLEN {
            return Err(bad_length);
        }
        let secs = u32::try_from(micros / 1_000_000)
            .map_err(|_| PcapError::TimestampOutOfRange { micros })?;
        // The remainder is below 1_000_000, which fits in u32.
        let usecs = (micros % 1_000_000) as u32;
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&secs.to_le_bytes());
        record[4..8].copy_from_slice(&usecs.to_le_bytes());
        record[8..12].copy_from_slice(&captured.to_le_bytes());
        record[12..16].copy_from_slice(&wire.to_le_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(frame)?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W, PcapError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        writer
            .write_frame(1_700_000_000_123_456, &[0xAB; 3], 5)
            .unwrap();
        assert_eq!(writer.frames(), 1);
        let bytes = writer.finish().unwrap();
        assert_eq!(
            &bytes[..24],
            &[
                0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 1, 0,
                0, 0
            ]
        );
        assert_eq!(&bytes[24..28], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &123_456u32.to_le_bytes());
        assert_eq!(&bytes[32..36], &3u32.to_le_bytes());
        assert_eq!(&bytes[36..40], &5u32.to_le_bytes());
        assert_eq!(&bytes[40..], &[0xAB; 3]);
    }

    #[test]
    fn rejects_bad_lengths_and_times() {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        assert!(matches!(
            writer.write_frame(0, &[0; 10], 9),
            Err(PcapError::BadLength { .. })
        ));
        assert!(matches!(
            writer.write_frame(0, &vec![0; 70_000], 70_000),
            Err(PcapError::BadLength { .. })
        ));
        assert!(matches!(
            writer.write_frame(u64::MAX, &[0; 10], 10),
            Err(PcapError::TimestampOutOfRange { .. })
        ));
        assert_eq!(writer.frames(), 0);
    }
}
