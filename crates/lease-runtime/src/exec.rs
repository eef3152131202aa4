//! Executes machine I/O commands on storage and feeds completions back.
//!
//! The machines enforce deadlines themselves; here every wait is bounded by
//! the machine's next wakeup, so a hung request never holds up a decision.

use nosplit_clock::MonoTime;
use nosplit_lease::host::{HostEvent, HostLease, Output};
use nosplit_lease::io::{Area, Input, IoCmd, IoDone, IoKind, IoOutcome};
use nosplit_lease::paxos::{LeaseError, OpOutput, OpResult, ResourceOp};
use nosplit_lease::view::HostView;
use nosplit_storage::{AlignedBuf, IoCompletion, IoId, IoOk, IoOp, IoRequest, Storage};

/// A storage area: the storage and the byte offset where the area starts.
#[derive(Debug)]
pub struct AreaRef<'a> {
    /// The storage.
    pub storage: &'a mut dyn Storage,
    /// Byte offset of the area's start.
    pub base: u64,
}

/// Converts a command into a request at `base`.
pub fn to_request(cmd: &IoCmd, base: u64) -> IoRequest {
    let offset = base + cmd.offset;
    let op = match &cmd.kind {
        IoKind::Read(len) => IoOp::Read { offset, len: *len },
        IoKind::Write(data) => IoOp::Write {
            offset,
            data: AlignedBuf::from_slice(data),
        },
    };
    IoRequest {
        id: IoId(cmd.id),
        op,
        deadline: cmd.deadline,
    }
}

/// Converts a completion into machine input.
pub fn to_done(c: IoCompletion) -> IoDone {
    let outcome = match c.result {
        Ok(IoOk::Read(b)) => IoOutcome::Read(b.to_vec()),
        Ok(IoOk::Written) => IoOutcome::Written,
        Err(e) => IoOutcome::Failed(e.to_string()),
    };
    IoDone {
        id: c.id.0,
        outcome,
    }
}

/// Runs `op` to completion. The lockspace and resource areas may live on
/// the same file (pass two handles) or on different ones.
pub fn run_op(
    op: &mut ResourceOp,
    ls: &mut AreaRef<'_>,
    res: &mut AreaRef<'_>,
    view: &mut HostView,
) -> Result<OpResult, LeaseError> {
    let mut input = Input::Tick;
    let mut on_ls = false;
    loop {
        let now = res.storage.now();
        for out in op.step(std::mem::replace(&mut input, Input::Tick), now, view) {
            match out {
                OpOutput::Done(r) => return r,
                OpOutput::Io(cmd) => {
                    on_ls = cmd.area == Area::Lockspace;
                    if on_ls {
                        ls.storage.submit(to_request(&cmd, ls.base));
                    } else {
                        res.storage.submit(to_request(&cmd, res.base));
                    }
                }
            }
        }
        let until = op.next_wakeup();
        let done = if on_ls {
            ls.storage.wait(until)
        } else {
            res.storage.wait(until)
        };
        if let Some(c) = done {
            input = Input::Done(to_done(c));
        }
    }
}

/// Drives a host lease until `stop` returns true for an event, the machine
/// finishes, or `until` passes. Returns every event seen.
pub fn pump_host(
    host: &mut HostLease,
    ls: &mut AreaRef<'_>,
    until: MonoTime,
    mut stop: impl FnMut(&HostEvent) -> bool,
) -> Vec<HostEvent> {
    let mut events = Vec::new();
    let mut input = Input::Tick;
    loop {
        let now = ls.storage.now();
        let mut stopped = false;
        for out in host.step(std::mem::replace(&mut input, Input::Tick), now) {
            match out {
                Output::Io(cmd) => ls.storage.submit(to_request(&cmd, ls.base)),
                Output::Event(e) => {
                    stopped |= stop(&e);
                    events.push(e);
                }
            }
        }
        if stopped || host.is_done() || now >= until {
            return events;
        }
        if let Some(c) = ls.storage.wait(host.next_wakeup().min(until)) {
            input = Input::Done(to_done(c));
        }
    }
}
