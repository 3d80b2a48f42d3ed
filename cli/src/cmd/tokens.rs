//! `tokens create|list|revoke|rotate` (admin).

use chrono::{DateTime, Duration, Utc};
use ems_protocol::api::{NewToken, TokenCreated, TokenInfo};

use super::{Ctx, checked_id};
use crate::cli::{Format, Tokens};
use crate::exit::{Exit, Failure};
use crate::output::{self, Table, pairs};
use crate::timespec::{self, rfc3339};

pub async fn run(ctx: &Ctx, sub: Tokens) -> anyhow::Result<Exit> {
    match sub {
        Tokens::Create {
            role,
            name,
            expires,
            devices,
            tags,
        } => {
            let devices = devices
                .map(|list| {
                    list.iter()
                        .map(|d| checked_id("--devices", d))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?;
            let expires_at = expires
                .as_deref()
                .map(|text| expiry(text, Utc::now()))
                .transpose()?;
            let created: TokenCreated = ctx
                .api
                .post(
                    "/tokens",
                    &[],
                    &NewToken {
                        name,
                        role,
                        expires_at,
                        devices,
                        tags,
                    },
                )
                .await?;
            print_created(ctx.format, &created);
        }
        Tokens::List { revoked } => {
            let query = if revoked {
                vec![("revoked", "true".to_string())]
            } else {
                Vec::new()
            };
            let tokens: Vec<TokenInfo> = ctx.api.get("/tokens", &query).await?;
            output::print(ctx.format, &table(&tokens), &tokens);
        }
        Tokens::Revoke { name } => {
            let info: TokenInfo = ctx.api.delete(&format!("/tokens/{}", path(&name)?)).await?;
            output::print(ctx.format, &table(std::slice::from_ref(&info)), &info);
        }
        Tokens::Rotate { name } => {
            let created: TokenCreated = ctx
                .api
                .post(&format!("/tokens/{}/rotate", path(&name)?), &[], &())
                .await?;
            print_created(ctx.format, &created);
        }
    }
    Ok(Exit::Success)
}

/// `--expires`: a length from now (`30d`) or a time (`2026-12-31`, RFC 3339).
fn expiry(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
    let at = match ems_protocol::duration::parse_seconds(text) {
        Ok(s) => now + Duration::seconds(s),
        Err(_) => timespec::parse(text, now).map_err(|e| {
            Failure::usage(format!("--expires: {e}")).hint("e.g. --expires 30d or 2026-12-31")
        })?,
    };
    if at <= now {
        return Err(Failure::usage(format!(
            "--expires {text:?} is not in the future"
        )));
    }
    Ok(at)
}

/// Token names go into URL paths: refuse what would change the path.
fn path(name: &str) -> Result<&str, Failure> {
    if name.is_empty() || name.contains(['/', '?', '#', '%']) {
        return Err(Failure::usage(format!(
            "{name:?} is not a token name (no / ? # %)"
        )));
    }
    Ok(name)
}

fn print_created(format: Format, created: &TokenCreated) {
    let expires = created
        .expires_at
        .map(rfc3339)
        .unwrap_or_else(|| "never".into());
    match format {
        Format::Table => output::emit(&pairs(&[
            ("name", created.name.clone()),
            ("role", created.role.to_string()),
            ("token", created.token.clone()),
            ("expires", expires),
            ("note", "the token is shown only now".into()),
        ])),
        Format::Csv => {
            let mut t = Table::new(["name", "role", "token", "expires"]);
            t.push(vec![
                created.name.clone(),
                created.role.to_string(),
                created.token.clone(),
                expires,
            ]);
            output::emit(&t.to_csv());
        }
        Format::Json => output::print_json(created),
    }
}

fn table(tokens: &[TokenInfo]) -> Table {
    let mut t = Table::new([
        "name", "role", "devices", "tags", "created", "by", "expires", "revoked",
    ]);
    let time = |t: Option<DateTime<Utc>>| t.map(rfc3339).unwrap_or_default();
    for k in tokens {
        t.push(vec![
            k.name.clone(),
            k.role.to_string(),
            k.devices
                .as_ref()
                .map(|d| d.join(","))
                .unwrap_or_else(|| if k.tags.is_some() { "" } else { "all" }.into()),
            k.tags.as_ref().map(|d| d.join(",")).unwrap_or_default(),
            rfc3339(k.created_at),
            k.created_by.clone().unwrap_or_default(),
            k.expires_at.map(rfc3339).unwrap_or_else(|| "never".into()),
            time(k.revoked_at),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_a_length_or_a_time_in_the_future() {
        let now = "2026-01-31T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(expiry("30d", now).unwrap(), now + Duration::days(30));
        assert_eq!(
            expiry("2026-02-01", now).unwrap(),
            "2026-02-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(expiry("2026-01-01", now).is_err(), "in the past");
        assert!(expiry("0s", now).is_err());
        assert!(expiry("soon", now).is_err());
    }

    #[test]
    fn names_that_would_change_the_path_are_refused() {
        assert!(path("wall-screen").is_ok());
        for bad in ["", "a/b", "a?b", "a#b", "a%2Fb"] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }
}
