//! Linked pseudo-terminal pairs: the master side stands in for one end of an RS-485 bus (the
//! simulated devices), the slave path is opened by the code under test exactly like
//! `/dev/ttyUSB0`. Both sides are put in raw mode so every byte of a Modbus RTU frame passes
//! unchanged (no echo, no CR/LF translation, no signal characters).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A master/slave pair. Keep the slave fd open for as long as the pair is used: closing the last
/// slave fd makes reads on the master fail with EIO until someone opens the slave again.
pub struct PtyPair {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// `/dev/pts/N`: what the code under test opens as its serial port.
    pub slave_path: PathBuf,
}

impl PtyPair {
    pub fn open() -> io::Result<PtyPair> {
        let mut master = -1;
        let mut slave = -1;
        // SAFETY: openpty writes two fds on success; name/termios/winsize may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just returned by openpty and are owned by nobody else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        make_raw(&master)?;
        make_raw(&slave)?;
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))?;
        Ok(PtyPair {
            master,
            slave,
            slave_path,
        })
    }

    /// Turns the master side into an async byte stream (consumes the master fd).
    pub fn into_master_stream(self) -> io::Result<(PtyStream, OwnedFd, PathBuf)> {
        Ok((PtyStream::new(self.master)?, self.slave, self.slave_path))
    }
}

fn make_raw(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a valid tty fd with a zeroed termios buffer.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd.as_raw_fd(), &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Non-blocking async stream over a pty master fd.
pub struct PtyStream {
    fd: AsyncFd<OwnedFd>,
}

impl PtyStream {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: fcntl on a valid fd we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: an OwnedFd is a valid open fd that stays the same until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(PtyStream { fd })
    }
}

impl AsyncRead for PtyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let result = guard.try_io(|inner| {
                // SAFETY: reading into an initialised, exclusively borrowed buffer.
                let n = unsafe {
                    libc::read(
                        inner.as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let result = guard.try_io(|inner| {
                // SAFETY: writing from a valid slice.
                let n = unsafe { libc::write(inner.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
