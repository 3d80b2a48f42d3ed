//! `devices list|show|add|tag|rotate-token|disable|enable|delete`.

use chrono::Utc;
use ems_protocol::api::{
    DeviceCreated, DeviceDeleted, DeviceInfo, DeviceTags, DeviceTokenRotated, NewDevice,
};

use super::{Ctx, checked_id};
use crate::cli::{Devices, Format};
use crate::exit::{Exit, Failure};
use crate::output::{self, pairs};
use crate::render;
use crate::timespec::rfc3339;

pub async fn run(ctx: &Ctx, sub: Devices) -> anyhow::Result<Exit> {
    match sub {
        Devices::List { tag } => {
            let query: Vec<(&str, String)> = tag.into_iter().map(|t| ("tag", t)).collect();
            let devices: Vec<DeviceInfo> = ctx.api.get("/devices", &query).await?;
            output::print(ctx.format, &render::devices_table(&devices), &devices);
        }
        Devices::Show { id } => {
            let id = match id {
                Some(id) => checked_id("device", &id)?,
                None => ctx.device().await?,
            };
            let device: DeviceInfo = ctx.api.get(&format!("/devices/{id}"), &[]).await?;
            match ctx.format {
                Format::Table => output::emit(&pairs(&[
                    ("id", device.id.clone()),
                    ("name", device.name.clone()),
                    ("connection", render::presence(&device, Utc::now())),
                    ("tags", device.tags.join(",")),
                    ("created", rfc3339(device.created_at)),
                ])),
                f => output::print(
                    f,
                    &render::devices_table(std::slice::from_ref(&device)),
                    &device,
                ),
            }
        }
        Devices::Add { id, name, tags } => {
            let id = checked_id("device", &id)?;
            let created: DeviceCreated = ctx
                .api
                .post("/devices", &[], &NewDevice { id, name, tags })
                .await?;
            match ctx.format {
                Format::Table => output::emit(&pairs(&[
                    ("id", created.device.id.clone()),
                    ("name", created.device.name.clone()),
                    ("token", created.token.clone()),
                    (
                        "note",
                        "the device token is shown only now; put it in the agent's token file"
                            .into(),
                    ),
                ])),
                Format::Csv => {
                    let mut t = output::Table::new(["id", "name", "token"]);
                    t.push(vec![
                        created.device.id.clone(),
                        created.device.name.clone(),
                        created.token.clone(),
                    ]);
                    output::emit(&t.to_csv());
                }
                Format::Json => output::print_json(&created),
            }
        }
        Devices::RotateToken { id, grace } => {
            let id = checked_id("device", &id)?;
            let grace_s = match grace.as_deref() {
                None => 0,
                Some(text) => ems_protocol::duration::parse_seconds(text)
                    .map_err(|e| Failure::usage(format!("--grace: {e}")))?,
            };
            let rotated: DeviceTokenRotated = ctx
                .api
                .post(
                    &format!("/devices/{id}/token"),
                    &[("grace_s", grace_s.to_string())],
                    &(),
                )
                .await?;
            let until = rotated
                .previous_valid_until
                .map(|t| format!("the old token works until {}", rfc3339(t)))
                .unwrap_or_else(|| "the old token stopped working now".into());
            match ctx.format {
                Format::Json => output::print_json(&rotated),
                _ => output::emit(&pairs(&[
                    ("id", rotated.device_id.clone()),
                    ("token", rotated.token.clone()),
                    ("note", format!("shown only now; {until}")),
                ])),
            }
        }
        Devices::Tag { id, tags } => {
            let id = checked_id("device", &id)?;
            let tags: Vec<String> = tags.into_iter().filter(|t| !t.is_empty()).collect();
            let device: DeviceInfo = ctx
                .api
                .put(&format!("/devices/{id}/tags"), &DeviceTags { tags })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(&device),
                _ => output::emit(&pairs(&[
                    ("id", device.id.clone()),
                    ("tags", device.tags.join(",")),
                ])),
            }
        }
        Devices::Disable { id } => switch(ctx, &id, "disable").await?,
        Devices::Enable { id } => switch(ctx, &id, "enable").await?,
        Devices::Delete { id, purge } => {
            let id = checked_id("device", &id)?;
            let path = if purge {
                format!("/devices/{id}?purge=true")
            } else {
                format!("/devices/{id}")
            };
            let deleted: DeviceDeleted = ctx.api.delete(&path).await?;
            match ctx.format {
                Format::Json => output::print_json(&deleted),
                _ => output::emit(&pairs(&[
                    ("deleted", deleted.device_id.clone()),
                    (
                        "telemetry",
                        if deleted.purged {
                            format!("{} rows deleted", deleted.telemetry_rows_deleted)
                        } else {
                            "kept".into()
                        },
                    ),
                ])),
            }
        }
    }
    Ok(Exit::Success)
}

/// `devices disable|enable ID`: prints the device afterwards.
async fn switch(ctx: &Ctx, id: &str, what: &str) -> anyhow::Result<()> {
    let id = checked_id("device", id)?;
    let device: DeviceInfo = ctx
        .api
        .post(&format!("/devices/{id}/{what}"), &[], &())
        .await?;
    let state = device
        .disabled_at
        .map(|t| format!("disabled since {}", rfc3339(t)))
        .unwrap_or_else(|| "enabled".into());
    match ctx.format {
        Format::Json => output::print_json(&device),
        _ => output::emit(&pairs(&[("id", device.id.clone()), ("state", state)])),
    }
    Ok(())
}
