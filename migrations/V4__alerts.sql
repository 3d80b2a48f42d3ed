-- Alerts: rules (managed over REST, shared by every instance through this table) and the
-- alerts they opened. Works on plain PostgreSQL and TimescaleDB alike.

CREATE TABLE alert_rules (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    kind            text NOT NULL
        CHECK (kind IN ('OFFLINE', 'ERROR_FLAG', 'SOC_BELOW', 'GRID_EXPORT_ABOVE')),
    -- The one device watched; NULL: every device.
    device_id       text REFERENCES devices (id) ON DELETE CASCADE,
    -- SOC_BELOW: %, GRID_EXPORT_ABOVE: W exported; and where the alert resolves (hysteresis).
    threshold       double precision,
    clear_threshold double precision,
    -- ERROR_FLAG: the flag watched; NULL: any.
    flag            text,
    for_s           integer NOT NULL DEFAULT 0 CHECK (for_s >= 0),
    clear_s         integer NOT NULL DEFAULT 0 CHECK (clear_s >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text
);

CREATE TABLE alerts (
    id          bigserial PRIMARY KEY,
    -- NULL once the rule is deleted (its alerts are resolved then and kept, with its name).
    rule_id     bigint REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule_name   text NOT NULL,
    kind        text NOT NULL,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    message     text NOT NULL
);
-- At most one open alert per rule and device, whichever instance opens it: the instances open
-- with INSERT … ON CONFLICT DO NOTHING and notify only when a row came back.
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, device_id) WHERE resolved_at IS NULL;
CREATE INDEX alerts_opened ON alerts (opened_at DESC);
CREATE INDEX alerts_device_opened ON alerts (device_id, opened_at DESC);
