//! One simulated device: its packets, its socket task and what it measures.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ems_protocol::telemetry::Timestamp;
use ems_protocol::{
    Battery, Downstream, Grid, Mode, State, SystemStatus, Telemetry, parse_downstream,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) fn packet(device_id: &str, ts: Timestamp, i: u64) -> Telemetry {
    Telemetry {
        device_id: device_id.into(),
        timestamp: ts,
        system_status: SystemStatus {
            state: State::Charging,
            mode: Mode::Auto,
            error_flags: vec![],
            wifi_strength: Some(-45),
            schedule: None,
        },
        battery: Battery {
            voltage: Some(53.2),
            current: Some(10.5),
            power: Some(558.6),
            soc: Some((i % 100) as f64),
        },
        grid: Grid {
            voltage: Some(230.1),
            power: Some(-200.0),
            frequency: Some(50.0),
        },
        site: None,
    }
}

/// A device's telemetry frame serialised once ([`packet`] through `to_json`), with the parts
/// that change per packet (timestamp, SoC) filled in by string concatenation: the generator
/// shares the CPU with the server, so it should not spend it on JSON.
pub(crate) struct FrameTemplate {
    /// Text before the timestamp, between the timestamp and the SoC value, and after it.
    pub(crate) parts: [String; 3],
}

impl FrameTemplate {
    fn new(device_id: &str, base: i64) -> Self {
        const SOC_MARK: f64 = 42.125;
        let ts = Timestamp::from_unix(base).unwrap();
        let mut p = packet(device_id, ts, 0);
        p.battery.soc = Some(SOC_MARK);
        let json = p.to_json();
        let ts_text = format!("\"{ts}\"");
        let (pre, rest) = json.split_once(&ts_text).expect("timestamp in the frame");
        let (mid, post) = rest
            .split_once(&SOC_MARK.to_string())
            .expect("SoC in the frame");
        let template = FrameTemplate {
            parts: [pre.to_string(), mid.to_string(), post.to_string()],
        };
        let check = Timestamp::from_unix(base + 7).unwrap();
        assert_eq!(
            template.frame(base + 7, 7),
            packet(device_id, check, 7).to_json()
        );
        template
    }

    /// The same text as `packet(device_id, ts, i).to_json()`.
    fn frame(&self, unix: i64, i: u64) -> String {
        let ts = Timestamp::from_unix(unix).unwrap();
        let [pre, mid, post] = &self.parts;
        format!("{pre}\"{ts}\"{mid}{}{post}", i % 100)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    Connect,
    OneHz,
    /// No sending: the 1 Hz packets still in flight are acked before saturation starts, so
    /// their latency is not inflated by the saturation traffic.
    Drain,
    Saturate,
    Done,
}

/// Per device: send instants of unacknowledged packets, and latency samples (µs) per phase.
#[derive(Default)]
pub(crate) struct Track {
    pub(crate) pending: HashMap<i64, (Instant, usize)>,
    pub(crate) lat: [Vec<u32>; 2],
}

pub(crate) struct Shared {
    pub(crate) acks: [AtomicU64; 2],
    pub(crate) sent: [AtomicU64; 2],
    pub(crate) connected: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    pub(crate) connect_gate: Semaphore,
}

/// Where and how one device connects.
pub(crate) struct Link {
    pub(crate) url: String,
    /// The server's address (the URL's host and port).
    pub(crate) server: SocketAddr,
    /// The loopback address to connect from: one source address has only ~28,000 ephemeral
    /// ports towards one server port, so 100,000 sockets come from several (127.0.0.2, .3, …).
    pub(crate) source: Option<Ipv4Addr>,
    /// Sends in the 1 Hz and saturation phases; otherwise the socket only stays open (idle).
    pub(crate) active: bool,
}

async fn connect(
    link: &Link,
    req: &tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, String> {
    let Some(source) = link.source else {
        return tokio_tungstenite::connect_async(req.clone())
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| e.to_string());
    };
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    no_port_at_bind(&socket);
    socket
        .bind(SocketAddr::from((source, 0)))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket
        .connect(link.server)
        .await
        .map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async(req.clone(), MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// `IP_BIND_ADDRESS_NO_PORT`: the port is chosen at `connect`, by the whole four-tuple, instead
/// of at `bind`, where the kernel searches the source address's ports for a free one: with
/// tens of thousands bound that search made connecting crawl (70 % of the CPU in the kernel).
fn no_port_at_bind(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this function borrows, with a valid int option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn device_task(
    link: Link,
    id: String,
    token: String,
    base: i64,
    window: usize,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> [Vec<u32>; 2] {
    let mut req = link.url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let ws = {
        let _permit = shared.connect_gate.acquire().await.unwrap();
        let mut attempt = 0;
        loop {
            match connect(&link, &req).await {
                Ok(ws) => break ws,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing_warn(&format!("{id}: connect failed ({e}), retrying"));
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    eprintln!("{id}: connect failed: {e}");
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    return Default::default();
                }
            }
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let track = Arc::new(Mutex::new(Track::default()));
    let credits = Arc::new(Semaphore::new(0));

    let reader = {
        let track = track.clone();
        let shared = shared.clone();
        let credits = credits.clone();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Ok(Message::Text(text)) = msg else {
                    if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                        break;
                    }
                    continue;
                };
                if let Ok(Downstream::TelemetryAck(ack)) = parse_downstream(&text) {
                    let now = Instant::now();
                    let mut t = track.lock().unwrap();
                    for ts in ack.timestamps {
                        if let Some((sent, ph)) = t.pending.remove(&ts.unix()) {
                            let us = now.duration_since(sent).as_micros().min(u32::MAX as u128);
                            t.lat[ph].push(us as u32);
                            shared.acks[ph].fetch_add(1, Ordering::Relaxed);
                            // Only saturation packets free window space: credits for the
                            // 1 Hz packets would widen the window beyond EMS_BENCH_WINDOW.
                            if ph == 1 {
                                credits.add_permits(1);
                            }
                        }
                    }
                }
            }
        })
    };

    let mut seq: i64 = 0;
    let frames = FrameTemplate::new(&id, base);
    let send = |sink_seq: i64, ph: usize| {
        shared.sent[ph].fetch_add(1, Ordering::Relaxed);
        let ts = base + sink_seq;
        track
            .lock()
            .unwrap()
            .pending
            .insert(ts, (Instant::now(), ph));
        Message::Text(frames.frame(ts, sink_seq as u64))
    };

    if !link.active {
        // An idle device: the socket stays open (answering the server's pings) until the end.
        let _ = phase.wait_for(|p| *p == Phase::Done).await;
        let _ = sink.close().await;
        reader.abort();
        return Default::default();
    }
    // Wait for the 1 Hz phase.
    let _ = phase.wait_for(|p| *p != Phase::Connect).await;
    if *phase.borrow() == Phase::OneHz {
        // Spread the devices over the second.
        let offset = Duration::from_micros(rand_offset(&id) % 1_000_000);
        tokio::time::sleep(offset).await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let msg = send(seq, 0);
                    seq += 1;
                    if sink.send(msg).await.is_err() { break; }
                }
                _ = phase.changed() => break,
            }
        }
    }
    let _ = phase
        .wait_for(|p| !matches!(p, Phase::OneHz | Phase::Drain))
        .await;
    if *phase.borrow() == Phase::Saturate {
        credits.add_permits(window);
        loop {
            tokio::select! {
                permit = credits.acquire() => {
                    permit.unwrap().forget();
                    // Every packet the window allows now goes out in one write, as an agent
                    // sending its backlog does.
                    let more = credits.available_permits();
                    if more > 0 {
                        credits.try_acquire_many(more as u32).unwrap().forget();
                    }
                    let mut failed = false;
                    for _ in 0..=more {
                        let msg = send(seq, 1);
                        seq += 1;
                        if sink.feed(msg).await.is_err() { failed = true; break; }
                    }
                    if failed || sink.flush().await.is_err() { break; }
                }
                _ = phase.changed() => break,
            }
        }
    }
    let _ = phase.wait_for(|p| *p == Phase::Done).await;
    let _ = sink.close().await;
    reader.abort();
    let t = std::mem::take(&mut *track.lock().unwrap());
    t.lat
}

pub(crate) fn rand_offset(id: &str) -> u64 {
    // FNV-1a: a stable spread without a random number generator.
    id.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

pub(crate) fn tracing_warn(msg: &str) {
    if std::env::var_os("EMS_BENCH_VERBOSE").is_some() {
        eprintln!("{msg}");
    }
}
