//! The `telemetry` table's columns, in one place. The `UNNEST` insert, the binary `COPY` and its
//! types, the columns history and "latest" select, and the fields the continuous aggregate and
//! bucketed history compute are all built from [`TELEMETRY`]; a test compares it with the table
//! the migrations create.

use std::sync::LazyLock;

use tokio_postgres::types::Type;

/// What a column holds, which decides how it is written and whether history aggregates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The packet's identity: `time`, `device_id`.
    Key,
    /// An enumeration as text: `state`, `mode`.
    Text,
    /// `error_flags`: a text array. The `UNNEST` insert passes each row's flags comma-joined
    /// (an array parameter cannot hold arrays of different lengths).
    Flags,
    /// A measurement: averaged, min/max'ed per bucket.
    Numeric,
    /// Extension fields beyond the spec's, as JSON.
    Json,
}

/// One column of `telemetry`.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    /// PostgreSQL's type name as `information_schema.columns.udt_name` gives it.
    pub udt: &'static str,
    /// The binary `COPY` type.
    pub copy_type: Type,
    pub kind: Kind,
}

const fn col(name: &'static str, udt: &'static str, copy_type: Type, kind: Kind) -> Column {
    Column {
        name,
        udt,
        copy_type,
        kind,
    }
}

/// The columns of `telemetry`, in the table's order.
pub const TELEMETRY: &[Column] = &[
    col("time", "timestamptz", Type::TIMESTAMPTZ, Kind::Key),
    col("device_id", "text", Type::TEXT, Kind::Key),
    col("state", "text", Type::TEXT, Kind::Text),
    col("mode", "text", Type::TEXT, Kind::Text),
    col("error_flags", "_text", Type::TEXT_ARRAY, Kind::Flags),
    col("wifi_strength", "int4", Type::INT4, Kind::Numeric),
    col("battery_voltage", "float8", Type::FLOAT8, Kind::Numeric),
    col("battery_current", "float8", Type::FLOAT8, Kind::Numeric),
    col("battery_power", "float8", Type::FLOAT8, Kind::Numeric),
    col("battery_soc", "float8", Type::FLOAT8, Kind::Numeric),
    col("grid_voltage", "float8", Type::FLOAT8, Kind::Numeric),
    col("grid_power", "float8", Type::FLOAT8, Kind::Numeric),
    col("grid_frequency", "float8", Type::FLOAT8, Kind::Numeric),
    col("extensions", "jsonb", Type::JSONB, Kind::Json),
];

/// Number of columns: the length of a row's parameters.
pub const COUNT: usize = TELEMETRY.len();

/// The measurements: what bucketed history and the continuous aggregate compute.
pub static NUMERIC_FIELDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    TELEMETRY
        .iter()
        .filter(|c| c.kind == Kind::Numeric)
        .map(|c| c.name)
        .collect()
});

/// Every column, comma-separated, in the table's order.
pub static ALL: LazyLock<String> = LazyLock::new(|| names(|_| true));

/// The columns of the spec packet (all but `extensions`), comma-separated, in the table's order:
/// what "latest" and raw history select to rebuild a packet.
pub static SPEC: LazyLock<String> = LazyLock::new(|| names(|c| c.kind != Kind::Json));

/// The binary `COPY` types, in the table's order.
pub static COPY_TYPES: LazyLock<Vec<Type>> =
    LazyLock::new(|| TELEMETRY.iter().map(|c| c.copy_type.clone()).collect());

/// The insert into `telemetry` ([`insert_into`]).
pub static INSERT: LazyLock<String> = LazyLock::new(|| insert_into("telemetry"));

/// `INSERT INTO <table> … SELECT … FROM UNNEST($1 … $n) ON CONFLICT (device_id, time) DO
/// NOTHING RETURNING device_id, time`: one array parameter per column, in the table's order.
/// `table` is `telemetry` or a table like it (the load bench's baseline).
pub fn insert_into(table: &str) -> String {
    let mut params = Vec::new();
    let mut aliases = Vec::new();
    let mut exprs = Vec::new();
    for (i, c) in TELEMETRY.iter().enumerate() {
        let alias = format!("c{i}");
        let element = match c.kind {
            Kind::Flags => "text",
            _ => c.udt,
        };
        params.push(format!("${}::{element}[]", i + 1));
        exprs.push(match c.kind {
            Kind::Flags => format!(
                "CASE WHEN {alias} = '' THEN '{{}}'::text[] ELSE string_to_array({alias}, ',') END"
            ),
            _ => alias.clone(),
        });
        aliases.push(alias);
    }
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM UNNEST({}) AS u({}) \
         ON CONFLICT (device_id, time) DO NOTHING RETURNING device_id, time",
        *ALL,
        exprs.join(", "),
        params.join(", "),
        aliases.join(", ")
    )
}

fn names(keep: impl Fn(&Column) -> bool) -> String {
    TELEMETRY
        .iter()
        .filter(|c| keep(c))
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_column_once_in_order() {
        assert_eq!(ALL.split(", ").count(), COUNT);
        assert!(ALL.starts_with("time, device_id, state"));
        assert!(!SPEC.contains("extensions"));
        assert_eq!(COPY_TYPES.len(), COUNT);
        assert!(INSERT.contains(&format!("${COUNT}::jsonb[]")));
        assert!(!INSERT.contains(&format!("${}", COUNT + 1)));
        assert!(INSERT.contains("string_to_array(c4, ',')"));
        assert_eq!(NUMERIC_FIELDS.len(), 8);
        assert_eq!(NUMERIC_FIELDS[0], "wifi_strength");
    }
}
