//! Whether the terminal on stdin is still there. crossterm 0.29 loops forever inside
//! `event::poll` once its tty hangs up (a read of 0 bytes or EIO is retried at once), so the key
//! thread asks the kernel first and only hands a readable, live terminal to crossterm.

use ratatui::crossterm::event::{self, Event};
use std::time::Duration;

/// What stdin's terminal is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tty {
    /// Input is waiting.
    Readable,
    /// Nothing within the timeout.
    Quiet,
    /// Hung up or closed: the SSH connection or the terminal window is gone.
    Gone,
    /// stdin is not a terminal (crossterm reads /dev/tty itself); nothing known.
    Unknown,
}

/// Wait up to `timeout` for input on stdin's terminal.
pub fn wait(timeout: Duration) -> Tty {
    // SAFETY: isatty and poll only read the descriptor number and the pollfd we own
    unsafe {
        if libc::isatty(libc::STDIN_FILENO) != 1 {
            return if std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF) {
                Tty::Gone
            } else {
                Tty::Unknown
            };
        }
        let mut p = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        match libc::poll(&mut p, 1, ms) {
            0 => Tty::Quiet,
            n if n < 0 => Tty::Quiet, // EINTR: ask again next time
            _ if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 => Tty::Gone,
            _ => Tty::Readable,
        }
    }
}

/// What [`pump`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Events (if any) were handed over; the terminal is there.
    Ok,
    /// The handler asked to stop.
    Stopped,
    /// The terminal hung up.
    Gone,
}

/// Wait up to `timeout` for terminal events and hand every one crossterm has (a single read
/// can hold several keys) to `on_event`, which returns false to stop. crossterm is only asked
/// once the terminal is known to be readable and alive (see the module note).
pub fn pump(timeout: Duration, mut on_event: impl FnMut(Event) -> bool) -> Pumped {
    let first = match wait(timeout) {
        Tty::Gone => return Pumped::Gone,
        Tty::Quiet => return Pumped::Ok,
        Tty::Readable => Duration::ZERO,
        // crossterm reads /dev/tty itself: let it do the waiting
        Tty::Unknown => timeout,
    };
    let mut limit = first;
    while wait(Duration::ZERO) != Tty::Gone
        && let Ok(true) = event::poll(limit)
    {
        limit = Duration::ZERO;
        let Ok(ev) = event::read() else { break };
        if !on_event(ev) {
            return Pumped::Stopped;
        }
    }
    Pumped::Ok
}
