//! The storage truth for an observer that is not a member (the engine, the
//! lab): a thread that reads a lockspace's host slots every half renewal
//! interval and keeps each host's liveness as judged from this process's
//! clock (a host is DEAD only after its slot stopped changing for the
//! host-dead time, exactly as members judge it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nosplit_lease::format::{is_blank, HostSlot};
use nosplit_lease::{HostView, Liveness, Timing};
use nosplit_storage::Storage;

use std::path::Path;

use crate::{direct, RuntimeError};

/// Liveness per host id, as last judged.
pub type Views = Arc<Mutex<Vec<(u32, Liveness, u64)>>>;

/// A running watcher; stops when dropped.
#[derive(Debug)]
pub struct LockspaceWatch {
    views: Views,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LockspaceWatch {
    /// Starts watching the lockspace at offset 0 of `path`.
    pub fn start(path: &Path) -> Result<LockspaceWatch, RuntimeError> {
        let mut s = direct::open(path, None, None)?;
        let header = direct::read_header(&mut s, 0)?;
        let g = header.geometry;
        let timing = Timing::from_io_timeout_ms(header.io_timeout_ms);
        let views: Views = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (v, st) = (views.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("lab-storewatch".into())
            .spawn(move || {
                let mut view = HostView::default();
                let sector = g.sector();
                let len = g.max_hosts() as usize * sector;
                while !st.load(Ordering::Relaxed) {
                    let issued = s.now();
                    let io = timing.io_timeout;
                    if let Ok(raw) = s.read_sync(sector as u64, len, io) {
                        let done = s.now();
                        for (i, sec) in raw.chunks_exact(sector).enumerate() {
                            let host = u32::try_from(i + 1).unwrap_or(u32::MAX);
                            if !is_blank(sec) {
                                if let Ok(slot) = HostSlot::decode(sec, host) {
                                    view.observe(host, Some(slot), issued, done);
                                }
                            }
                        }
                        let now: Vec<_> = view
                            .iter()
                            .filter_map(|(h, o)| {
                                let gen = o.slot.as_ref().map_or(0, |s| s.generation);
                                view.liveness(h, &timing).map(|l| (h, l, gen))
                            })
                            .collect();
                        if let Ok(mut g) = v.lock() {
                            *g = now;
                        }
                    }
                    std::thread::sleep(timing.renew_interval / 2);
                }
            })
            .map_err(|source| RuntimeError::Thread {
                path: path.display().to_string(),
                source,
            })?;
        Ok(LockspaceWatch {
            views,
            stop,
            thread: Some(thread),
        })
    }

    /// `(host, liveness, generation)` of every host seen in the lockspace.
    pub fn hosts(&self) -> Vec<(u32, Liveness, u64)> {
        self.views.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// One host's liveness (`None`: never seen).
    pub fn liveness(&self, host: u32) -> Option<Liveness> {
        self.hosts()
            .into_iter()
            .find(|(h, _, _)| *h == host)
            .map(|(_, l, _)| l)
    }
}

impl Drop for LockspaceWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
