//! Host plumbing of the one-machine lab (ARCHITECTURE.md section 7).
//!
//! A lab `<lab>` (`[a-z][a-z0-9]{0,4}`) has hosts `1..=N` (N <= 64). Each host
//! is a network namespace `<lab>-h<N>` with one veth per plane (`eth-mgmt`,
//! `eth-svc`, `eth-stor` inside; `<lab>h<N>-<plane>` on the bridge
//! `<lab>-br-<plane>` in the root namespace), and a cgroup v2 power domain
//! `<v2root>/nosplit-lab-<lab>/h<N>`. Addresses: bridge `a.b.<p>.1/24`, host
//! `a.b.<p>.(10+N)/24`, p = 1 mgmt, 2 svc, 3 stor, prefix `a.b` default 10.77.
//!
//! - [`naming`]: names and addresses (pure).
//! - [`up()`] / [`down()`]: build and tear down (down by naming convention only).
//! - [`fault`]: link down/up and nftables drops per host and plane, status.
//! - [`cgroup`]: power domains, `power_off`.
//! - [`enter`]: start processes on a host (netns + cgroup + setsid, same
//!   mount namespace).
//!
//! Everything needs root and the `ip` (iproute2) and `nft` tools.

pub mod cgroup;
mod cmd;
mod down;
pub mod enter;
mod error;
pub mod fault;
pub mod naming;
mod up;

pub use cgroup::{
    cgroup2_root, cgroup_create, cgroup_path, cgroup_procs, cgroup_remove, power_off,
    PowerOffReport,
};
pub use down::{down, down_with_timeout, DownReport, DOWN_KILL_TIMEOUT};
pub use enter::{enter_host, run_in_host};
pub use error::NetError;
pub use fault::{host_status, set_drop, set_link, DropMode, HostNet, PlaneState};
pub use naming::{HostAddrs, LabName, Plane, Prefix};
pub use up::{lab_objects, up, NetPlan};

/// Alias of [`DropMode`] (the name used in the design); prefer `DropMode`,
/// since a glob import of `Drop` would shadow the `Drop` trait.
pub type Drop = DropMode;
