//! A Modbus TCP server in front of the simulated RS-485 devices, as an RS-485-to-Ethernet
//! gateway would be: the MBAP header's unit id routes each request to the slave with that unit
//! id, and the same [`Responder`] answers it as on the RTU line, so both transports read the
//! same registers and physics.
//!
//! Framing (MODBUS Messaging on TCP/IP Implementation Guide V1.0b, 3.1.3): a 7-byte MBAP header
//! — transaction id, protocol id (0), length (unit id + PDU bytes), unit id — then the PDU.
//! The framing is written out here rather than taken from tokio-modbus's server: it is short,
//! it keeps the sim free of a second Modbus stack, and it lets the tests send malformed headers
//! and watch exactly what the server does with them.
//!
//! What the gateway answers:
//! - a request for a unit nobody answers to (absent, or silenced by fault injection): exception
//!   0x0B, "gateway target device failed to respond", as a gateway does after its serial-side
//!   timeout;
//! - a request to unit 0 (broadcast): carried out, never answered, as on the RTU line;
//! - a malformed header (protocol id ≠ 0, length < 2 or > 254): no answer, the connection is
//!   closed (the stream cannot be resynchronised after a bad length); a frame left incomplete
//!   for [`PARTIAL_FRAME_TIMEOUT`] closes the connection too.
//!
//! [`Gateway`] switches the server at run time: `Stalled` reads requests and never answers (a
//! hung gateway), `Down` closes every connection and the listening socket until it is `Up`
//! again on the same address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::rtu::Responder;

/// Length of the MBAP header, unit id included.
pub const MBAP_LEN: usize = 7;
/// Largest MBAP length field: the unit id plus a PDU of at most 253 bytes.
pub const MAX_LENGTH: u16 = 254;
/// Exception 0x0B: gateway target device failed to respond.
pub const GATEWAY_TARGET_FAILED: u8 = 0x0B;
/// A request whose bytes stop arriving halfway is given up after this long.
pub const PARTIAL_FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// One Modbus TCP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adu {
    pub transaction: u16,
    pub unit: u8,
    /// Function code and data; never empty in a parsed request.
    pub pdu: Vec<u8>,
}

/// A header the server cannot accept; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("MBAP protocol id {0} is not Modbus (0)")]
    ProtocolId(u16),
    #[error("MBAP length {0} is outside 2..=254 (unit id + PDU)")]
    Length(u16),
}

/// Takes one request off the front of `buf`: `Ok(None)` until it is complete.
pub fn take_adu(buf: &mut Vec<u8>) -> Result<Option<Adu>, FrameError> {
    if buf.len() < MBAP_LEN {
        return Ok(None);
    }
    let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let (transaction, protocol, length) = (be16(0), be16(2), be16(4));
    if protocol != 0 {
        return Err(FrameError::ProtocolId(protocol));
    }
    if !(2..=MAX_LENGTH).contains(&length) {
        return Err(FrameError::Length(length));
    }
    let total = MBAP_LEN - 1 + length as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let unit = buf[6];
    let pdu = buf[MBAP_LEN..total].to_vec();
    buf.drain(..total);
    Ok(Some(Adu {
        transaction,
        unit,
        pdu,
    }))
}

impl Adu {
    /// The frame on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MBAP_LEN + self.pdu.len());
        out.extend_from_slice(&self.transaction.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(self.pdu.len() as u16 + 1).to_be_bytes());
        out.push(self.unit);
        out.extend_from_slice(&self.pdu);
        out
    }
}

/// The gateway's answer to `request`, `None` for none (broadcast).
pub fn answer(responder: &mut dyn Responder, request: &Adu) -> Option<Adu> {
    let fc = *request.pdu.first()?;
    let pdu = responder.respond(request.unit, &request.pdu);
    if request.unit == 0 {
        return None;
    }
    Some(Adu {
        transaction: request.transaction,
        unit: request.unit,
        pdu: pdu.unwrap_or_else(|| vec![fc | 0x80, GATEWAY_TARGET_FAILED]),
    })
}

/// What the simulated gateway does; switched at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gateway {
    /// Answers requests.
    #[default]
    Up,
    /// Keeps connections open and reads requests but never answers.
    Stalled,
    /// Closes every connection and stops listening (connections are refused).
    Down,
}

/// Counters of the TCP server, for tests and the sim's status output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpStats {
    pub connections: u64,
    pub requests: u64,
    pub responses: u64,
    /// Connections closed for a malformed or incomplete frame.
    pub malformed: u64,
    /// Requests with a write function code (see [`crate::rtu::is_write_function`]).
    pub writes: u64,
}

/// Updates the counters (they live with the rest of the simulation state).
pub type StatsFn = Arc<dyn Fn(&dyn Fn(&mut TcpStats)) + Send + Sync>;

/// Serves Modbus TCP on `listener` until the task is dropped, one task per connection, each
/// with its own responder from `make_responder`. While `gateway` is `Down` the listening socket
/// is closed; it is bound again on the same address when it comes back up.
pub async fn serve<R>(
    listener: TcpListener,
    make_responder: impl Fn() -> R + Send + 'static,
    mut gateway: watch::Receiver<Gateway>,
    stats: StatsFn,
) where
    R: Responder + 'static,
{
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("Modbus TCP: listening socket has no address: {e}");
            return;
        }
    };
    let mut listener = Some(listener);
    // Dropping the set (with this task) closes every connection.
    let mut connections = JoinSet::new();
    loop {
        if *gateway.borrow_and_update() == Gateway::Down {
            listener = None;
            connections.abort_all();
            if gateway.wait_for(|g| *g != Gateway::Down).await.is_err() {
                return;
            }
            continue;
        }
        let Some(l) = &listener else {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!("Modbus TCP: cannot listen on {addr} again: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((conn, peer)) => {
                    stats(&|s| s.connections += 1);
                    tracing::debug!("Modbus TCP: connection from {peer}");
                    connections.spawn(serve_connection(
                        conn,
                        make_responder(),
                        gateway.clone(),
                        stats.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!("Modbus TCP: accept on {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            changed = gateway.changed() => if changed.is_err() { return },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error("closed by the client")]
    Closed,
    #[error("gateway down")]
    Down,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("incomplete frame for {0:?}")]
    Incomplete(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn serve_connection<R: Responder>(
    mut conn: TcpStream,
    mut responder: R,
    mut gateway: watch::Receiver<Gateway>,
    stats: StatsFn,
) {
    let _ = conn.set_nodelay(true);
    let end = connection_loop(&mut conn, &mut responder, &mut gateway, &stats).await;
    match end {
        ConnectionEnd::Frame(_) | ConnectionEnd::Incomplete(_) => {
            stats(&|s| s.malformed += 1);
            tracing::info!("Modbus TCP: closing the connection: {end}");
        }
        _ => tracing::debug!("Modbus TCP: connection ended: {end}"),
    }
}

async fn connection_loop<R: Responder>(
    conn: &mut TcpStream,
    responder: &mut R,
    gateway: &mut watch::Receiver<Gateway>,
    stats: &StatsFn,
) -> ConnectionEnd {
    let mut buf = Vec::with_capacity(2 * (MBAP_LEN + 253));
    let mut chunk = [0u8; 512];
    loop {
        loop {
            let request = match take_adu(&mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return e.into(),
            };
            stats(&|s| s.requests += 1);
            if request
                .pdu
                .first()
                .is_some_and(|&fc| crate::rtu::is_write_function(fc))
            {
                stats(&|s| s.writes += 1);
            }
            match *gateway.borrow() {
                Gateway::Up => {}
                Gateway::Stalled => continue,
                Gateway::Down => return ConnectionEnd::Down,
            }
            let Some(reply) = answer(responder, &request) else {
                continue;
            };
            if let Err(e) = conn.write_all(&reply.encode()).await {
                return e.into();
            }
            stats(&|s| s.responses += 1);
        }
        // `read` and `changed` are both cancel-safe: nothing is lost when the other wins.
        let read = async {
            if buf.is_empty() {
                Ok(conn.read(&mut chunk).await)
            } else {
                tokio::time::timeout(PARTIAL_FRAME_TIMEOUT, conn.read(&mut chunk)).await
            }
        };
        tokio::select! {
            n = read => match n {
                Err(_elapsed) => return ConnectionEnd::Incomplete(PARTIAL_FRAME_TIMEOUT),
                Ok(Err(e)) => return e.into(),
                Ok(Ok(0)) => return ConnectionEnd::Closed,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            },
            changed = gateway.changed() => {
                if changed.is_err() || *gateway.borrow() == Gateway::Down {
                    return ConnectionEnd::Down;
                }
            }
        }
    }
}

/// Binds `addr` (port 0 for a free port) for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit 1 answers every read with its unit id in each register; unit 5 never answers.
    struct Echo;
    impl Responder for Echo {
        fn respond(&mut self, unit: u8, pdu: &[u8]) -> Option<Vec<u8>> {
            if unit != 1 {
                return None;
            }
            let mut read = |_fc: u8, _addr: u16, n: u16| Ok(vec![unit as u16; n as usize]);
            let mut write = |_a: u16, _v: &[u16]| Ok(());
            Some(crate::rtu::serve_pdu(pdu, &mut read, &mut write))
        }
    }

    fn frame(transaction: u16, protocol: u16, length: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut out = vec![];
        out.extend_from_slice(&transaction.to_be_bytes());
        out.extend_from_slice(&protocol.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        out.push(unit);
        out.extend_from_slice(pdu);
        out
    }

    #[test]
    fn a_good_request_is_taken_whole_and_answered() {
        // Read 2 holding registers at 40000 from unit 1, then the first byte of the next one.
        let mut buf = frame(0x1234, 0, 6, 1, &[0x03, 0x9C, 0x40, 0x00, 0x02]);
        buf.push(0x00);
        let adu = take_adu(&mut buf).unwrap().unwrap();
        assert_eq!(
            adu,
            Adu {
                transaction: 0x1234,
                unit: 1,
                pdu: vec![0x03, 0x9C, 0x40, 0x00, 0x02]
            }
        );
        assert_eq!(buf, vec![0x00], "the next frame's bytes stay");
        let reply = answer(&mut Echo, &adu).unwrap();
        assert_eq!(
            reply.encode(),
            frame(0x1234, 0, 7, 1, &[0x03, 4, 0, 1, 0, 1])
        );
    }

    #[test]
    fn an_incomplete_request_waits_for_more() {
        let full = frame(7, 0, 6, 1, &[0x04, 0, 0, 0, 2]);
        for cut in 0..full.len() {
            let mut buf = full[..cut].to_vec();
            assert_eq!(take_adu(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn a_bad_protocol_id_is_refused() {
        let mut buf = frame(1, 1, 6, 1, &[0x03, 0, 0, 0, 1]);
        assert_eq!(take_adu(&mut buf), Err(FrameError::ProtocolId(1)));
    }

    #[test]
    fn a_bad_length_is_refused() {
        for length in [0, 1, 255, 0xFFFF] {
            let mut buf = frame(1, 0, length, 1, &[0x03, 0, 0, 0, 1]);
            assert_eq!(
                take_adu(&mut buf),
                Err(FrameError::Length(length)),
                "{length}"
            );
        }
        // 254 is the largest legal length: it waits for the rest.
        let mut buf = frame(1, 0, 254, 1, &[0x10]);
        assert_eq!(take_adu(&mut buf), Ok(None));
    }

    #[test]
    fn an_unknown_unit_gets_gateway_exception_0x0b() {
        let adu = Adu {
            transaction: 9,
            unit: 5,
            pdu: vec![0x04, 0, 0, 0, 2],
        };
        assert_eq!(
            answer(&mut Echo, &adu),
            Some(Adu {
                transaction: 9,
                unit: 5,
                pdu: vec![0x84, GATEWAY_TARGET_FAILED]
            })
        );
        // Broadcast: never answered.
        let broadcast = Adu { unit: 0, ..adu };
        assert_eq!(answer(&mut Echo, &broadcast), None);
    }

    async fn exchange(conn: &mut TcpStream, request: &[u8]) -> Vec<u8> {
        conn.write_all(request).await.unwrap();
        let mut head = [0u8; MBAP_LEN];
        conn.read_exact(&mut head).await.unwrap();
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let mut rest = vec![0u8; len - 1];
        conn.read_exact(&mut rest).await.unwrap();
        [head.to_vec(), rest].concat()
    }

    async fn closed(conn: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), conn.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    fn start() -> (
        SocketAddr,
        watch::Sender<Gateway>,
        Arc<std::sync::Mutex<TcpStats>>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let (tx, rx) = watch::channel(Gateway::Up);
        let counters = Arc::new(std::sync::Mutex::new(TcpStats::default()));
        let c = counters.clone();
        let stats: StatsFn = Arc::new(move |f| f(&mut c.lock().unwrap()));
        tokio::spawn(serve(listener, || Echo, rx, stats));
        (addr, tx, counters)
    }

    #[tokio::test]
    async fn concurrent_clients_and_malformed_headers_over_a_socket() {
        let (addr, _gateway, counters) = start();
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        // Both clients send before either reads: each gets its own answer.
        a.write_all(&frame(1, 0, 6, 1, &[0x03, 0, 0, 0, 1]))
            .await
            .unwrap();
        let from_b = exchange(&mut b, &frame(2, 0, 6, 1, &[0x03, 0, 0, 0, 2])).await;
        assert_eq!(from_b, frame(2, 0, 7, 1, &[0x03, 4, 0, 1, 0, 1]));
        let from_a = exchange(&mut a, &[]).await;
        assert_eq!(from_a, frame(1, 0, 5, 1, &[0x03, 2, 0, 1]));
        // An unknown unit on the same connection: exception 0x0B, the connection stays.
        let reply = exchange(&mut a, &frame(3, 0, 6, 7, &[0x03, 0, 0, 0, 1])).await;
        assert_eq!(reply, frame(3, 0, 3, 7, &[0x83, 0x0B]));
        // A bad protocol id closes that connection only.
        a.write_all(&frame(4, 9, 6, 1, &[0x03, 0, 0, 0, 1]))
            .await
            .unwrap();
        assert!(closed(&mut a).await, "connection a stays open");
        // So does a bad length.
        b.write_all(&frame(5, 0, 0, 1, &[])).await.unwrap();
        assert!(closed(&mut b).await, "connection b stays open");
        // The server still serves new connections.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let reply = exchange(&mut c, &frame(6, 0, 6, 1, &[0x04, 0, 0, 0, 1])).await;
        assert_eq!(reply, frame(6, 0, 5, 1, &[0x04, 2, 0, 1]));
        let s = counters.lock().unwrap().clone();
        assert_eq!(
            (s.connections, s.malformed, s.responses),
            (3, 2, 4),
            "{s:?}"
        );
    }

    #[tokio::test]
    async fn down_closes_connections_and_up_listens_again() {
        let (addr, gateway, _) = start();
        let mut a = TcpStream::connect(addr).await.unwrap();
        exchange(&mut a, &frame(1, 0, 6, 1, &[0x03, 0, 0, 0, 1])).await;
        gateway.send_replace(Gateway::Down);
        assert!(closed(&mut a).await, "an idle connection stays open");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gateway.send_replace(Gateway::Up);
        let mut b = loop {
            match TcpStream::connect(addr).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "not back: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let reply = exchange(&mut b, &frame(2, 0, 6, 1, &[0x03, 0, 0, 0, 1])).await;
        assert_eq!(reply, frame(2, 0, 5, 1, &[0x03, 2, 0, 1]));
    }
}
