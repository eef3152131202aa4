//! Stand-alone faultfs until the `nosplit faultfs` subcommand exists:
//! `faultfs --backing DIR --mount DIR [--control SOCKET]`, served in the
//! foreground until SIGINT/SIGTERM/SIGHUP or an unmount from outside.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut backing = None;
    let mut mount = None;
    let mut control = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let slot = match a.to_str() {
            Some("--backing") => &mut backing,
            Some("--mount") => &mut mount,
            Some("--control") => &mut control,
            _ => {
                eprintln!("usage: faultfs --backing DIR --mount DIR [--control SOCKET]");
                return ExitCode::from(2);
            }
        };
        *slot = args.next().map(PathBuf::from);
    }
    let (Some(backing), Some(mount)) = (backing, mount) else {
        eprintln!("usage: faultfs --backing DIR --mount DIR [--control SOCKET]");
        return ExitCode::from(2);
    };
    match nosplit_faultfs::run_foreground(&backing, &mount, control.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faultfs: {e}");
            ExitCode::FAILURE
        }
    }
}
