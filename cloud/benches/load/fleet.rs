//! The simulated devices: in this process, or, when one process may not open as many sockets as
//! there are devices (its open-file limit), spread over child processes of this same bench
//! binary, each holding one block of devices and driven over its stdin and stdout:
//!
//! ```text
//! parent → child: phase <name> | report | done
//! child → parent: counts <acks 1 Hz> <acks sat> <sent 1 Hz> <sent sat> <connected> <failed>
//!                 lat0 <µs> <µs> …   lat1 <µs> …   end        (after done)
//! ```

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::device::{Link, Phase, Shared, device_task};

/// Set in a child process: the file listing its devices.
pub(crate) const CHILD_ENV: &str = "EMS_BENCH_CLIENT_FILE";

/// One device of the fleet and where it connects.
#[derive(Debug, Clone)]
pub(crate) struct DeviceSpec {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) port: u16,
    pub(crate) source: Option<Ipv4Addr>,
    pub(crate) active: bool,
}

impl DeviceSpec {
    fn line(&self) -> String {
        let source = self.source.map_or("-".to_string(), |s| s.to_string());
        format!(
            "{} {} {} {source} {}\n",
            self.id, self.token, self.port, self.active as u8
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut f = line.split_whitespace();
        let id = f.next()?.to_string();
        let token = f.next()?.to_string();
        let port = f.next()?.parse().ok()?;
        let source = match f.next()? {
            "-" => None,
            s => Some(s.parse().ok()?),
        };
        let active = f.next()? == "1";
        Some(DeviceSpec {
            id,
            token,
            port,
            source,
            active,
        })
    }
}

/// What the devices counted so far.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) acks: [u64; 2],
    pub(crate) sent: [u64; 2],
    pub(crate) connected: usize,
    pub(crate) failed: usize,
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Connect => "connect",
        Phase::OneHz => "1hz",
        Phase::Drain => "drain",
        Phase::Saturate => "saturate",
        Phase::Done => "done",
    }
}

fn phase_of(name: &str) -> Option<Phase> {
    [
        Phase::Connect,
        Phase::OneHz,
        Phase::Drain,
        Phase::Saturate,
        Phase::Done,
    ]
    .into_iter()
    .find(|p| phase_name(*p) == name)
}

/// Devices running in this process.
pub(crate) struct Local {
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    tasks: Vec<JoinHandle<[Vec<u32>; 2]>>,
}

impl Local {
    fn start(specs: Vec<DeviceSpec>, base: i64, window: usize) -> Self {
        let shared = Arc::new(Shared {
            acks: [AtomicU64::new(0), AtomicU64::new(0)],
            sent: [AtomicU64::new(0), AtomicU64::new(0)],
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            connect_gate: Semaphore::new(64),
        });
        let (phase, phase_rx) = watch::channel(Phase::Connect);
        let tasks = specs
            .into_iter()
            .map(|d| {
                tokio::spawn(device_task(
                    Link {
                        url: format!("ws://127.0.0.1:{}/ws/device/{}", d.port, d.id),
                        server: std::net::SocketAddr::from(([127, 0, 0, 1], d.port)),
                        source: d.source,
                        active: d.active,
                    },
                    d.id,
                    d.token,
                    base,
                    window,
                    shared.clone(),
                    phase_rx.clone(),
                ))
            })
            .collect();
        Local {
            shared,
            phase,
            tasks,
        }
    }

    fn counts(&self) -> Counts {
        let s = &self.shared;
        Counts {
            acks: [0, 1].map(|i| s.acks[i].load(Ordering::Relaxed)),
            sent: [0, 1].map(|i| s.sent[i].load(Ordering::Relaxed)),
            connected: s.connected.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }

    async fn finish(self) -> [Vec<u32>; 2] {
        self.phase.send_replace(Phase::Done);
        let mut lat: [Vec<u32>; 2] = Default::default();
        for t in self.tasks {
            if let Ok(l) = t.await {
                for (all, mine) in lat.iter_mut().zip(l) {
                    all.extend(mine);
                }
            }
        }
        lat
    }
}

/// A child process holding one block of devices.
pub(crate) struct Remote {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    file: PathBuf,
}

impl Remote {
    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("writing to a client process");
        self.stdin
            .flush()
            .await
            .expect("writing to a client process");
    }

    async fn line(&mut self) -> String {
        self.lines
            .next_line()
            .await
            .expect("reading a client process")
            .expect("a client process ended early (see its errors above)")
    }
}

/// All the devices, wherever they run.
pub(crate) enum Fleet {
    Local(Local),
    Children(Vec<Remote>),
}

impl Fleet {
    /// Starts `specs` in this process when they fit `per_process` sockets, else in
    /// `specs.len() / per_process` (rounded up) child processes, in consecutive blocks.
    pub(crate) fn start(
        specs: Vec<DeviceSpec>,
        per_process: usize,
        base: i64,
        window: usize,
    ) -> Fleet {
        if specs.len() <= per_process {
            return Fleet::Local(Local::start(specs, base, window));
        }
        let exe = std::env::current_exe().expect("the bench's own path");
        let children = specs
            .chunks(per_process)
            .enumerate()
            .map(|(k, block)| {
                let file = std::env::temp_dir()
                    .join(format!("ems-load-{}-client{k}.txt", std::process::id()));
                let mut f = std::fs::File::create(&file).expect("writing the device list");
                for d in block {
                    f.write_all(d.line().as_bytes()).unwrap();
                }
                let mut child = tokio::process::Command::new(&exe)
                    .env(CHILD_ENV, &file)
                    .env("EMS_BENCH_BASE", base.to_string())
                    .env("EMS_BENCH_WINDOW", window.to_string())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("starting a client process");
                let stdin = child.stdin.take().unwrap();
                let lines = BufReader::new(child.stdout.take().unwrap()).lines();
                Remote {
                    child,
                    stdin,
                    lines,
                    file,
                }
            })
            .collect();
        Fleet::Children(children)
    }

    /// How many processes hold the devices.
    pub(crate) fn processes(&self) -> usize {
        match self {
            Fleet::Local(_) => 1,
            Fleet::Children(c) => c.len(),
        }
    }

    pub(crate) async fn set_phase(&mut self, p: Phase) {
        match self {
            Fleet::Local(l) => {
                l.phase.send_replace(p);
            }
            Fleet::Children(children) => {
                for c in children {
                    c.say(&format!("phase {}", phase_name(p))).await;
                }
            }
        }
    }

    pub(crate) async fn counts(&mut self) -> Counts {
        match self {
            Fleet::Local(l) => l.counts(),
            Fleet::Children(children) => {
                let mut sum = Counts::default();
                for c in children.iter_mut() {
                    c.say("report").await;
                }
                for c in children {
                    let line = c.line().await;
                    let v: Vec<u64> = line
                        .strip_prefix("counts ")
                        .unwrap_or_else(|| panic!("a client process said {line:?}"))
                        .split_whitespace()
                        .map(|x| x.parse().unwrap())
                        .collect();
                    for i in 0..2 {
                        sum.acks[i] += v[i];
                        sum.sent[i] += v[2 + i];
                    }
                    sum.connected += v[4] as usize;
                    sum.failed += v[5] as usize;
                }
                sum
            }
        }
    }

    /// Ends every device and collects the send→ack latencies (µs) of both phases.
    pub(crate) async fn finish(self) -> [Vec<u32>; 2] {
        match self {
            Fleet::Local(l) => l.finish().await,
            Fleet::Children(children) => {
                let mut lat: [Vec<u32>; 2] = Default::default();
                let mut children = children;
                for c in &mut children {
                    c.say("done").await;
                }
                for mut c in children {
                    loop {
                        let line = c.line().await;
                        if line == "end" {
                            break;
                        }
                        let (which, values) = line.split_once(' ').unwrap_or((&line, ""));
                        let slot = match which {
                            "lat0" => 0,
                            "lat1" => 1,
                            other => panic!("a client process said {other:?}"),
                        };
                        lat[slot].extend(
                            values.split_whitespace().map(|v| {
                                v.parse::<u32>().expect("a latency from a client process")
                            }),
                        );
                    }
                    let _ = c.child.wait().await;
                    let _ = std::fs::remove_file(&c.file);
                }
                lat
            }
        }
    }
}

/// A child process's whole life: its devices from the file, commands from stdin.
pub(crate) async fn run_child(file: &str) {
    let text = std::fs::read_to_string(file).expect("the device list");
    let specs: Vec<DeviceSpec> = text
        .lines()
        .map(|l| DeviceSpec::parse(l).unwrap_or_else(|| panic!("bad device line {l:?}")))
        .collect();
    let base = crate::server::env_or("EMS_BENCH_BASE", 0) as i64;
    let window = crate::server::env_or("EMS_BENCH_WINDOW", 8) as usize;
    let local = Local::start(specs, base, window);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Ok(Some(line)) = stdin.next_line().await {
        let reply = match line.split_once(' ') {
            Some(("phase", name)) => {
                let p = phase_of(name).unwrap_or_else(|| panic!("unknown phase {name:?}"));
                local.phase.send_replace(p);
                None
            }
            _ if line == "report" => {
                let c = local.counts();
                Some(format!(
                    "counts {} {} {} {} {} {}\n",
                    c.acks[0], c.acks[1], c.sent[0], c.sent[1], c.connected, c.failed
                ))
            }
            _ if line == "done" => {
                let lat = local.finish().await;
                for (k, l) in lat.iter().enumerate() {
                    let mut text = format!("lat{k}");
                    for v in l {
                        text.push(' ');
                        text.push_str(&v.to_string());
                    }
                    text.push('\n');
                    out.write_all(text.as_bytes()).await.unwrap();
                }
                out.write_all(b"end\n").await.unwrap();
                out.flush().await.unwrap();
                return;
            }
            _ => panic!("unknown command {line:?}"),
        };
        if let Some(reply) = reply {
            out.write_all(reply.as_bytes()).await.unwrap();
            out.flush().await.unwrap();
        }
    }
}
