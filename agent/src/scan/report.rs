//! A scan's result as the agent's config: a `[buses.*]` section (unless the bus came from the
//! config) and a `[devices.*]` section per recognised unit, in the format of `config/*.toml`,
//! with comments saying what was seen. A role goes to the first unit that can fill it; a later
//! unit whose roles are all taken is printed commented out, so the snippet stays valid.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ems_driver_sdk::Role;

use super::{FoundUnit, LineSetting, Report};
use crate::config::Parity;

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{role:?}"))
}

fn parity_name(p: Parity) -> &'static str {
    match p {
        Parity::None => "none",
        Parity::Even => "even",
        Parity::Odd => "odd",
    }
}

/// The line setting the bus section gets: one port is one bus, so one setting; the one at which
/// the most units answered (the first scanned on a tie). `None` over TCP or when nothing
/// answered.
fn chosen_setting(report: &Report) -> Option<LineSetting> {
    let mut best: Option<(LineSetting, usize)> = None;
    for p in &report.passes {
        if let Some(s) = p.setting
            && !p.answered.is_empty()
            && best.is_none_or(|(_, n)| p.answered.len() > n)
        {
            best = Some((s, p.answered.len()));
        }
    }
    best.map(|(s, _)| s)
}

/// The TOML snippet.
pub fn toml(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ems-agent scan of {} ({} {}), {} unit ids, {:.1} s",
        report.bus, report.kind, report.target, report.units_scanned, report.elapsed_s
    );
    for p in &report.passes {
        let label = p
            .setting
            .map_or_else(|| "Modbus TCP".to_string(), |s| s.to_string());
        let _ = writeln!(
            out,
            "# {label}: {} requests, {} units answered, {} exceptions, {} timeouts, {} garbled answers (CRC, noise), {} other errors",
            p.requests,
            p.answered.len(),
            p.exceptions,
            p.timeouts,
            p.garbled,
            p.other_errors
        );
    }
    if report.found.is_empty() {
        let _ = writeln!(out, "# no unit answered: nothing to configure");
        return out;
    }
    let _ = writeln!(
        out,
        "# Paste what follows into the agent's config and check it with `ems-agent check-config`."
    );
    let chosen = chosen_setting(report);
    if report.bus_configured {
        let _ = writeln!(
            out,
            "# (bus {} is in the config already{})",
            report.bus,
            chosen.map_or_else(String::new, |s| format!(
                ": the units below answered at {s}"
            ))
        );
    } else if report.kind == "tcp" {
        let _ = write!(
            out,
            "\n[buses.{}]\nkind = \"tcp\"\naddress = {}\n",
            report.bus,
            quoted(&report.target)
        );
    } else if let Some(s) = chosen {
        let _ = write!(
            out,
            "\n[buses.{}]\nkind = \"rtu\"\nport = {}\nbaud = {}\nparity = \"{}\"\n",
            report.bus,
            quoted(&report.target),
            s.baud,
            parity_name(s.parity)
        );
    }
    let mut taken: BTreeSet<String> = report
        .configured
        .iter()
        .flat_map(|d| d.roles.iter().map(|r| role_name(*r)))
        .collect();
    let mut names: BTreeSet<String> = report.configured.iter().map(|d| d.name.clone()).collect();
    for f in &report.found {
        if f.setting != chosen {
            let also = report
                .found
                .iter()
                .any(|g| g.unit == f.unit && g.setting == chosen);
            if !also && let Some(s) = f.setting {
                let _ = writeln!(
                    out,
                    "\n# unit {} answered only at {s}, not at the bus's {}: one port is one line \
                     setting, so set the device to the bus's (or scan again with --baud/--parity)",
                    f.unit,
                    chosen.map_or_else(String::new, |c| c.to_string())
                );
            }
            continue;
        }
        out.push('\n');
        if let Some(d) = report
            .configured
            .iter()
            .find(|d| d.unit_on_bus == Some(f.unit))
        {
            let _ = writeln!(
                out,
                "# unit {} answers ({}): it is devices.{} in the config already{}",
                f.unit,
                f.answer,
                d.name,
                f.identities
                    .first()
                    .map_or_else(String::new, |id| format!(" ({})", id.evidence))
            );
            continue;
        }
        device(
            &mut out,
            report,
            f,
            &mut taken,
            &mut names,
            report.maps_tried.len(),
        );
    }
    out
}

fn device(
    out: &mut String,
    report: &Report,
    f: &FoundUnit,
    taken: &mut BTreeSet<String>,
    names: &mut BTreeSet<String>,
    maps: usize,
) {
    let at = f.setting.map_or_else(String::new, |s| format!(" at {s}"));
    let Some(id) = f.identities.first() else {
        let _ = writeln!(
            out,
            "# unit {}{at} answers ({}) but is none of: SunSpec, an Eastron meter, the {maps} \
             register maps with [identify]; write a map for it (drivers/README.md, \"Supported hardware\")",
            f.unit, f.answer
        );
        return;
    };
    let what: Vec<&str> = [&id.manufacturer, &id.model, &id.serial]
        .into_iter()
        .filter_map(|s| s.as_deref())
        .collect();
    let _ = writeln!(
        out,
        "# unit {}{at}: {}{}",
        f.unit,
        id.evidence,
        if what.is_empty() {
            String::new()
        } else {
            format!("; {}", what.join(", "))
        }
    );
    if let Some(note) = &id.note {
        let _ = writeln!(out, "# note: {note}");
    }
    for other in &f.identities[1..] {
        let _ = writeln!(
            out,
            "# also matches: {} (driver {})",
            other.evidence, other.driver
        );
    }
    let roles: Vec<String> = id
        .roles
        .iter()
        .map(|r| role_name(*r))
        .filter(|r| !taken.contains(r))
        .collect();
    let base = match roles.first().map(String::as_str) {
        Some(r) => r.to_string(),
        None => format!("unit_{}", f.unit),
    };
    let mut name = base.clone();
    if names.contains(&name) {
        name = format!("{base}_{}", f.unit);
    }
    names.insert(name.clone());
    let mut section = format!(
        "[devices.{name}]\ndriver = {}\nbus = \"{}\"\nunit = {}\nroles = [{}]\n",
        quoted(&id.driver),
        report.bus,
        f.unit,
        roles
            .iter()
            .map(|r| quoted(r))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !id.options.is_empty() {
        let inline = id
            .options
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(section, "options = {{ {inline} }}");
    }
    if roles.is_empty() {
        let _ = writeln!(
            out,
            "# its roles ({}) are taken by a unit above: give it roles of its own, then uncomment",
            id.roles
                .iter()
                .map(|r| role_name(*r))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for line in section.lines() {
            let _ = writeln!(out, "# {line}");
        }
    } else {
        taken.extend(roles);
        out.push_str(&section);
    }
}

/// The JSON form: the report with the snippet.
pub fn json(report: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("config".into(), toml(report).into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::PassReport;
    use crate::scan::identify::Identity;

    fn identity(driver: &str, roles: Vec<Role>) -> Identity {
        Identity {
            by: "sunspec",
            driver: driver.into(),
            options: toml::Table::new(),
            roles,
            manufacturer: Some("ACME".into()),
            model: None,
            serial: None,
            evidence: "seen".into(),
            note: None,
        }
    }

    #[test]
    fn the_snippet_is_a_valid_config_and_a_role_is_given_once() {
        let setting = Some(LineSetting {
            baud: 9600,
            parity: Parity::Even,
        });
        let other = Some(LineSetting {
            baud: 9600,
            parity: Parity::None,
        });
        let pass = |setting, answered: Vec<u8>| PassReport {
            setting,
            requests: 10,
            ok: 0,
            exceptions: 0,
            timeouts: 0,
            garbled: 0,
            other_errors: 0,
            answered,
        };
        let found_at = |setting, unit, ids| FoundUnit {
            unit,
            setting,
            answer: "registers".into(),
            identities: ids,
        };
        let found = |unit, ids| found_at(setting, unit, ids);
        let report = Report {
            bus: "rs485".into(),
            kind: "rtu",
            target: "/dev/ttyUSB0".into(),
            bus_configured: false,
            configured: vec![],
            units_scanned: 10,
            maps_tried: vec![],
            passes: vec![pass(other, vec![1, 4]), pass(setting, vec![1, 2, 3])],
            found: vec![
                found_at(other, 1, vec![identity("sunspec", vec![Role::Battery])]),
                found_at(other, 4, vec![identity("sunspec", vec![Role::Battery])]),
                found(
                    1,
                    vec![identity("sunspec", vec![Role::Inverter, Role::Battery])],
                ),
                found(2, vec![identity("sunspec", vec![Role::Inverter])]),
                found(3, vec![]),
            ],
            elapsed_s: 1.0,
        };
        let text = toml(&report);
        let config = format!("device_id = \"x\"\n{text}");
        let parsed = crate::config::AgentConfig::from_toml_str(&config, "scan").unwrap();
        assert_eq!(parsed.devices.len(), 1, "{text}");
        assert_eq!(parsed.devices["inverter"].unit, Some(1));
        assert!(text.contains("# [devices.unit_2]"), "{text}");
        assert!(text.contains("unit 3 at 9600 8E1 answers"), "{text}");
        assert!(text.contains("parity = \"even\""), "{text}");
        // One port, one bus: the setting most units answered at; a unit only seen at another
        // setting is a comment, one seen at both is configured once.
        assert_eq!(text.matches("[buses.").count(), 1, "{text}");
        assert!(text.contains("baud = 9600\nparity = \"even\""), "{text}");
        assert!(
            text.contains("unit 4 answered only at 9600 8N1, not at the bus's 9600 8E1"),
            "{text}"
        );
        assert!(!text.contains("unit 1 answered only"), "{text}");
    }
}
