//! Minimal writer for the "newc" cpio format (magic `070701`), the format the Linux
//! kernel unpacks as an initramfs. Only what an initramfs needs: directories, regular
//! files, and character device nodes. Written as a stream, no compression.

use std::io::{self, Write};

/// Streams newc cpio entries into `W`. Call [`CpioWriter::finish`] to write the trailer.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

impl<W: Write> CpioWriter<W> {
    /// Wraps `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            ino: 1,
            written: 0,
        }
    }

    /// Adds a directory (`perm` like 0o755). `name` has no leading slash.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// Adds a regular file with the given contents.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// Adds a character device node (`major`, `minor`).
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer entry and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB"))?;
        let name_len = u32::try_from(name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio name too long"))?;
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad cpio entry name",
            ));
        }
        let ino = self.ino;
        self.ino += 1;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_len, 0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (4 - (self.written % 4)) % 4;
        for _ in 0..rem {
            self.put(&[0])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_has_trailer() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        // the "init" entry: header(110) + "bin\0" padded ... find the name and data
        let pos = out.windows(5).position(|w| w == b"init\0").unwrap();
        let hdr = &out[pos - 110..pos];
        assert_eq!(&hdr[..6], b"070701");
        // mode field (2nd) = regular file 0755
        assert_eq!(&hdr[14..22], b"000081ED");
        // filesize field (7th) = 10 bytes
        assert_eq!(&hdr[54..62], b"0000000A");
        let tail = out.windows(10).position(|w| w == b"TRAILER!!!");
        assert!(tail.is_some());
        // device node major/minor in rdevmajor/rdevminor (fields 10, 11)
        let pos = out.windows(12).position(|w| w == b"dev/console\0").unwrap();
        let hdr = &out[pos - 110..pos];
        assert_eq!(&hdr[78..86], b"00000005");
        assert_eq!(&hdr[86..94], b"00000001");
    }

    #[test]
    fn rejects_empty_name() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("", 0o644, b"x").is_err());
    }
}
