//! `devices list|show|add`.

use chrono::Utc;
use ems_protocol::api::{DeviceCreated, DeviceInfo, NewDevice};

use super::{Ctx, checked_id};
use crate::cli::{Devices, Format};
use crate::exit::Exit;
use crate::output::{self, pairs};
use crate::render;
use crate::timespec::rfc3339;

pub async fn run(ctx: &Ctx, sub: Devices) -> anyhow::Result<Exit> {
    match sub {
        Devices::List => {
            let devices: Vec<DeviceInfo> = ctx.api.get("/devices", &[]).await?;
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
                    ("created", rfc3339(device.created_at)),
                ])),
                f => output::print(
                    f,
                    &render::devices_table(std::slice::from_ref(&device)),
                    &device,
                ),
            }
        }
        Devices::Add { id, name } => {
            let id = checked_id("device", &id)?;
            let created: DeviceCreated = ctx
                .api
                .post("/devices", &[], &NewDevice { id, name })
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
    }
    Ok(Exit::Success)
}
