//! The simulated site on a directory of device paths:
//! - `<dir>/rs485`: symlink to the pseudo-terminal of the RS-485 bus (SunSpec inverter + battery
//!   at unit 1, SDM630 grid meter at unit 2 by default; answered only when the port is set to the
//!   line's baud rate, 19200 by default);
//! - `<dir>/i2c.sock`: the simulated I2C bus with an INA226 at 0x40;
//! - `<dir>/control.sock`: line commands for fault injection at run time (see `sim/README.md`);
//! - optionally a Modbus TCP server (an RS-485-to-Ethernet gateway) in front of the same slaves.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ems_driver_sdk::i2c_socket::{self, FrameError, Header, Op};
use ems_testkit::pty::PtyPair;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ina226::Ina226;
use crate::physics::{Site, SiteParams};
use crate::rtu::{self, LineFaults, LineStats, Responder};
use crate::sdm630;
use crate::sunspec::SunSpecDevice;
use crate::tcp::{self, Gateway, TcpStats};

/// Options of a simulated site.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub dir: PathBuf,
    pub baud: u32,
    pub inverter_unit: u8,
    pub meter_unit: u8,
    pub ina226_address: u8,
    pub ina226_shunt_ohms: f64,
    /// Divider in front of the INA226's VBUS pin (the agent's `voltage_divider` must match).
    pub ina226_divider: f64,
    pub initial_soc_pct: f64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Battery temperature that raises the BMS over-temperature alarm, °C.
    pub over_temp_c: f64,
    pub params: SiteParams,
    /// Also serve the RS-485 slaves over Modbus TCP on this address (port 0: a free port; the
    /// bound address is [`SimSite::modbus_tcp_addr`]).
    pub modbus_tcp: Option<SocketAddr>,
}

impl SimOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SimOptions {
            dir: dir.into(),
            baud: 19200,
            inverter_unit: 1,
            meter_unit: 2,
            ina226_address: 0x40,
            ina226_shunt_ohms: 0.001,
            ina226_divider: 2.0,
            initial_soc_pct: 50.0,
            speed: 1.0,
            over_temp_c: 50.0,
            params: SiteParams::default(),
            modbus_tcp: None,
        }
    }
}

/// Everything the device tasks share.
pub struct SimState {
    pub site: Site,
    pub inverter: SunSpecDevice,
    pub ina226: Ina226,
    pub meter_unit: u8,
    pub silent_units: HashSet<u8>,
    pub i2c_silent: bool,
    pub line_faults: LineFaults,
    pub stats: LineStats,
    /// The Modbus TCP gateway's state (up, stalled, down); `send_replace` switches it.
    pub gateway: watch::Sender<Gateway>,
    pub tcp_stats: TcpStats,
}

/// A running simulated site. Dropping it stops its tasks.
pub struct SimSite {
    state: Arc<Mutex<SimState>>,
    pub rs485_path: PathBuf,
    pub pty_path: PathBuf,
    pub i2c_path: PathBuf,
    pub control_path: PathBuf,
    /// Where the Modbus TCP server listens, if [`SimOptions::modbus_tcp`] asked for one.
    pub modbus_tcp_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SimSite {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SimSite {
    /// Creates the device paths in `opts.dir` and starts serving.
    pub async fn start(opts: SimOptions) -> std::io::Result<SimSite> {
        std::fs::create_dir_all(&opts.dir)?;
        let pair = PtyPair::open()?;
        let (master, slave_fd, pty_path) = pair.into_master_stream()?;
        let rs485_path = opts.dir.join("rs485");
        let _ = std::fs::remove_file(&rs485_path);
        std::os::unix::fs::symlink(&pty_path, &rs485_path)?;

        let state = Arc::new(Mutex::new(SimState {
            site: Site::new(opts.params.clone(), opts.initial_soc_pct),
            inverter: {
                let mut inv =
                    SunSpecDevice::new(opts.inverter_unit, opts.params.inverter_max_charge_w);
                inv.over_temp_c = opts.over_temp_c;
                inv
            },
            ina226: Ina226::new(
                opts.ina226_address,
                opts.ina226_shunt_ohms,
                opts.ina226_divider,
            ),
            meter_unit: opts.meter_unit,
            silent_units: HashSet::new(),
            i2c_silent: false,
            line_faults: LineFaults::default(),
            stats: LineStats::default(),
            gateway: watch::Sender::new(Gateway::Up),
            tcp_stats: TcpStats::default(),
        }));
        let mut tasks = Vec::new();

        // Physics clock.
        let st = state.clone();
        let speed = opts.speed;
        tasks.push(tokio::spawn(async move {
            let mut last = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                let now = Instant::now();
                let dt = (now - last).as_secs_f64() * speed;
                last = now;
                let mut s = lock(&st);
                s.site.advance(dt);
                let SimState { site, inverter, .. } = &mut *s;
                inverter.update_alarms(site);
            }
        }));

        // RS-485 line. The slave fd stays open in this task so the master never sees EIO
        // while the agent reconnects.
        let st = state.clone();
        let baud = opts.baud;
        tasks.push(tokio::spawn(async move {
            let mut responder = SharedResponder(st.clone());
            let faults_state = st.clone();
            let stats_state = st.clone();
            let result = rtu::serve(
                master,
                baud,
                &mut responder,
                move || lock(&faults_state).line_faults.clone(),
                move |f| f(&mut lock(&stats_state).stats),
                move || rtu::tty_baud(&slave_fd),
            )
            .await;
            if let Err(e) = result {
                tracing::error!("RS-485 line stopped: {e}");
            }
        }));

        // I2C bus socket.
        let i2c_path = opts.dir.join("i2c.sock");
        let _ = std::fs::remove_file(&i2c_path);
        let listener = UnixListener::bind(&i2c_path)?;
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_i2c(conn, st.clone()));
            }
        }));

        // Control socket.
        let control_path = opts.dir.join("control.sock");
        let _ = std::fs::remove_file(&control_path);
        let listener = UnixListener::bind(&control_path)?;
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_control(conn, st.clone()));
            }
        }));

        // Modbus TCP gateway in front of the same slaves.
        let modbus_tcp_addr = match opts.modbus_tcp {
            None => None,
            Some(addr) => {
                let (listener, bound) = tcp::bind(addr).await?;
                let gateway = lock(&state).gateway.subscribe();
                let st = state.clone();
                let make_responder = move || SharedResponder(st.clone());
                let st = state.clone();
                let stats: tcp::StatsFn = Arc::new(move |f| f(&mut lock(&st).tcp_stats));
                tasks.push(tokio::spawn(tcp::serve(
                    listener,
                    make_responder,
                    gateway,
                    stats,
                )));
                Some(bound)
            }
        };

        Ok(SimSite {
            state,
            rs485_path,
            pty_path,
            i2c_path,
            control_path,
            modbus_tcp_addr,
            tasks,
        })
    }

    /// Direct access to the simulation, for tests and fault injection.
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.state)
    }

    pub fn dir(&self) -> &Path {
        self.rs485_path
            .parent()
            .expect("rs485 lives in the sim dir")
    }
}

fn lock(st: &Mutex<SimState>) -> MutexGuard<'_, SimState> {
    st.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct SharedResponder(Arc<Mutex<SimState>>);

impl Responder for SharedResponder {
    fn respond(&mut self, unit: u8, pdu: &[u8]) -> Option<Vec<u8>> {
        let mut guard = lock(&self.0);
        let s = &mut *guard;
        if s.silent_units.contains(&unit) || pdu.is_empty() {
            return None;
        }
        if unit == s.inverter.unit || unit == 0 {
            let SimState { site, inverter, .. } = s;
            let site_ro = site.clone();
            let inv_ro = inverter.clone();
            let mut read = |fc: u8, addr: u16, n: u16| {
                if fc == 0x03 {
                    inv_ro.read(&site_ro, addr, n)
                } else {
                    Err(2)
                }
            };
            let mut write = |addr: u16, values: &[u16]| inverter.write(site, addr, values);
            return Some(rtu::serve_pdu(pdu, &mut read, &mut write));
        }
        if unit == s.meter_unit {
            let site = &s.site;
            let mut read = |fc: u8, addr: u16, n: u16| {
                if fc == 0x04 {
                    sdm630::read_input(site, addr, n)
                } else {
                    Err(2)
                }
            };
            let mut write = |_addr: u16, _values: &[u16]| Err(2);
            return Some(rtu::serve_pdu(pdu, &mut read, &mut write));
        }
        None
    }
}

async fn serve_i2c(mut conn: UnixStream, st: Arc<Mutex<SimState>>) {
    loop {
        let mut head = [0u8; i2c_socket::HEADER_LEN];
        if conn.read_exact(&mut head).await.is_err() {
            return;
        }
        // An unknown operation is answered with a NACK once its data is read; lengths out of
        // range mean the peer does not speak this protocol.
        let (header, write_len) = match Header::decode(&head) {
            Ok(header) => (Some(header), usize::from(header.write_len)),
            Err(FrameError::UnknownOp { write_len, .. }) => (None, write_len),
            Err(FrameError::OutOfRange { .. }) => return,
        };
        let mut data = vec![0u8; write_len];
        if conn.read_exact(&mut data).await.is_err() {
            return;
        }
        let reply = {
            let mut s = lock(&st);
            match header {
                Some(h) if !s.i2c_silent && h.addr7 == s.ina226.address => {
                    let ok = match h.op {
                        Op::Write | Op::WriteRead => s.ina226.write(&data),
                        Op::Read => true,
                    };
                    if ok {
                        let mut out = vec![i2c_socket::STATUS_OK];
                        out.extend(s.ina226.read(&s.site, h.response_len()));
                        out
                    } else {
                        vec![i2c_socket::STATUS_NACK]
                    }
                }
                _ => vec![i2c_socket::STATUS_NACK],
            }
        };
        if conn.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Control commands, one per line; answers `ok` or `error: …`.
///
/// `soc <pct>`, `pv <W>|auto`, `load <W>|auto`, `temperature <°C>`, `bms-alarm on|off`,
/// `grid-frequency <Hz>`, `silent <unit> on|off`, `i2c-silent on|off`, `crc-rate <0..1>`,
/// `drop-rate <0..1>`, `modbus-tcp up|stall|down`, `status`.
pub fn apply_command(s: &mut SimState, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |w: Option<&&str>| -> Result<f64, String> {
        w.ok_or("missing value")?
            .parse::<f64>()
            .map_err(|e| e.to_string())
    };
    let on = |w: Option<&&str>| match w.copied() {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err("expected on or off".to_string()),
    };
    let opt = |w: Option<&&str>| -> Result<Option<f64>, String> {
        match w.copied() {
            Some("auto") => Ok(None),
            _ => num(w).map(Some),
        }
    };
    match words.first().copied() {
        Some("soc") => {
            let pct = num(words.get(1))?.clamp(0.0, 100.0);
            s.site.energy_wh = s.site.params.capacity_wh * pct / 100.0;
        }
        Some("pv") => s.site.pv_override_w = opt(words.get(1))?,
        Some("load") => s.site.load_override_w = opt(words.get(1))?,
        Some("temperature") => s.site.temperature_c = num(words.get(1))?,
        Some("bms-alarm") => s.site.bms_alarm = on(words.get(1))?,
        Some("grid-frequency") => s.site.grid_frequency_hz = num(words.get(1))?,
        Some("silent") => {
            let unit = num(words.get(1))? as u8;
            if on(words.get(2))? {
                s.silent_units.insert(unit);
            } else {
                s.silent_units.remove(&unit);
            }
        }
        Some("i2c-silent") => s.i2c_silent = on(words.get(1))?,
        Some("crc-rate") => s.line_faults.corrupt_rate = num(words.get(1))?.clamp(0.0, 1.0),
        Some("drop-rate") => s.line_faults.drop_rate = num(words.get(1))?.clamp(0.0, 1.0),
        Some("modbus-tcp") => {
            let state = match words.get(1).copied() {
                Some("up") => Gateway::Up,
                Some("stall") => Gateway::Stalled,
                Some("down") => Gateway::Down,
                _ => return Err("expected up, stall or down".into()),
            };
            s.gateway.send_replace(state);
        }
        Some("status") => {
            let site = &s.site;
            return Ok(format!(
                "soc={:.2}% battery={:.1}W voltage={:.2}V current={:.2}A temp={:.1}C grid={:.1}W pv={:.1}W load={:.1}W setpoint={:.1}W stats={:?} tcp={:?}",
                site.soc_pct(),
                site.battery_dc_w(),
                site.battery_voltage_v(),
                site.battery_current_a(),
                site.temperature_c,
                site.grid_w(),
                site.pv_w(),
                site.load_w(),
                site.setpoint_w,
                s.stats,
                s.tcp_stats
            ));
        }
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("empty command".into()),
    }
    Ok("ok".into())
}

async fn serve_control(conn: UnixStream, st: Arc<Mutex<SimState>>) {
    let (read, mut write) = conn.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match apply_command(&mut lock(&st), &line) {
            Ok(a) => a,
            Err(e) => format!("error: {e}"),
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::Adu;

    async fn call(conn: &mut tokio::net::TcpStream, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let request = Adu {
            transaction: 1,
            unit,
            pdu: pdu.to_vec(),
        };
        conn.write_all(&request.encode()).await.unwrap();
        let mut head = [0u8; tcp::MBAP_LEN];
        conn.read_exact(&mut head).await.unwrap();
        assert_eq!(head[6], unit);
        let mut pdu = vec![0u8; u16::from_be_bytes([head[4], head[5]]) as usize - 1];
        conn.read_exact(&mut pdu).await.unwrap();
        pdu
    }

    #[tokio::test]
    async fn modbus_tcp_reaches_the_same_slaves_as_the_rs485_line() {
        let dir = std::env::temp_dir().join(format!("ems-sim-tcp-{}", std::process::id()));
        let mut opts = SimOptions::new(&dir);
        opts.modbus_tcp = Some("127.0.0.1:0".parse().unwrap());
        let sim = SimSite::start(opts).await.unwrap();
        let addr = sim.modbus_tcp_addr.expect("bound address");
        assert_ne!(addr.port(), 0);
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();

        // Unit 1: the SunSpec marker "SunS" at 40000.
        let pdu = call(&mut conn, 1, &[0x03, 0x9C, 0x40, 0, 2]).await;
        assert_eq!(pdu, vec![0x03, 4, b'S', b'u', b'n', b'S']);
        // Unit 2: the SDM630's input registers, as the register map computes them.
        let pdu = call(&mut conn, 2, &[0x04, 0, 0, 0, 2]).await;
        let expected = sdm630::read_input(&sim.state().site, 0, 2).unwrap();
        assert_eq!(pdu[..2], [0x04, 4]);
        assert_eq!(
            u16::from_be_bytes([pdu[2], pdu[3]]),
            expected[0],
            "phase 1 voltage, high word"
        );
        // A silenced unit and an absent one: the gateway's exception 0x0B.
        sim.state().silent_units.insert(2);
        assert_eq!(call(&mut conn, 2, &[0x04, 0, 0, 0, 2]).await, [0x84, 0x0B]);
        assert_eq!(call(&mut conn, 9, &[0x03, 0, 0, 0, 1]).await, [0x83, 0x0B]);
        // A write (to a register that is not writable) is counted as a write, refused or not.
        assert_eq!(call(&mut conn, 1, &[0x06, 0, 0, 0, 1]).await, [0x86, 2]);
        let stats = sim.state().tcp_stats.clone();
        assert_eq!(
            (stats.connections, stats.responses, stats.writes),
            (1, 5, 1),
            "{stats:?}"
        );
        drop(sim);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
