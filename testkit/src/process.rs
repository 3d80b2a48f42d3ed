//! Child processes that die with the test that started them.
//!
//! A test that spawns `ems-agent`, `emsctl` or any other program must not leave it running when
//! the test fails, panics or is killed. [`SpawnGuarded::spawn_guarded`] starts the program so that
//! both happen:
//!
//! - the guard it returns ([`ChildGuard`] for `std::process`, [`AsyncChildGuard`] for
//!   `tokio::process`) kills the child and reaps it when dropped, which covers a test that ends
//!   or panics;
//! - the child gets `PR_SET_PDEATHSIG` = `SIGKILL`, so the kernel kills it when the test process
//!   dies, even by `SIGKILL` where no destructor runs.
//!
//! The kernel sends the parent-death signal when the *thread* that forked the child ends, not
//! the process, so children are forked from one long-lived keeper thread ([`on_keeper`]); a
//! child started from a test thread or a short-lived tokio blocking thread would otherwise die
//! with that thread.

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a guard waits, when dropped, for its killed child to be reaped.
const REAP_DEADLINE: Duration = Duration::from_secs(10);

/// Starting a command as a child that dies with the test.
pub trait SpawnGuarded {
    type Guard;

    /// Spawns the command with `PR_SET_PDEATHSIG` = `SIGKILL`, forked from the keeper thread;
    /// the returned guard kills and reaps the child when dropped.
    fn spawn_guarded(self) -> io::Result<Self::Guard>;
}

impl SpawnGuarded for Command {
    type Guard = ChildGuard;

    fn spawn_guarded(mut self) -> io::Result<ChildGuard> {
        set_parent_death_signal(&mut self, libc::SIGKILL);
        let child = on_keeper(move || self.spawn())??;
        Ok(ChildGuard { child })
    }
}

impl SpawnGuarded for tokio::process::Command {
    type Guard = AsyncChildGuard;

    /// Must be called inside a tokio runtime (as `tokio::process::Command::spawn`); the child is
    /// registered with that runtime.
    fn spawn_guarded(mut self) -> io::Result<AsyncChildGuard> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        set_parent_death_signal(self.as_std_mut(), libc::SIGKILL);
        let child = on_keeper(move || {
            let _entered = runtime.enter();
            self.spawn()
        })??;
        Ok(AsyncChildGuard { child })
    }
}

/// Has the kernel send `signal` to the child when the thread that forked it ends. A parent that
/// is already gone by the time the setting takes effect makes the spawn fail instead of leaving
/// an orphan.
pub(crate) fn set_parent_death_signal(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl and getppid are async-signal-safe; the closure runs in the child between fork
    // and exec, after any uid change (which would otherwise clear the setting).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("the test process ended during the spawn"));
            }
            Ok(())
        });
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on a thread that lives as long as the process and returns its result, so a child
/// forked inside `job` gets its parent-death signal only when the process dies.
pub(crate) fn on_keeper<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("process-keeper".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
                // The sender lives in a static, so this thread never gets here.
            })
            .expect("spawning the keeper thread");
        Mutex::new(tx)
    });
    let gone = || io::Error::other("the process keeper thread is gone");
    let (reply_tx, reply_rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = reply_tx.send(job());
    });
    keeper
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(job)
        .map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())
}

/// A `std::process::Child` that is killed and reaped when dropped. Derefs to the child, so
/// `kill`, `wait`, `id` and the pipes work as usual.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Both are no-ops once the child has been waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `tokio::process::Child` that is killed and reaped when dropped. Derefs to the child.
#[derive(Debug)]
pub struct AsyncChildGuard {
    child: tokio::process::Child,
}

impl AsyncChildGuard {
    /// Collects stdout and stderr (when piped) and waits for the child to exit, as
    /// `tokio::process::Child::wait_with_output` does; the child stays guarded meanwhile, so a
    /// test that gives up waiting (a timeout) still kills it.
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        use tokio::io::AsyncReadExt;
        async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut buf).await?;
            }
            Ok(buf)
        }
        let stdout = self.child.stdout.take();
        let stderr = self.child.stderr.take();
        let (status, stdout, stderr) =
            tokio::try_join!(self.child.wait(), read_all(stdout), read_all(stderr))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

impl Deref for AsyncChildGuard {
    type Target = tokio::process::Child;

    fn deref(&self) -> &tokio::process::Child {
        &self.child
    }
}

impl DerefMut for AsyncChildGuard {
    fn deref_mut(&mut self) -> &mut tokio::process::Child {
        &mut self.child
    }
}

impl Drop for AsyncChildGuard {
    fn drop(&mut self) {
        // Drop cannot await: kill, then reap with try_wait; a killed child is gone within
        // milliseconds.
        let _ = self.child.start_kill();
        let deadline = Instant::now() + REAP_DEADLINE;
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
