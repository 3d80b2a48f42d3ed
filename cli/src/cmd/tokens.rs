//! `tokens create` (admin).

use ems_protocol::api::{NewToken, TokenCreated};

use super::Ctx;
use crate::cli::{Format, Tokens};
use crate::exit::Exit;
use crate::output::{self, Table, pairs};

pub async fn run(ctx: &Ctx, sub: Tokens) -> anyhow::Result<Exit> {
    let Tokens::Create { role, name } = sub;
    let created: TokenCreated = ctx
        .api
        .post("/tokens", &[], &NewToken { name, role })
        .await?;
    match ctx.format {
        Format::Table => output::emit(&pairs(&[
            ("name", created.name.clone()),
            ("role", created.role.to_string()),
            ("token", created.token.clone()),
            ("note", "the token is shown only now".into()),
        ])),
        Format::Csv => {
            let mut t = Table::new(["name", "role", "token"]);
            t.push(vec![
                created.name.clone(),
                created.role.to_string(),
                created.token.clone(),
            ]);
            output::emit(&t.to_csv());
        }
        Format::Json => output::print_json(&created),
    }
    Ok(Exit::Success)
}
