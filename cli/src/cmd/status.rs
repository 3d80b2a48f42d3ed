//! `status`: the device's presence, its newest stored packet, the manual mode it holds with its
//! lease (from the newest accepted `SET_MODE`, see [`render::mode_hold`]), and the schedule
//! window in force when the packet names one (`system_status.schedule`).

use chrono::Utc;
use ems_protocol::Telemetry;
use ems_protocol::api::{CommandRecord, DeviceInfo};
use serde::Serialize;

use super::Ctx;
use crate::cli::Format;
use crate::exit::Exit;
use crate::output::{self, Table, pairs};
use crate::render;

/// `--output json` shape of `status`.
#[derive(Serialize)]
struct StatusJson<'a> {
    device: &'a DeviceInfo,
    /// The newest packet, spec shape; `null` before the first.
    telemetry: Option<&'a Telemetry>,
    /// Seconds between the packet's timestamp and now.
    age_s: Option<i64>,
    /// The manual mode held and until when; `null` when none (AUTO).
    lease: Option<&'a render::ModeHold>,
}

/// Accepted commands looked through for the newest `SET_MODE` (RESET_ERRORs may come between).
const ACCEPTED_LOOKBACK: u32 = 50;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Exit> {
    let id = ctx.device().await?;
    let device: DeviceInfo = ctx.api.get(&format!("/devices/{id}"), &[]).await?;
    let latest: Option<Telemetry> = ctx
        .api
        .get_optional(&format!("/devices/{id}/telemetry/latest"))
        .await?;
    let accepted: Vec<CommandRecord> = ctx
        .api
        .get(
            &format!("/devices/{id}/commands"),
            &[
                ("status", "ACCEPTED".into()),
                ("limit", ACCEPTED_LOOKBACK.to_string()),
            ],
        )
        .await?;
    let last_set_mode = accepted.iter().find(|c| c.action == "SET_MODE");
    let now = Utc::now();
    let hold = render::mode_hold(last_set_mode, latest.as_ref(), now);
    let age_s = latest
        .as_ref()
        .map(|t| render::age_s(t.timestamp.as_datetime(), now));
    match ctx.format {
        Format::Table => output::emit(&pairs(&render::status_lines(
            &device,
            latest.as_ref(),
            hold.as_ref(),
            now,
        ))),
        Format::Csv => {
            let mut headers = vec!["device_id", "online", "age_s"];
            headers.extend(render::TELEMETRY_COLUMNS);
            headers.push("lease_until");
            let mut table = Table::new(headers);
            let mut row = vec![
                device.id.clone(),
                device.online.to_string(),
                age_s.map(|a| a.to_string()).unwrap_or_default(),
            ];
            match &latest {
                Some(t) => row.extend(render::telemetry_row(t)),
                None => row.extend(render::TELEMETRY_COLUMNS.map(|_| String::new())),
            }
            row.push(
                hold.as_ref()
                    .and_then(|h| h.until)
                    .map(crate::timespec::rfc3339)
                    .unwrap_or_default(),
            );
            table.push(row);
            output::emit(&table.to_csv());
        }
        Format::Json => output::print_json(&StatusJson {
            device: &device,
            telemetry: latest.as_ref(),
            age_s,
            lease: hold.as_ref(),
        }),
    }
    Ok(Exit::Success)
}
