//! One cached object version on disk, as two files named after its store and key:
//!
//! - `<stem>.data`: the object's bytes at their own offsets, the exact size of the object.
//!   Blocks not cached are holes, so the file takes only the space of what is cached, and
//!   a complete one can be handed to the kernel as it is (FUSE passthrough).
//! - `<stem>.meta`: a JSON header (store, key, ETag, size, block size) padded to
//!   [`HEADER_LEN`] bytes, a seal, then one 8-byte slot per block: a marker and the
//!   block's CRC-32C. A slot is written only after its block's bytes, so a crash between
//!   the two leaves the block absent; a torn or changed block fails its checksum.
//!
//! The seal records the data file's length, mtime, ctime and inode number after every
//! block was written and the file was flushed (fdatasync). While the file still matches
//! it, nothing rewrote it since: the kernel may read it without the daemon checking each
//! block (passthrough). A program that changes the file moves its ctime, which no
//! program can set back.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes before the seal: the JSON header, padded with NULs.
pub const HEADER_LEN: u64 = 4096;
const SEAL_LEN: u64 = 64;
const SLOT_LEN: u64 = 8;
/// A slot's first four bytes when its block is present ("RSTB").
const PRESENT: u32 = 0x5253_5442;
/// The seal's first eight bytes when it is set ("RSSEALED").
const SEALED: u64 = 0x5253_5345_414c_4544;
/// Bumped when the layout changes: entries of another format are dropped at start.
pub const FORMAT: u32 = 1;

/// What a cached file holds: which object version, cut into which blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    /// The store (backend location and root path; `Store::identity`).
    pub identity: String,
    pub key: String,
    /// The version cached: bytes are served only while the object has this ETag.
    pub etag: String,
    /// Object size, bytes.
    pub size: u64,
    /// Block size, bytes.
    pub block: u64,
}

impl Header {
    /// Number of blocks; the last one may be short.
    pub fn blocks(&self) -> u32 {
        self.size.div_ceil(self.block) as u32
    }

    /// Byte range `[start, end)` of block `i`.
    pub fn block_range(&self, i: u32) -> (u64, u64) {
        let start = i as u64 * self.block;
        (start, (start + self.block).min(self.size))
    }
}

/// The data file as it was when sealed (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seal {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl Seal {
    fn of(m: &std::fs::Metadata) -> Self {
        Self { len: m.len(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()), ino: m.ino() }
    }

    fn encode(&self) -> [u8; SEAL_LEN as usize] {
        let mut out = [0u8; SEAL_LEN as usize];
        let words = [
            SEALED,
            self.len,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
            self.ino,
        ];
        for (i, w) in words.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        (w(0) == SEALED).then(|| Self {
            len: w(1),
            mtime: (w(2) as i64, w(3) as i64),
            ctime: (w(4) as i64, w(5) as i64),
            ino: w(6),
        })
    }
}

/// An open cached file: the data and its description.
#[derive(Debug)]
pub struct CacheFile {
    pub header: Header,
    data: File,
    meta: File,
    data_path: PathBuf,
    meta_path: PathBuf,
}

/// What `open` found in a meta file besides the header.
pub struct Found {
    pub file: CacheFile,
    /// Per block: its CRC-32C when present.
    pub slots: Vec<Option<u32>>,
    pub seal: Option<Seal>,
}

fn paths(stem: &Path) -> (PathBuf, PathBuf) {
    (stem.with_extension("data"), stem.with_extension("meta"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

impl CacheFile {
    /// Creates an empty cached file for `header` at `stem` (.data and .meta), replacing
    /// what was there. The meta file appears complete or not at all (written aside and
    /// renamed), so a crash never leaves a header without its slots.
    pub fn create(stem: &Path, header: Header) -> io::Result<Self> {
        let (data_path, meta_path) = paths(stem);
        let json = serde_json::to_vec(&header).map_err(io::Error::other)?;
        if json.len() as u64 >= HEADER_LEN {
            return Err(invalid("key too long for the cache header"));
        }
        let tmp = stem.with_extension("meta.tmp");
        {
            let mut meta = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            meta.write_all(&json)?;
            meta.set_len(HEADER_LEN + SEAL_LEN + SLOT_LEN * header.blocks() as u64)?;
        }
        // A new inode, never the old file truncated: the kernel may still be reading that
        // one for a passthrough handle of the version this replaces.
        let _ = std::fs::remove_file(&data_path);
        let data = OpenOptions::new().read(true).write(true).create_new(true).open(&data_path)?;
        data.set_len(header.size)?;
        std::fs::rename(&tmp, &meta_path)?;
        let meta = OpenOptions::new().read(true).write(true).open(&meta_path)?;
        Ok(Self { header, data, meta, data_path, meta_path })
    }

    /// Opens the cached file at `stem` and reads its slots and seal. Errors when the two
    /// files do not belong together (wrong length, unreadable header, other format).
    pub fn open(stem: &Path) -> io::Result<Found> {
        let (data_path, meta_path) = paths(stem);
        let meta = OpenOptions::new().read(true).write(true).open(&meta_path)?;
        let mut head = vec![0u8; HEADER_LEN as usize];
        meta.read_exact_at(&mut head, 0)?;
        let end = head.iter().position(|b| *b == 0).unwrap_or(head.len());
        let header: Header = serde_json::from_slice(&head[..end]).map_err(|_| invalid("unreadable header"))?;
        if header.format != FORMAT || header.block == 0 {
            return Err(invalid("another format"));
        }
        let data = OpenOptions::new().read(true).write(true).open(&data_path)?;
        let slots_len = SEAL_LEN + SLOT_LEN * header.blocks() as u64;
        // Checked before anything is allocated from the header's numbers.
        if data.metadata()?.len() != header.size || meta.metadata()?.len() < HEADER_LEN + slots_len {
            return Err(invalid("files of another size than the header says"));
        }
        let mut rest = vec![0u8; slots_len as usize];
        meta.read_exact_at(&mut rest, HEADER_LEN)?;
        let seal = Seal::decode(&rest[..SEAL_LEN as usize]);
        let slots = rest[SEAL_LEN as usize..]
            .chunks_exact(SLOT_LEN as usize)
            .map(|s| {
                let marker = u32::from_le_bytes(s[..4].try_into().expect("4 bytes"));
                (marker == PRESENT).then(|| u32::from_le_bytes(s[4..].try_into().expect("4 bytes")))
            })
            .collect();
        Ok(Found { file: Self { header, data, meta, data_path, meta_path }, slots, seal })
    }

    /// The data file, for the kernel to read from (passthrough).
    pub fn data(&self) -> &File {
        &self.data
    }

    /// Writes block `i` (exactly its bytes) and then its slot; returns its CRC-32C.
    pub fn write_block(&self, i: u32, bytes: &[u8]) -> io::Result<u32> {
        let (start, end) = self.header.block_range(i);
        if bytes.len() as u64 != end - start {
            return Err(invalid("block of the wrong length"));
        }
        self.data.write_all_at(bytes, start)?;
        let crc = crc32c::crc32c(bytes);
        let mut slot = [0u8; SLOT_LEN as usize];
        slot[..4].copy_from_slice(&PRESENT.to_le_bytes());
        slot[4..].copy_from_slice(&crc.to_le_bytes());
        self.meta.write_all_at(&slot, self.slot_at(i))?;
        Ok(crc)
    }

    /// Reads blocks `first..first + crcs.len()` whole and checks each against its
    /// CRC-32C; `Err(i)` names the first block whose bytes do not match (torn or changed).
    pub fn read_blocks(&self, first: u32, crcs: &[u32]) -> io::Result<Result<Vec<u8>, u32>> {
        let start = self.header.block_range(first).0;
        let end = self.header.block_range(first + crcs.len() as u32 - 1).1;
        let mut buf = vec![0u8; (end - start) as usize];
        self.data.read_exact_at(&mut buf, start)?;
        for (n, crc) in crcs.iter().enumerate() {
            let (s, e) = self.header.block_range(first + n as u32);
            if crc32c::crc32c(&buf[(s - start) as usize..(e - start) as usize]) != *crc {
                return Ok(Err(first + n as u32));
            }
        }
        Ok(Ok(buf))
    }

    /// Marks block `i` absent and frees its space (a hole).
    pub fn clear_block(&self, i: u32) -> io::Result<()> {
        self.meta.write_all_at(&[0u8; SLOT_LEN as usize], self.slot_at(i))?;
        let (start, end) = self.header.block_range(i);
        punch_hole(&self.data, start, end - start)
    }

    /// Flushes the data file and records its state: every block is written.
    pub fn seal(&self) -> io::Result<Seal> {
        self.data.sync_data()?;
        let seal = Seal::of(&self.data.metadata()?);
        self.meta.write_all_at(&seal.encode(), HEADER_LEN)?;
        Ok(seal)
    }

    /// Forgets the seal (a block is about to go).
    pub fn unseal(&self) -> io::Result<()> {
        self.meta.write_all_at(&[0u8; SEAL_LEN as usize], HEADER_LEN)
    }

    /// Whether the data file is still as it was sealed.
    pub fn seal_holds(&self, seal: &Seal) -> bool {
        self.data.metadata().is_ok_and(|m| Seal::of(&m) == *seal)
    }

    /// Removes both files (open descriptors, such as the kernel's, stay readable).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.meta_path);
        let _ = std::fs::remove_file(&self.data_path);
    }

    /// Bytes the meta file takes on disk (whole 4 KiB blocks).
    pub fn meta_bytes(&self) -> u64 {
        (HEADER_LEN + SEAL_LEN + SLOT_LEN * self.header.blocks() as u64).div_ceil(4096) * 4096
    }

    fn slot_at(&self, i: u32) -> u64 {
        HEADER_LEN + SEAL_LEN + SLOT_LEN * i as u64
    }
}

/// Deallocates `len` bytes at `offset` without changing the file's size.
fn punch_hole(f: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on an fd this File owns; no memory is passed.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // A file system without holes (rare for a cache directory): overwrite with
        // zeros, which at least drops the stale bytes; the space is not given back.
        return f.write_all_at(&vec![0u8; len as usize], offset);
    }
    Err(e)
}
