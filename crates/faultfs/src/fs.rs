//! The pass-through filesystem: inode table, open files, and the
//! `fuser::Filesystem` implementation that routes every request through the
//! fault gate.
//!
//! Inode numbers are ours (root is 1), each naming a path relative to the
//! backing directory. Files are opened on the backing store without
//! `O_DIRECT` (and without `O_APPEND`: the kernel sends explicit offsets) and
//! read and written with `pread`/`pwrite`; every open answers with
//! `FOPEN_DIRECT_IO`, so the page cache is bypassed and clients' `O_DIRECT`
//! works.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::fault::{lock, Faults, Verdict};
use crate::mode::OpClass;

/// How long the kernel may cache attributes and names. Everything goes
/// through the mount, so a short TTL only costs a few extra lookups.
const TTL: Duration = Duration::from_secs(1);

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn rerrno(e: rustix::io::Errno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = u32::try_from(nsecs).unwrap_or(0).min(999_999_999);
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH
            .checked_add(Duration::new(s, nanos))
            .unwrap_or(UNIX_EPOCH),
        Err(_) => UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
            .unwrap_or(UNIX_EPOCH),
    }
}

fn kind_of(ft: fs::FileType) -> FileType {
    FileType::from_std(ft).unwrap_or(FileType::RegularFile)
}

fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind_of(m.file_type()),
        perm: u16::try_from(m.mode() & 0o7777).unwrap_or(0),
        nlink: u32::try_from(m.nlink()).unwrap_or(u32::MAX),
        uid: m.uid(),
        gid: m.gid(),
        rdev: u32::try_from(m.rdev()).unwrap_or(0),
        blksize: u32::try_from(m.blksize()).unwrap_or(4096),
        flags: 0,
    }
}

/// A name the kernel gave us: one path component, not `.` or `..`.
fn component(name: &OsStr) -> Result<&OsStr, Errno> {
    let b = name.as_encoded_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    Ok(name)
}

struct Node {
    /// Relative to the backing directory; `None` once unlinked or replaced.
    path: Option<PathBuf>,
    lookups: u64,
}

struct Nodes {
    by_ino: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
}

impl Nodes {
    fn new() -> Nodes {
        let mut n = Nodes {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: INodeNo::ROOT.0 + 1,
        };
        n.by_ino.insert(
            INodeNo::ROOT.0,
            Node {
                path: Some(PathBuf::new()),
                lookups: 1,
            },
        );
        n.by_path.insert(PathBuf::new(), INodeNo::ROOT.0);
        n
    }

    fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.by_ino
            .get(&ino)
            .and_then(|n| n.path.clone())
            .ok_or(Errno::ENOENT)
    }

    /// The inode for `rel`, counting one more kernel lookup.
    fn remember(&mut self, rel: PathBuf) -> u64 {
        if let Some(&ino) = self.by_path.get(&rel) {
            if let Some(n) = self.by_ino.get_mut(&ino) {
                n.lookups += 1;
                return ino;
            }
        }
        let ino = self.next;
        self.next += 1;
        self.by_path.insert(rel.clone(), ino);
        self.by_ino.insert(
            ino,
            Node {
                path: Some(rel),
                lookups: 1,
            },
        );
        ino
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if ino == INodeNo::ROOT.0 {
            return;
        }
        let gone = match self.by_ino.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0
            }
            None => false,
        };
        if gone {
            if let Some(Node {
                path: Some(p),
                lookups: _,
            }) = self.by_ino.remove(&ino)
            {
                if self.by_path.get(&p) == Some(&ino) {
                    self.by_path.remove(&p);
                }
            }
        }
    }

    /// `rel` and everything below it no longer exist under those names.
    fn detach(&mut self, rel: &Path) {
        let dead: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| p.starts_with(rel))
            .cloned()
            .collect();
        for p in dead {
            if let Some(ino) = self.by_path.remove(&p) {
                if let Some(n) = self.by_ino.get_mut(&ino) {
                    n.path = None;
                }
            }
        }
    }

    /// Move `from` (and what is below it) to `to`; with `exchange`, `to`
    /// moves to `from` at the same time.
    fn rename(&mut self, from: &Path, to: &Path, exchange: bool) {
        let moved = |p: &Path, a: &Path, b: &Path| -> Option<PathBuf> {
            p.strip_prefix(a).ok().map(|rest| {
                if rest.as_os_str().is_empty() {
                    b.to_path_buf()
                } else {
                    b.join(rest)
                }
            })
        };
        if !exchange {
            self.detach(to);
        }
        let mut changes = Vec::new();
        for (p, &ino) in &self.by_path {
            if let Some(np) = moved(p, from, to) {
                changes.push((p.clone(), np, ino));
            } else if exchange {
                if let Some(np) = moved(p, to, from) {
                    changes.push((p.clone(), np, ino));
                }
            }
        }
        for (old, _, _) in &changes {
            self.by_path.remove(old);
        }
        for (_, new, ino) in changes {
            if let Some(n) = self.by_ino.get_mut(&ino) {
                n.path = Some(new.clone());
            }
            self.by_path.insert(new, ino);
        }
    }
}

struct DirEnt {
    ino: u64,
    kind: FileType,
    name: OsString,
}

/// The backing-store side: every method does the real work of one request.
pub(crate) struct Ops {
    root: PathBuf,
    nodes: Mutex<Nodes>,
    files: Mutex<HashMap<u64, Arc<File>>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEnt>>>>,
    next_fh: AtomicU64,
}

impl Ops {
    pub(crate) fn new(root: PathBuf) -> Ops {
        Ops {
            root,
            nodes: Mutex::new(Nodes::new()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn full(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn rel(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        lock(&self.nodes).path(ino.0)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        let name = component(name)?;
        Ok(self.rel(parent)?.join(name))
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        lock(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn entry(&self, rel: PathBuf) -> Result<FileAttr, Errno> {
        let m = fs::symlink_metadata(self.full(&rel)).map_err(errno)?;
        let ino = lock(&self.nodes).remember(rel);
        Ok(attr(ino, &m))
    }

    fn lookup(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        self.entry(self.child(parent, name)?)
    }

    fn getattr(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        if let Some(f) = fh.and_then(|fh| self.file(fh).ok()) {
            return Ok(attr(ino.0, &f.metadata().map_err(errno)?));
        }
        let m = fs::symlink_metadata(self.full(&self.rel(ino)?)).map_err(errno)?;
        Ok(attr(ino.0, &m))
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let path = self.full(&self.rel(ino)?);
        if let Some(size) = size {
            match fh.and_then(|fh| self.file(fh).ok()) {
                Some(f) => f.set_len(size),
                None => OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(size)),
            }
            .map_err(errno)?;
        }
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)).map_err(errno)?;
        }
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(&path, uid, gid).map_err(errno)?;
        }
        if atime.is_some() || mtime.is_some() {
            let ts = |t: Option<TimeOrNow>| -> rustix::fs::Timespec {
                let (tv_sec, tv_nsec) = match t {
                    None => (0, rustix::fs::UTIME_OMIT),
                    Some(TimeOrNow::Now) => (0, rustix::fs::UTIME_NOW),
                    Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
                        Ok(d) => (
                            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                            i64::from(d.subsec_nanos()),
                        ),
                        Err(e) => {
                            let d = e.duration();
                            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                            if d.subsec_nanos() == 0 {
                                (-s, 0)
                            } else {
                                (-s - 1, 1_000_000_000 - i64::from(d.subsec_nanos()))
                            }
                        }
                    },
                };
                rustix::fs::Timespec { tv_sec, tv_nsec }
            };
            let times = rustix::fs::Timestamps {
                last_access: ts(atime),
                last_modification: ts(mtime),
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &path,
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(rerrno)?;
        }
        self.getattr(ino, fh)
    }

    fn add_file(&self, f: File) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(fh, Arc::new(f));
        fh
    }

    /// Options for opening the backing file: the access mode and the
    /// synchronous-write flags of the client; never `O_DIRECT` or `O_APPEND`.
    fn options(flags: i32) -> OpenOptions {
        let mut o = OpenOptions::new();
        match flags & libc::O_ACCMODE {
            libc::O_WRONLY => o.write(true),
            libc::O_RDWR => o.read(true).write(true),
            _ => o.read(true),
        };
        o.custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC));
        o
    }

    fn open(&self, ino: INodeNo, flags: OpenFlags) -> Result<u64, Errno> {
        let path = self.full(&self.rel(ino)?);
        let f = Self::options(flags.0).open(path).map_err(errno)?;
        Ok(self.add_file(f))
    }

    fn create(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let rel = self.child(parent, name)?;
        let mut o = Self::options(flags);
        // std needs write access to create; an extra write permission on
        // the backing fd is harmless (the kernel checks the client's mode).
        o.write(true);
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        } else {
            o.create(true);
        }
        if flags & libc::O_TRUNC != 0 {
            o.truncate(true);
        }
        o.mode(mode & !umask & 0o7777);
        let f = o.open(self.full(&rel)).map_err(errno)?;
        let m = f.metadata().map_err(errno)?;
        let ino = lock(&self.nodes).remember(rel);
        Ok((attr(ino, &m), self.add_file(f)))
    }

    fn read(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let f = self.file(fh)?;
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Short read: give what was read; the error shows next time.
                Err(_) if done > 0 => break,
                Err(e) => return Err(errno(e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let f = self.file(fh)?;
        f.write_all_at(data, offset).map_err(errno)?;
        u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    fn fsync(&self, fh: FileHandle, datasync: bool) -> Result<(), Errno> {
        let f = self.file(fh)?;
        if datasync {
            f.sync_data()
        } else {
            f.sync_all()
        }
        .map_err(errno)
    }

    fn release(&self, fh: FileHandle) {
        lock(&self.files).remove(&fh.0);
    }

    fn opendir(&self, ino: INodeNo) -> Result<u64, Errno> {
        let rel = self.rel(ino)?;
        let mut ents = vec![
            DirEnt {
                ino: ino.0,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirEnt {
                ino: INodeNo::ROOT.0,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for e in fs::read_dir(self.full(&rel)).map_err(errno)? {
            let e = e.map_err(errno)?;
            let kind = e.file_type().map(kind_of).unwrap_or(FileType::RegularFile);
            let known = lock(&self.nodes)
                .by_path
                .get(&rel.join(e.file_name()))
                .copied();
            ents.push(DirEnt {
                ino: known.unwrap_or_else(|| e.ino()),
                kind,
                name: e.file_name(),
            });
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, Arc::new(ents));
        Ok(fh)
    }

    fn readdir(&self, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(ents) = lock(&self.dirs).get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in ents.iter().enumerate().skip(start) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, fh: FileHandle) {
        lock(&self.dirs).remove(&fh.0);
    }

    fn mkdir(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<FileAttr, Errno> {
        let rel = self.child(parent, name)?;
        fs::DirBuilder::new()
            .mode(mode & !umask & 0o7777)
            .create(self.full(&rel))
            .map_err(errno)?;
        self.entry(rel)
    }

    fn unlink(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let rel = self.child(parent, name)?;
        let full = self.full(&rel);
        if dir {
            fs::remove_dir(full)
        } else {
            fs::remove_file(full)
        }
        .map_err(errno)?;
        lock(&self.nodes).detach(&rel);
        Ok(())
    }

    fn rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        if flags.is_empty() {
            fs::rename(self.full(&from), self.full(&to)).map_err(errno)?;
        } else {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                self.full(&from),
                rustix::fs::CWD,
                self.full(&to),
                rustix::fs::RenameFlags::from_bits_retain(flags.bits()),
            )
            .map_err(rerrno)?;
        }
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        lock(&self.nodes).rename(&from, &to, exchange);
        Ok(())
    }

    fn statfs(&self, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.root) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                u32::try_from(s.f_bsize).unwrap_or(4096),
                u32::try_from(s.f_namemax).unwrap_or(255),
                u32::try_from(s.f_frsize).unwrap_or(4096),
            ),
            Err(e) => reply.error(rerrno(e)),
        }
    }
}

/// Replies that can carry an error.
trait Fail {
    fn fail(self, e: Errno);
}

macro_rules! fail_impl {
    ($($t:ty),*) => {$(
        impl Fail for $t {
            fn fail(self, e: Errno) {
                self.error(e)
            }
        }
    )*};
}
fail_impl!(
    ReplyEntry,
    ReplyAttr,
    ReplyData,
    ReplyWrite,
    ReplyOpen,
    ReplyCreate,
    ReplyEmpty,
    ReplyDirectory,
    ReplyStatfs
);

/// The FUSE side: gates each request, then hands it to [`Ops`].
pub(crate) struct FaultFs {
    pub(crate) ops: Arc<Ops>,
    pub(crate) faults: Arc<Faults>,
}

impl FaultFs {
    fn gate<R, F>(&self, class: OpClass, reply: R, f: F)
    where
        R: Fail + Send + 'static,
        F: FnOnce(&Ops, R) + Send + 'static,
    {
        let ops = Arc::clone(&self.ops);
        self.faults.submit(class, move |v| match v {
            Verdict::Run => f(&ops, reply),
            Verdict::Fail(e) => reply.fail(e),
        });
    }
}

fn entry(reply: ReplyEntry, r: Result<FileAttr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            entry(reply, ops.lookup(parent, &name))
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.ops.nodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            match ops.getattr(ino, fh) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let class = if size.is_some() {
            OpClass::Write
        } else {
            OpClass::Meta
        };
        self.gate(class, reply, move |ops, reply| {
            match ops.setattr(ino, mode, uid, gid, size, atime, mtime, fh) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            entry(reply, ops.mkdir(parent, &name, mode, umask))
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            empty(reply, ops.unlink(parent, &name, false))
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            empty(reply, ops.unlink(parent, &name, true))
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let name = name.to_owned();
        let newname = newname.to_owned();
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            empty(reply, ops.rename(parent, &name, newparent, &newname, flags))
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.gate(OpClass::Open, reply, move |ops, reply| {
            match ops.open(ino, flags) {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                Err(e) => reply.error(e),
            }
        });
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_owned();
        self.gate(OpClass::Open, reply, move |ops, reply| {
            match ops.create(parent, &name, mode, umask, flags) {
                Ok((a, fh)) => reply.created(
                    &TTL,
                    &a,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO,
                ),
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.gate(OpClass::Read, reply, move |ops, reply| {
            match ops.read(fh, offset, size) {
                Ok(buf) => reply.data(&buf),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.gate(OpClass::Write, reply, move |ops, reply| {
            match ops.write(fh, offset, &data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e),
            }
        });
    }

    /// Never faulted: `close()` waits for it, and there is nothing to flush
    /// (writes go straight to the backing file).
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// Never faulted: nothing waits for it, and it frees the backing fd.
    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.ops.release(fh);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.gate(OpClass::Write, reply, move |ops, reply| {
            empty(reply, ops.fsync(fh, datasync))
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            match ops.opendir(ino) {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.gate(OpClass::Meta, reply, move |ops, reply| {
            ops.readdir(fh, offset, reply)
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.ops.releasedir(fh);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.gate(OpClass::Write, reply, |_, reply| reply.ok());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.gate(OpClass::Meta, reply, |ops, reply| ops.statfs(reply));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn rename_moves_subtree_and_detaches_target() {
        let mut n = Nodes::new();
        let a = n.remember(p("a"));
        let ab = n.remember(p("a/b"));
        let c = n.remember(p("c"));
        n.rename(&p("a"), &p("c"), false);
        assert_eq!(n.path(a).ok(), Some(p("c")));
        assert_eq!(n.path(ab).ok(), Some(p("c/b")));
        assert_eq!(n.path(c).ok(), None);
        assert_eq!(n.by_path.get(&p("c")), Some(&a));
        assert!(!n.by_path.contains_key(&p("a")));
    }

    #[test]
    fn rename_exchange_swaps() {
        let mut n = Nodes::new();
        let a = n.remember(p("a"));
        let b = n.remember(p("b"));
        n.rename(&p("a"), &p("b"), true);
        assert_eq!(n.path(a).ok(), Some(p("b")));
        assert_eq!(n.path(b).ok(), Some(p("a")));
    }

    #[test]
    fn forget_drops_node_when_count_reaches_zero() {
        let mut n = Nodes::new();
        let a = n.remember(p("a"));
        assert_eq!(n.remember(p("a")), a);
        n.forget(a, 1);
        assert!(n.path(a).is_ok());
        n.forget(a, 1);
        assert!(n.path(a).is_err());
        n.forget(INodeNo::ROOT.0, 100);
        assert!(n.path(INodeNo::ROOT.0).is_ok());
    }

    #[test]
    fn component_rejects_bad_names() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(component(OsStr::new(bad)).is_err());
        }
        assert!(component(OsStr::new("ok.txt")).is_ok());
    }

    #[test]
    fn time_handles_negative() {
        assert_eq!(time(0, 0), UNIX_EPOCH);
        assert!(time(-1, 500_000_000) < UNIX_EPOCH);
        assert_eq!(time(1, 0), UNIX_EPOCH + Duration::from_secs(1));
    }
}
