//! `tariff set|show`: the device's import and export prices for the cloud planner. `set` reads
//! a CSV file (header `start,end,import_price,export_price`, times in RFC 3339) or a JSON file
//! (a list of periods, or what `tariff show -o json` prints) and replaces the stored tariff; the
//! server checks order, overlap and values and names the period it refuses.

use std::path::Path;

use ems_protocol::api::{Tariff, TariffPeriod};
use serde::Deserialize;

use super::Ctx;
use crate::cli;
use crate::exit::{Exit, Failure};
use crate::output::{self, Table};
use crate::timespec::rfc3339;

pub async fn run(ctx: &Ctx, sub: cli::Tariff) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    let path = format!("/devices/{device}/tariff");
    let tariff: Tariff = match sub {
        cli::Tariff::Set { file } => {
            let periods = from_file(&file)?;
            ctx.api.put(&path, &periods).await?
        }
        cli::Tariff::Show => ctx.api.get(&path, &[]).await?,
    };
    output::print(ctx.format, &table(&tariff), &tariff);
    Ok(Exit::Success)
}

/// The JSON shapes `set` accepts: the bare list the API takes, or `tariff show -o json`.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTariff {
    List(Vec<TariffPeriod>),
    Shown { periods: Vec<TariffPeriod> },
}

fn from_file(path: &Path) -> Result<Vec<TariffPeriod>, Failure> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?
    };
    let refuse = |e: String| Failure::usage(format!("{}: {e}", path.display()));
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        from_csv(&text).map_err(refuse)
    } else {
        match serde_json::from_str::<JsonTariff>(&text) {
            Ok(JsonTariff::List(periods) | JsonTariff::Shown { periods }) => Ok(periods),
            Err(_) => Err(refuse(
                "expected a JSON list of {start, end, import_price, export_price} or \
                 {\"periods\": [...]}"
                    .to_string(),
            )),
        }
    }
}

/// Rows of `start,end,import_price,export_price` (a header naming the columns first).
fn from_csv(text: &str) -> Result<Vec<TariffPeriod>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    reader
        .deserialize::<TariffPeriod>()
        .enumerate()
        // Line 1 is the header.
        .map(|(i, row)| row.map_err(|e| format!("line {}: {e}", i + 2)))
        .collect()
}

fn table(t: &Tariff) -> Table {
    let mut table = Table::new(["start", "end", "import_price", "export_price"]);
    for p in &t.periods {
        table.push(vec![
            rfc3339(p.start),
            rfc3339(p.end),
            p.import_price.to_string(),
            p.export_price.to_string(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_periods_and_a_bad_row_is_named_by_line() {
        let periods = from_csv(
            "start,end,import_price,export_price\n\
             # night\n\
             2026-12-01T00:00:00Z, 2026-12-01T06:00:00Z, 0.10, 0.05\n\
             2026-12-01T06:00:00Z, 2026-12-01T17:00:00Z, 0.25, -0.01\n",
        )
        .unwrap();
        assert_eq!(periods.len(), 2);
        assert_eq!(periods[1].import_price, 0.25);
        assert_eq!(periods[1].export_price, -0.01);
        assert_eq!(rfc3339(periods[0].end), "2026-12-01T06:00:00Z");
        let err = from_csv(
            "start,end,import_price,export_price\n\
             2026-12-01T00:00:00Z,2026-12-01T06:00:00Z,0.10,0.05\n\
             2026-12-01T06:00:00Z,soon,0.25,0.05\n",
        )
        .unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
    }
}
