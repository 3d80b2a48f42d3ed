//! Rules serde cannot express. Each failure names the key and why.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ems_driver_sdk::Role;
use tokio_tungstenite::tungstenite::http::Uri;

use super::ConfigError;
use super::model::{AgentConfig, BusConfig};

/// A `ws://` url is only for this machine: its host must be `localhost` or a loopback address.
/// The host is read by the same parser the uplink connects with, so the check and the
/// connection cannot disagree about it (`ws://127.0.0.1@example.com` is example.com).
fn check_plain_ws(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} names no host"))?
        .trim_matches(['[', ']']);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(format!(
        "{url:?} is plain ws:// to {host}, which is not this machine: the device token and every \
         command would cross the network unencrypted; use wss://, or set \
         uplink.allow_insecure = true on a network you trust"
    ))
}

pub fn check(c: &AgentConfig, file: &str) -> Result<(), ConfigError> {
    let err = |key: &str, reason: String| Err(ConfigError::new(file, key, reason));

    if let Err(e) = ems_protocol::validate_id("device_id", &c.device_id) {
        return err("device_id", e.to_string());
    }

    if let Some(listen) = &c.metrics.listen
        && let Err(e) = listen.parse::<std::net::SocketAddr>()
    {
        return err(
            "metrics.listen",
            format!("{listen:?} is not an ip:port address ({e})"),
        );
    }

    let b = &c.battery;
    let finite = [
        ("battery.soc_min_pct", b.soc_min_pct),
        ("battery.soc_max_pct", b.soc_max_pct),
        ("battery.soc_hysteresis_pct", b.soc_hysteresis_pct),
        ("battery.max_charge_power_w", b.max_charge_power_w),
        ("battery.max_discharge_power_w", b.max_discharge_power_w),
        ("battery.max_current_a", b.max_current_a),
        ("control.deadband_w", c.control.deadband_w),
        ("control.ramp_w_per_s", c.control.ramp_w_per_s),
        ("control.idle_threshold_w", c.control.idle_threshold_w),
        ("control.response_time_s", c.control.response_time_s),
        ("control.correction_gain", c.control.correction_gain),
        (
            "control.manual_fallback_after_s",
            c.control.manual_fallback_after_s,
        ),
        ("comm.loss_after_s", c.comm.loss_after_s),
        ("comm.backoff_max_s", c.comm.backoff_max_s),
        ("comm.call_budget_s", c.comm.call_budget_s),
        ("uplink.reconnect_max_s", c.uplink.reconnect_max_s),
    ];
    for (key, v) in finite {
        if !v.is_finite() || v < 0.0 {
            return err(key, format!("{v} must be a finite number >= 0"));
        }
    }
    if !(0.0..=100.0).contains(&b.soc_min_pct) || !(0.0..=100.0).contains(&b.soc_max_pct) {
        return err(
            "battery.soc_min_pct",
            "SoC limits must be within 0 to 100 %".into(),
        );
    }
    if b.soc_min_pct >= b.soc_max_pct {
        return err(
            "battery.soc_min_pct",
            format!(
                "{} % must be below soc_max_pct {} %",
                b.soc_min_pct, b.soc_max_pct
            ),
        );
    }
    if b.soc_hysteresis_pct >= b.soc_max_pct - b.soc_min_pct {
        return err(
            "battery.soc_hysteresis_pct",
            "must be smaller than the distance between soc_min_pct and soc_max_pct".into(),
        );
    }
    let volts = [
        ("battery.undervoltage_v", b.undervoltage_v),
        ("battery.discharge_voltage_min_v", b.discharge_voltage_min_v),
        ("battery.charge_voltage_max_v", b.charge_voltage_max_v),
        ("battery.overvoltage_v", b.overvoltage_v),
    ];
    for pair in volts.windows(2) {
        let ((k1, v1), (k2, v2)) = (pair[0], pair[1]);
        if !(v1.is_finite() && v2.is_finite()) || v1 >= v2 {
            return err(k1, format!("{v1} V must be below {k2} ({v2} V)"));
        }
    }
    if !(b.temperature_min_c < b.charge_temperature_min_c
        && b.charge_temperature_min_c < b.temperature_max_c)
    {
        return err(
            "battery.charge_temperature_min_c",
            "must lie between temperature_min_c and temperature_max_c".into(),
        );
    }
    if c.control.ramp_w_per_s == 0.0 {
        return err(
            "control.ramp_w_per_s",
            "must be above 0 or the battery never moves".into(),
        );
    }
    if c.control.correction_gain == 0.0 || c.control.correction_gain > 1.0 {
        return err(
            "control.correction_gain",
            format!(
                "{} must be above 0 (or AUTO never corrects) and at most 1 (more overshoots)",
                c.control.correction_gain
            ),
        );
    }
    if c.control.response_time_s > 10.0 {
        return err(
            "control.response_time_s",
            format!(
                "{} s is longer than any inverter and meter need (at most 10 s); AUTO would \
                 correct that seldom",
                c.control.response_time_s
            ),
        );
    }
    if let Err(p) = c.strategy.check(b) {
        return err(&format!("strategy.{}", p.key), p.reason);
    }
    if c.comm.loss_after_s < 1.0 {
        return err("comm.loss_after_s", "must be at least 1 s".into());
    }
    if c.comm.call_budget_s < 0.1 {
        return err("comm.call_budget_s", "must be at least 0.1 s".into());
    }
    let g = &c.grid;
    if g.frequency_min_hz >= g.frequency_max_hz {
        return err(
            "grid.frequency_min_hz",
            "must be below grid.frequency_max_hz".into(),
        );
    }
    if g.voltage_min_v >= g.voltage_max_v {
        return err(
            "grid.voltage_min_v",
            "must be below grid.voltage_max_v".into(),
        );
    }

    if let Some(url) = &c.uplink.url {
        if !(url.starts_with("wss://") || url.starts_with("ws://")) {
            return err(
                "uplink.url",
                format!("{url:?} must start with wss:// (or ws:// for development)"),
            );
        }
        if url.starts_with("ws://") && !c.uplink.allow_insecure {
            check_plain_ws(url).or_else(|reason| err("uplink.url", reason))?;
        }
    }
    if c.uplink.reconnect_max_s < 1.0 {
        return err("uplink.reconnect_max_s", "must be at least 1 s".into());
    }
    if c.uplink.queue_max_packets < 60 {
        return err(
            "uplink.queue_max_packets",
            "must hold at least 60 packets".into(),
        );
    }
    if c.uplink.url.is_some() && c.uplink.token_file.is_none() {
        return err(
            "uplink.token_file",
            "is required when uplink.url is set".into(),
        );
    }

    for (name, bus) in &c.buses {
        if let BusConfig::Rtu {
            baud,
            data_bits,
            stop_bits,
            ..
        } = bus
        {
            if *baud < 300 || *baud > 1_000_000 {
                return err(
                    &format!("buses.{name}.baud"),
                    format!("{baud} is not a usable baud rate (300 to 1000000)"),
                );
            }
            if !(5..=8).contains(data_bits) {
                return err(
                    &format!("buses.{name}.data_bits"),
                    format!("{data_bits} must be 5 to 8"),
                );
            }
            if !(1..=2).contains(stop_bits) {
                return err(
                    &format!("buses.{name}.stop_bits"),
                    format!("{stop_bits} must be 1 or 2"),
                );
            }
        }
    }

    let mut addresses: BTreeMap<(String, u8), String> = BTreeMap::new();
    let mut role_owner: BTreeMap<Role, String> = BTreeMap::new();
    for (name, d) in &c.devices {
        let key = |k: &str| format!("devices.{name}.{k}");
        let Some(bus) = c.buses.get(&d.bus) else {
            let known: Vec<&str> = c.buses.keys().map(String::as_str).collect();
            return err(
                &key("bus"),
                format!(
                    "bus {:?} does not exist (buses: {})",
                    d.bus,
                    known.join(", ")
                ),
            );
        };
        let addr = if bus.is_modbus() {
            if d.address.is_some() {
                return err(
                    &key("address"),
                    format!("bus {:?} is Modbus: use `unit`, not an I2C address", d.bus),
                );
            }
            // On a serial line 248..=255 are reserved; over TCP the unit id only routes through
            // a gateway, and devices speaking Modbus TCP themselves often answer at 255.
            let tcp = matches!(bus, BusConfig::Tcp { .. });
            let max = if tcp { 255 } else { 247 };
            match d.unit {
                Some(u) if (1..=max).contains(&u) => u,
                Some(u) => {
                    return err(
                        &key("unit"),
                        format!(
                            "{u} is not a Modbus unit id (1 to {max} on a {} bus)",
                            if tcp { "TCP" } else { "serial" }
                        ),
                    );
                }
                None => {
                    return err(
                        &key("unit"),
                        format!("is required on Modbus bus {:?}", d.bus),
                    );
                }
            }
        } else {
            if d.unit.is_some() {
                return err(
                    &key("unit"),
                    format!("bus {:?} is I2C: use `address`, not a Modbus unit", d.bus),
                );
            }
            match d.address {
                Some(a @ 0x03..=0x77) => a,
                Some(a) => {
                    return err(
                        &key("address"),
                        format!("{a:#04x} is not a 7-bit I2C device address (0x03 to 0x77)"),
                    );
                }
                None => {
                    return err(
                        &key("address"),
                        format!("is required on I2C bus {:?}", d.bus),
                    );
                }
            }
        };
        if let Some(other) = addresses.insert((d.bus.clone(), addr), name.clone()) {
            return err(
                &key(if bus.is_modbus() { "unit" } else { "address" }),
                format!(
                    "device {other:?} already uses address {addr} on bus {:?}",
                    d.bus
                ),
            );
        }
        if d.roles.is_empty() {
            return err(&key("roles"), "must name at least one role".into());
        }
        for role in &d.roles {
            if let Some(other) = role_owner.insert(*role, name.clone()) {
                return err(
                    &key("roles"),
                    format!("role {role:?} is already filled by device {other:?}"),
                );
            }
        }
        if d.poll_ms < 100 || d.poll_ms > 60_000 {
            return err(
                &key("poll_ms"),
                format!("{} ms must be 100 to 60000", d.poll_ms),
            );
        }
        if d.driver.trim().is_empty() {
            return err(&key("driver"), "must name a driver".into());
        }
    }
    if !c.devices.is_empty() && !role_owner.contains_key(&Role::Inverter) {
        return err(
            "devices",
            "no device fills the `inverter` role: nothing could carry out a battery setpoint"
                .into(),
        );
    }
    Ok(())
}
