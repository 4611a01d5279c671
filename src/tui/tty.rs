//! Whether the terminal on stdin is still there. crossterm 0.29 loops forever inside
//! `event::poll` once its tty hangs up (a read of 0 bytes or EIO is retried at once), so the key
//! thread asks the kernel first and only hands a readable, live terminal to crossterm.

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
