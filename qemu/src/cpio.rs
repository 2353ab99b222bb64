//! A writer for the `newc` cpio format, the one the kernel unpacks as an initramfs: directories, regular
//! files, symlinks and device nodes, written without root and without the `cpio` tool. Uncompressed (the
//! kernel accepts it as is). Knows nothing of what goes into the archive.

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Streams entries into a newc archive. Call [`Cpio::finish`] to write the trailer.
pub struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Cpio<W> {
    /// An archive written to `out`.
    pub fn new(out: W) -> Self {
        Cpio {
            out,
            ino: 1,
            written: 0,
        }
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 3][..4 - rem])?;
        }
        Ok(())
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let ino = self.ino;
        self.ino += 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {dmaj:08x}{dmin:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = 0,
            dmaj = 0,
            dmin = 0,
            rmaj = rdev.0,
            rmin = rdev.1,
            namesize = name.len() + 1,
            check = 0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    /// A directory.
    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[])
    }

    /// A regular file with permission bits `perm` (e.g. 0o755).
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), (0, 0), data)
    }

    /// A symbolic link `name -> target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | (perm & 0o7777), (major, minor), &[])
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back (name, mode, rdev major, data) from a newc archive.
    fn entries(mut b: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            let hex = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[i..i + 8]).unwrap(), 16).unwrap()
            };
            assert_eq!(&b[..6], b"070701");
            let mode = hex(6 + 8);
            let size = hex(6 + 6 * 8) as usize;
            let rmaj = hex(6 + 9 * 8);
            let namesize = hex(6 + 11 * 8) as usize;
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            let mut p = 110 + namesize;
            p = p.div_ceil(4) * 4;
            assert_eq!((off + p) % 4, 0);
            let data = b[p..p + size].to_vec();
            p = (p + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                assert_eq!(p, b.len());
                return out;
            }
            out.push((name, mode, rmaj, data));
            b = &b[p..];
            off += p;
        }
    }

    #[test]
    fn round_trip() {
        let mut c = Cpio::new(Vec::new());
        c.dir("bin").unwrap();
        c.file("/init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        c.symlink("bin/sh", "busybox").unwrap();
        c.char_dev("dev/console", 0o600, 5, 1).unwrap();
        c.file("odd", 0o644, b"abcde").unwrap();
        let bytes = c.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let e = entries(&bytes);
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].0, "bin");
        assert_eq!(e[0].1, S_IFDIR | 0o755);
        assert_eq!(
            (e[1].0.as_str(), e[1].3.as_slice()),
            ("init", &b"#!/bin/sh\necho hi\n"[..])
        );
        assert_eq!(
            (e[2].1 & 0o170000, e[2].3.as_slice()),
            (S_IFLNK, &b"busybox"[..])
        );
        assert_eq!((e[3].1 & 0o170000, e[3].2), (S_IFCHR, 5));
        assert_eq!(e[4].3, b"abcde");
    }
}
