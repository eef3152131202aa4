//! One client connection: peer credentials checked once, then one JSON
//! request per line, one JSON response per line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use nosplit_lease::host::JoinMode;
use nosplit_lease::paxos::{LeaseMode, OpKind, OpResult};

use super::ops::{self, LsContext};
use super::{lock, start_lockspace, Freeze, Holder, Ls, LsState, Shared};
use crate::api::{HeldLease, LeaseRef, Request, Response};
use crate::state::SavedLockspace;

/// Largest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Who is on the other end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) pid: u32,
    uid: u32,
    gid: u32,
}

/// Reads the peer's credentials from the socket (`SO_PEERCRED`).
pub(crate) fn peer(stream: &UnixStream) -> Option<Peer> {
    let c = rustix::net::sockopt::socket_peercred(stream).ok()?;
    Some(Peer {
        pid: u32::try_from(c.pid.as_raw_nonzero().get()).ok()?,
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
    })
}

/// Root, or a member (primary or supplementary) of the configured group.
pub(crate) fn allowed(p: &Peer, group: Option<u32>) -> bool {
    if p.uid == 0 {
        return true;
    }
    let Some(g) = group else { return false };
    if p.gid == g {
        return true;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|gs| gs.split_whitespace().any(|x| x.parse() == Ok(g)))
}

/// Serves one connection until it closes.
pub(crate) fn serve(shared: Shared, stream: UnixStream) {
    let Some(p) = peer(&stream) else { return };
    let group = lock(&shared).cfg.socket_group;
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    if !allowed(&p, group) {
        let _ = reply(
            &mut out,
            &Response::error("denied", "only root or the configured group may use leased"),
        );
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE as u64 + 1).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) if n > MAX_LINE => {
                let _ = reply(
                    &mut out,
                    &Response::error("invalid", "request line too long"),
                );
                return;
            }
            Ok(_) => {}
        }
        let req: Request = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                if reply(
                    &mut out,
                    &Response::error("invalid", format!("bad request: {e}")),
                )
                .is_err()
                {
                    return;
                }
                continue;
            }
        };
        if let Request::Subscribe = req {
            return subscribe(&shared, out);
        }
        let resp = handle(&shared, &p, req);
        if reply(&mut out, &resp).is_err() {
            return;
        }
    }
}

fn reply(out: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let mut text = serde_json::to_vec(r).unwrap_or_else(|_| {
        b"{\"result\":\"error\",\"kind\":\"internal\",\"message\":\"unserialisable\"}".to_vec()
    });
    text.push(b'\n');
    out.write_all(&text)
}

fn subscribe(shared: &Shared, mut out: UnixStream) {
    let (tx, rx) = crossbeam_channel::unbounded();
    lock(shared).subscribers.push(tx);
    if reply(&mut out, &Response::Ok).is_err() {
        return;
    }
    for e in rx {
        if reply(&mut out, &Response::Event(e)).is_err() {
            return;
        }
    }
}

/// Handles one request.
pub(crate) fn handle(shared: &Shared, p: &Peer, req: Request) -> Response {
    match req {
        Request::Register { pid, freeze_hook } => {
            register(shared, pid.unwrap_or(p.pid), freeze_hook)
        }
        Request::Acquire {
            pid,
            lease,
            mode,
            lver,
        } => acquire(shared, pid.unwrap_or(p.pid), lease, mode, lver),
        Request::Release {
            pid,
            lockspace,
            resource,
        } => release(shared, pid.unwrap_or(p.pid), &lockspace, &resource),
        Request::Inquire { pid } => {
            let g = lock(shared);
            match g.holders.get(&pid.unwrap_or(p.pid)) {
                Some(h) => Response::Leases {
                    leases: h.leases.clone(),
                },
                None => Response::error("not_found", "process is not registered"),
            }
        }
        Request::AddLockspace {
            name,
            path,
            offset,
            host_id,
            sector_size,
        } => add_lockspace(
            shared,
            SavedLockspace {
                name,
                path,
                offset,
                host_id,
                sector_size,
                generation: 0,
            },
        ),
        Request::RemLockspace { name } => rem_lockspace(shared, &name),
        Request::Revalidate { pid } => holder_state(shared, pid.unwrap_or(p.pid)),
        Request::Status => Response::Status(Box::new(lock(shared).status())),
        Request::Subscribe => Response::error("invalid", "subscribe is handled by the connection"),
    }
}

fn register(shared: &Shared, pid: u32, freeze_hook: Option<Vec<String>>) -> Response {
    let Some(id) = crate::proc::identify(pid) else {
        return Response::error("not_found", format!("no process {pid}"));
    };
    if freeze_hook
        .as_ref()
        .is_some_and(|h| h.is_empty() || h.iter().any(String::is_empty))
    {
        return Response::error("invalid", "freeze_hook must be a non-empty argv");
    }
    let mut g = lock(shared);
    match g.holders.get_mut(&pid) {
        Some(h) if h.id == id && !h.gone => h.freeze_hook = freeze_hook,
        _ => {
            g.holders.insert(
                pid,
                Holder {
                    id,
                    freeze_hook,
                    leases: Vec::new(),
                    gone: false,
                    freeze: Freeze::Running,
                },
            );
        }
    }
    g.save();
    Response::Registered { pid }
}

/// The answer to `Revalidate`: where the holder is after a freeze.
fn holder_state(shared: &Shared, pid: u32) -> Response {
    let g = lock(shared);
    let h = g.holders.get(&pid).filter(|h| !h.gone);
    let failed = g
        .revalidation_failed
        .iter()
        .rev()
        .find(|(id, _)| id.pid == pid && h.is_none_or(|h| h.id == *id));
    if let Some((_, reason)) = failed {
        return Response::error("revalidation_failed", reason.clone());
    }
    let Some(h) = h else {
        return Response::error("not_found", format!("process {pid} is not registered"));
    };
    let state = match h.freeze {
        Freeze::Frozen => "frozen",
        Freeze::Revalidating => "revalidating",
        Freeze::Running => {
            let sick = h.leases.iter().find(|l| {
                g.lockspaces
                    .get(&l.lease.lockspace)
                    .is_none_or(|x| x.state != LsState::Joined)
            });
            if let Some(l) = sick {
                return Response::error(
                    "failing",
                    format!(
                        "process {pid} is not frozen and lockspace {} is not healthy: it is being stopped",
                        l.lease.lockspace
                    ),
                );
            }
            "thawed"
        }
    };
    Response::Holder {
        pid,
        state: state.to_string(),
        leases: h.leases.clone(),
    }
}

/// Snapshot of what an operation in `lockspace` needs, if it may proceed.
pub(crate) fn context(
    shared: &Shared,
    lockspace: &str,
    for_acquire: bool,
) -> Result<LsContext, Response> {
    let g = lock(shared);
    let l = g.lockspaces.get(lockspace).ok_or_else(|| {
        Response::error("not_found", format!("lockspace {lockspace} is not joined"))
    })?;
    let st = l.runner.state();
    let refuse = match l.state {
        LsState::Joined => None,
        LsState::Joining => Some("is still joining"),
        LsState::Failing if for_acquire => Some("is failing to renew: no new leases"),
        LsState::Failing => None,
        LsState::Lost => Some("lost its host lease"),
    };
    if let Some(why) = refuse {
        return Err(Response::error(
            "failing",
            format!("lockspace {lockspace} {why}"),
        ));
    }
    let me = st
        .owner
        .ok_or_else(|| Response::error("failing", "no incarnation yet"))?;
    let sector = nosplit_storage::SectorSize::from_bytes(u64::from(l.saved.sector_size))
        .ok_or_else(|| Response::error("internal", "bad sector size"))?;
    Ok(LsContext {
        header: l.header.clone(),
        path: l.saved.path.clone(),
        offset: l.saved.offset,
        sector,
        me,
        view: st.view,
    })
}

fn acquire(
    shared: &Shared,
    pid: u32,
    lease: LeaseRef,
    mode: LeaseMode,
    lver: Option<u64>,
) -> Response {
    {
        let g = lock(shared);
        let Some(h) = g.holders.get(&pid) else {
            return Response::error("not_found", format!("process {pid} is not registered"));
        };
        if h.gone || !crate::proc::alive(&h.id) {
            return Response::error("not_found", format!("process {pid} is gone"));
        }
        if h.freeze != Freeze::Running {
            return Response::error(
                "frozen",
                format!("process {pid} is frozen: its leases are suspended until revalidated"),
            );
        }
        if h.leases
            .iter()
            .any(|l| l.lease.lockspace == lease.lockspace && l.lease.resource == lease.resource)
        {
            return Response::error("conflict", "the process already holds this lease");
        }
    }
    let mut ctx = match context(shared, &lease.lockspace, true) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // The watchdog must cover this lockspace before a lease in it is handed
    // out: if the daemon dies right after, the holder is still stopped in
    // time. No watchdog, no lease.
    let armed = super::supervisor::arm(shared, Some(&lease.lockspace));
    // Counted in `acquiring` by `arm`: uncounted when this returns (after
    // the lease is recorded with the holder, or the acquire failed).
    let _acquiring = Acquiring {
        shared,
        lockspace: &lease.lockspace,
    };
    if let Err(e) = armed {
        return Response::error("failing", format!("cannot arm the watchdog: {e}"));
    }
    let lv = match ops::run(&mut ctx, &lease, ops::acquire_kind(mode, lver)) {
        Ok(OpResult::Acquired {
            lver,
            already: false,
            ..
        }) => lver,
        Ok(OpResult::Acquired { already: true, .. }) => {
            // Owned by this incarnation already: some other holder of ours
            // has it. Two holders on one host would defeat S1's purpose.
            return Response::error(
                "busy",
                "the lease is already held by another process on this host",
            );
        }
        Ok(other) => return Response::error("internal", format!("unexpected {other:?}")),
        Err(r) => return r,
    };
    let held = HeldLease {
        lease: lease.clone(),
        mode,
        lver: lv,
    };
    let mut g = lock(shared);
    let still = g
        .holders
        .get(&pid)
        .is_some_and(|h| crate::proc::alive(&h.id));
    if !still {
        drop(g);
        let _ = ops::run(&mut ctx, &lease, OpKind::Release { mode });
        return Response::error(
            "not_found",
            format!("process {pid} exited during the acquire; released"),
        );
    }
    if let Some(h) = g.holders.get_mut(&pid) {
        h.leases.push(held);
    }
    g.save();
    Response::Acquired { lver: lv }
}

/// Releases one lease of `pid` (also used when a holder exits).
pub(crate) fn release(shared: &Shared, pid: u32, lockspace: &str, resource: &str) -> Response {
    let held = {
        let g = lock(shared);
        let Some(h) = g.holders.get(&pid) else {
            return Response::error("not_found", format!("process {pid} is not registered"));
        };
        match h
            .leases
            .iter()
            .find(|l| l.lease.lockspace == lockspace && l.lease.resource == resource)
        {
            Some(l) => l.clone(),
            None => {
                return Response::error(
                    "not_found",
                    format!("process {pid} does not hold {lockspace}/{resource}"),
                )
            }
        }
    };
    // A lost incarnation cannot release (its leases are void); just forget.
    let result = match context(shared, lockspace, false) {
        Ok(mut ctx) => {
            ops::run(&mut ctx, &held.lease, OpKind::Release { mode: held.mode }).map(|_| ())
        }
        Err(r) => Err(r),
    };
    let mut g = lock(shared);
    if let Some(h) = g.holders.get_mut(&pid) {
        h.leases
            .retain(|l| !(l.lease.lockspace == lockspace && l.lease.resource == resource));
    }
    g.save();
    match result {
        Ok(()) => Response::Ok,
        Err(r) => r,
    }
}

fn add_lockspace(shared: &Shared, mut saved: SavedLockspace) -> Response {
    let (cfg, events) = {
        let g = lock(shared);
        if g.lockspaces.contains_key(&saved.name) {
            return Response::error(
                "conflict",
                format!("lockspace {} is already joined", saved.name),
            );
        }
        (g.cfg.clone(), g.events.clone())
    };
    let (header, runner) =
        match start_lockspace(&cfg, &saved, JoinMode::New { prior_gone: true }, events) {
            Ok(x) => x,
            Err(e) => return Response::error("io", e.to_string()),
        };
    let timing = nosplit_lease::Timing::from_io_timeout_ms(header.io_timeout_ms);
    let limit = timing.host_dead * 2 + timing.join_wait + timing.io_timeout * 4;
    let name = saved.name.clone();
    {
        let mut g = lock(shared);
        if g.lockspaces.contains_key(&name) {
            drop(g);
            runner.stop(false);
            return Response::error("conflict", format!("lockspace {name} is already joined"));
        }
        g.lockspaces.insert(
            name.clone(),
            Ls {
                saved: saved.clone(),
                header,
                runner,
                state: LsState::Joining,
            },
        );
    }
    let watch = lock(shared).lockspaces.get(&name).map(|l| l.runner.watch());
    let result = watch.map(|w| w.wait_joined(limit));
    let mut g = lock(shared);
    match result {
        Some(Ok(owner)) => {
            saved.generation = owner.generation;
            if let Some(l) = g.lockspaces.get_mut(&name) {
                l.saved.generation = owner.generation;
                l.state = LsState::Joined;
            }
            g.save();
            Response::Joined {
                generation: owner.generation,
            }
        }
        Some(Err(e)) => {
            if let Some(l) = g.lockspaces.remove(&name) {
                l.runner.stop(false);
            }
            Response::error("io", format!("joining {name}: {e}"))
        }
        None => Response::error("internal", "lockspace vanished while joining"),
    }
}

fn rem_lockspace(shared: &Shared, name: &str) -> Response {
    let ls = {
        let mut g = lock(shared);
        if !g.lockspaces.contains_key(name) {
            return Response::error("not_found", format!("lockspace {name} is not joined"));
        }
        if g.holders
            .values()
            .any(|h| h.leases.iter().any(|l| l.lease.lockspace == name))
        {
            return Response::error("busy", format!("lockspace {name} still has lease holders"));
        }
        let ls = g.lockspaces.remove(name);
        g.save();
        ls
    };
    if let Some(l) = ls {
        l.runner.stop(true);
    }
    Response::Ok
}

/// Uncounts an acquire in progress when dropped.
struct Acquiring<'a> {
    shared: &'a Shared,
    lockspace: &'a str,
}

impl Drop for Acquiring<'_> {
    fn drop(&mut self) {
        let mut g = lock(self.shared);
        if let Some(n) = g.acquiring.get_mut(self.lockspace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.acquiring.remove(self.lockspace);
            }
        }
    }
}
