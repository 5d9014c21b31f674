//! A streaming reader of classic pcap files (the libpcap format), for offline replay and benchmarks.
//!
//! It reads both byte orders and both timestamp resolutions (microseconds, and nanoseconds with magic
//! `0xa1b23c4d`), and hands out each record as a borrowed slice of one reused buffer: no allocation per packet.
//!
//! # Guarantees
//! A truncated record header or body at the end of the file is an error that names the offset, never a panic; a
//! record claiming more than [`MAX_RECORD_LEN`] captured bytes is refused as corrupt rather than allocated.
//!
//! # Limitations
//! pcapng is not read (convert with `editcap -F pcap`). Only link type Ethernet (1) is accepted, since the
//! dataplane parses Ethernet frames.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Largest captured length accepted for one record (256 KiB, libpcap's own maximum snap length).
pub const MAX_RECORD_LEN: u32 = 262_144;

const LINKTYPE_ETHERNET: u32 = 1;

/// Errors reading a pcap file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The underlying file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file being read.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file does not start with a pcap magic number.
    #[error("{path}: not a pcap file (magic {magic:#010x}); pcapng must be converted first")]
    BadMagic {
        /// The file being read.
        path: String,
        /// The first four bytes, little-endian.
        magic: u32,
    },
    /// The capture's link type is not Ethernet.
    #[error("{path}: link type {linktype} is not Ethernet (1)")]
    LinkType {
        /// The file being read.
        path: String,
        /// The link type in the file header.
        linktype: u32,
    },
    /// The file ends inside a record, or a record header is implausible.
    #[error("{path}: corrupt or truncated record at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file being read.
        path: String,
        /// Byte offset of the record header.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

/// One record of a capture, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct PcapPacket<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Length of the frame on the wire (may exceed `data.len()` when the capture was cut at a snap length).
    pub wire_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// Streaming pcap reader over any byte source.
pub struct PcapReader<R> {
    input: R,
    path: String,
    swapped: bool,
    nanos: bool,
    offset: u64,
    buf: Vec<u8>,
}

impl PcapReader<BufReader<File>> {
    /// Opens a pcap file for reading.
    pub fn open(path: &Path) -> Result<Self, PcapError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| PcapError::Io {
            path: name.clone(),
            source,
        })?;
        Self::new(BufReader::with_capacity(1 << 20, file), name)
    }
}

/// Every frame of the capture at `path` with its length on the wire, in order: a capture held in memory, for
/// tests and benchmarks.
pub fn read_frames(path: &Path) -> Result<Vec<(Vec<u8>, usize)>, PcapError> {
    let mut reader = PcapReader::open(path)?;
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet()? {
        frames.push((packet.data.to_vec(), packet.wire_len as usize));
    }
    Ok(frames)
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the file header of `input`; `path` names the source in errors.
    pub fn new(mut input: R, path: String) -> Result<Self, PcapError> {
        let mut header = [0u8; 24];
        read_full(&mut input, &mut header).map_err(|source| PcapError::Io {
            path: path.clone(),
            source,
        })?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (swapped, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xd4c3_b2a1 => (true, false),
            0xa1b2_3c4d => (false, true),
            0x4d3c_b2a1 => (true, true),
            _ => return Err(PcapError::BadMagic { path, magic }),
        };
        let field = |at: usize| {
            let raw =
                u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
            if swapped { raw.swap_bytes() } else { raw }
        };
        let linktype = field(20) & 0x0fff_ffff;
        if linktype != LINKTYPE_ETHERNET {
            return Err(PcapError::LinkType { path, linktype });
        }
        Ok(Self {
            input,
            path,
            swapped,
            nanos,
            offset: 24,
            buf: Vec::with_capacity(65_536),
        })
    }

    /// Reads the next record; `Ok(None)` at a clean end of file.
    pub fn next_packet(&mut self) -> Result<Option<PcapPacket<'_>>, PcapError> {
        let mut header = [0u8; 16];
        let got = read_some(&mut self.input, &mut header).map_err(|source| self.io(source))?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(self.corrupt("file ends inside a record header"));
        }
        let field = |at: usize| {
            let raw =
                u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
            if self.swapped { raw.swap_bytes() } else { raw }
        };
        let (secs, frac, caplen, wire_len) = (field(0), field(4), field(8), field(12));
        if caplen > MAX_RECORD_LEN {
            return Err(self.corrupt("captured length exceeds 256 KiB"));
        }
        let frac_ns = if self.nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1_000
        };
        if frac_ns >= 1_000_000_000 {
            return Err(self.corrupt("sub-second timestamp field out of range"));
        }
        // `caplen` is at most MAX_RECORD_LEN, so it fits usize on every supported target.
        let caplen = caplen as usize;
        self.buf.resize(caplen, 0);
        let got = read_some(&mut self.input, &mut self.buf).map_err(|source| self.io(source))?;
        if got < caplen {
            return Err(self.corrupt("file ends inside a record's data"));
        }
        self.offset += 16 + caplen as u64;
        Ok(Some(PcapPacket {
            timestamp_ns: u64::from(secs) * 1_000_000_000 + frac_ns,
            wire_len: wire_len.max(caplen as u32),
            data: &self.buf,
        }))
    }

    fn io(&self, source: io::Error) -> PcapError {
        PcapError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: &'static str) -> PcapError {
        PcapError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            reason,
        }
    }
}

/// Fills `buf` completely or fails with `UnexpectedEof`.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    if read_some(input, buf)? < buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file too short for a pcap header",
        ));
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_some(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_header(magic: u32, linktype: u32) -> Vec<u8> {
        let mut v = magic.to_le_bytes().to_vec();
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65_535u32.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        v
    }

    fn record(secs: u32, frac: u32, data: &[u8], wire: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [secs, frac, data.len() as u32, wire] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_records_with_micro_and_nano_timestamps() {
        let mut micro = file_header(0xa1b2_c3d4, 1);
        micro.extend(record(1_700_000_000, 6, &[1, 2, 3], 3));
        micro.extend(record(1_700_000_001, 999_999, &[4; 60], 1514));
        let mut r = PcapReader::new(&micro[..], "t".into()).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.timestamp_ns, p.wire_len, p.data),
            (1_700_000_000_000_006_000, 3, &[1u8, 2, 3][..])
        );
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.timestamp_ns, p.wire_len, p.data.len()),
            (1_700_000_001_999_999_000, 1514, 60)
        );
        assert!(r.next_packet().unwrap().is_none());

        let mut nano = file_header(0xa1b2_3c4d, 1);
        nano.extend(record(5, 7, &[9], 1));
        let mut r = PcapReader::new(&nano[..], "t".into()).unwrap();
        assert_eq!(
            r.next_packet().unwrap().unwrap().timestamp_ns,
            5_000_000_007
        );
    }

    #[test]
    fn refuses_bad_headers_and_reports_truncation() {
        assert!(matches!(
            PcapReader::new(&[0u8; 24][..], "t".into()),
            Err(PcapError::BadMagic { .. })
        ));
        assert!(matches!(
            PcapReader::new(&file_header(0xa1b2_c3d4, 113)[..], "t".into()),
            Err(PcapError::LinkType { linktype: 113, .. })
        ));
        let mut cut = file_header(0xa1b2_c3d4, 1);
        cut.extend(record(1, 0, &[1, 2, 3, 4], 4));
        cut.truncate(cut.len() - 2);
        let mut r = PcapReader::new(&cut[..], "t".into()).unwrap();
        assert!(matches!(
            r.next_packet(),
            Err(PcapError::Corrupt { offset: 24, .. })
        ));

        let mut huge = file_header(0xa1b2_c3d4, 1);
        for x in [1u32, 0, MAX_RECORD_LEN + 1, 10] {
            huge.extend_from_slice(&x.to_le_bytes());
        }
        let mut r = PcapReader::new(&huge[..], "t".into()).unwrap();
        assert!(matches!(r.next_packet(), Err(PcapError::Corrupt { .. })));
    }

    #[test]
    fn reads_swapped_byte_order() {
        let mut v = 0xa1b2_c3d4u32.to_be_bytes().to_vec();
        v.extend_from_slice(&2u16.to_be_bytes());
        v.extend_from_slice(&4u16.to_be_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65_535u32.to_be_bytes());
        v.extend_from_slice(&1u32.to_be_bytes());
        for x in [10u32, 20, 2, 2] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&[7, 8]);
        let mut r = PcapReader::new(&v[..], "t".into()).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!((p.timestamp_ns, p.data), (10_000_020_000, &[7u8, 8][..]));
    }
}
