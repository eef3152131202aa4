//! A kernel watchdog device (`/dev/watchdog`).
//!
//! The device runs only while it is open: [`DeviceWatchdog::open`] checks
//! that it can be opened and configured, then closes it again with the
//! magic character, so nothing can reset the host before the first `arm()`.
//! `arm()` opens it if needed (which starts its timer) and pets it only if
//! the expiry has not passed; `disarm()` closes it with the magic character.
//! A daemon that exits or dies without `disarm()` closes it without the
//! magic character: the kernel keeps it running and the host resets.
//!
//! Kernels built with `CONFIG_WATCHDOG_NOWAYOUT` (or drivers loaded with
//! `nowayout=1`) ignore the magic close: there, `disarm()` cannot stop the
//! device and the host resets `margin()` after the last `arm()`. Do not use
//! such a device with `leased`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nosplit_clock::{Clock, MonoTime, RealClock};
use rustix::ioctl::{opcode, Opcode, Updater};

use super::{Watchdog, WatchdogError};

/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)` (`linux/watchdog.h`).
const WDIOC_SETTIMEOUT: Opcode = opcode::read_write::<libc::c_int>(b'W', 6);

/// Sets the device's timeout; returns the timeout the driver actually uses.
fn set_timeout(file: &File, secs: u32) -> std::io::Result<u32> {
    let mut value = libc::c_int::try_from(secs)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: WDIOC_SETTIMEOUT is defined as _IOWR('W', 6, int): the kernel
    // reads one int from the pointer and writes one int back. The pointer is
    // to `value`, a live, aligned c_int that outlives the call, and `file`
    // is an open descriptor. On a file that is not a watchdog the kernel
    // rejects the request (ENOTTY) without touching memory.
    unsafe {
        rustix::ioctl::ioctl(
            file,
            Updater::<WDIOC_SETTIMEOUT, libc::c_int>::new(&mut value),
        )?;
    }
    Ok(u32::try_from(value).unwrap_or(0))
}

/// Writes the magic character (if this is a character device: never into
/// a regular file named by mistake) and closes the file.
fn magic_close(mut file: File) -> std::io::Result<()> {
    if file.metadata()?.file_type().is_char_device() {
        file.write_all(b"V")?;
    }
    Ok(())
}

/// A kernel watchdog device.
#[derive(Debug)]
pub struct DeviceWatchdog {
    path: PathBuf,
    timeout_secs: u32,
    file: Option<File>,
    fired: bool,
}

impl DeviceWatchdog {
    /// Checks that `path` opens and accepts a timeout of `timeout` (whole
    /// seconds, rounded down, at least 1 s), then closes it again (magic
    /// close): the device only runs from the first [`Watchdog::arm`].
    ///
    /// The timeout is the [`Watchdog::margin`]. A driver that can only do a
    /// longer timeout is refused; a shorter one is accepted.
    pub fn open(path: &Path, timeout: Duration) -> Result<DeviceWatchdog, WatchdogError> {
        let secs = timeout.as_secs();
        if secs == 0 {
            return Err(WatchdogError::Invalid(format!(
                "watchdog device {}: timeout must be at least 1 s (whole seconds), got {timeout:?}",
                path.display()
            )));
        }
        let timeout_secs = u32::try_from(secs)
            .ok()
            .filter(|s| libc::c_int::try_from(*s).is_ok())
            .ok_or_else(|| {
                WatchdogError::Invalid(format!(
                    "watchdog device {}: timeout {timeout:?} is too long",
                    path.display()
                ))
            })?;
        let mut wd = DeviceWatchdog {
            path: path.to_path_buf(),
            timeout_secs,
            file: None,
            fired: false,
        };
        wd.start()?;
        wd.stop()?;
        Ok(wd)
    }

    /// Opens the device (its timer starts) and sets the timeout.
    fn start(&mut self) -> Result<(), WatchdogError> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(|e| WatchdogError::io("opening watchdog device", &self.path, e))?;
        let actual = match set_timeout(&file, self.timeout_secs) {
            Ok(actual) => actual,
            Err(e) => {
                let _ = magic_close(file);
                return Err(WatchdogError::io(
                    "setting the timeout (WDIOC_SETTIMEOUT) of watchdog device",
                    &self.path,
                    e,
                ));
            }
        };
        if actual == 0 || actual > self.timeout_secs {
            let _ = magic_close(file);
            return Err(WatchdogError::Invalid(format!(
                "watchdog device {}: asked for a {} s timeout, the driver set {actual} s",
                self.path.display(),
                self.timeout_secs
            )));
        }
        self.timeout_secs = actual;
        self.file = Some(file);
        Ok(())
    }

    /// Magic close, if open.
    fn stop(&mut self) -> Result<(), WatchdogError> {
        match self.file.take() {
            Some(file) => magic_close(file)
                .map_err(|e| WatchdogError::io("closing watchdog device", &self.path, e)),
            None => Ok(()),
        }
    }

    fn keepalive(&mut self) -> Result<(), WatchdogError> {
        if let Some(file) = self.file.as_mut() {
            // Any write pets the device; a byte other than 'V' also cancels
            // an earlier magic character.
            file.write_all(b"\n")
                .map_err(|e| WatchdogError::io("petting watchdog device", &self.path, e))?;
        }
        Ok(())
    }
}

impl Watchdog for DeviceWatchdog {
    /// Opens the device if it is closed (which starts its timer) and pets it
    /// if `now < expiry`. An expiry already past is never petted: an open
    /// device resets `margin()` after the previous pet, a closed one
    /// `margin()` after this call.
    fn arm(&mut self, expiry: MonoTime) -> Result<(), WatchdogError> {
        if self.fired {
            return Ok(());
        }
        if self.file.is_none() {
            self.start()?;
        }
        if RealClock.now() < expiry {
            self.keepalive()?;
        }
        Ok(())
    }

    /// Sets the timeout to 1 s and never pets again.
    fn fire(&mut self, reason: &str) -> Result<(), WatchdogError> {
        eprintln!(
            "leased: FIRING watchdog {}: {reason}; the host resets within seconds",
            self.path.display()
        );
        self.fired = true;
        if self.file.is_none() {
            self.start()?;
        }
        if let Some(file) = &self.file {
            set_timeout(file, 1).map_err(|e| {
                WatchdogError::io(
                    "setting a 1 s timeout (WDIOC_SETTIMEOUT) to fire watchdog device",
                    &self.path,
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Magic close. After `fire()` this does nothing: the reset goes ahead.
    fn disarm(&mut self) -> Result<(), WatchdogError> {
        if self.fired {
            return Ok(());
        }
        self.stop()
    }

    fn margin(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout_secs))
    }

    fn describe(&self) -> String {
        format!(
            "device {} (timeout {} s)",
            self.path.display(),
            self.timeout_secs
        )
    }
}
