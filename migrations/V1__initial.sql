-- ems cloud schema, version 1. Applied by ems-cloud at start (refinery).
-- TimescaleDB specifics (hypertable, compression, continuous aggregate, retention) are set up
-- after the migrations by idempotent code in cloud/src/db/timescale.rs, because continuous
-- aggregates cannot be created inside a transaction. Everything here works on plain PostgreSQL.

CREATE TABLE devices (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    -- SHA-256 of the device token; the token itself is shown once and never stored.
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Connection or disconnection time (the latest telemetry time is read from telemetry).
    last_seen   timestamptz,
    -- The ems-cloud instance holding the device's socket, NULL when disconnected.
    connected_instance text,
    connected_at timestamptz
);

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text
);

-- One row per telemetry packet; (device_id, time) is the packet's identity, so a resent packet
-- is absorbed by ON CONFLICT DO NOTHING. No foreign key to devices: the socket is already bound
-- to a registered device, and a per-row check would cost ingest throughput.
CREATE TABLE telemetry (
    time            timestamptz NOT NULL,
    device_id       text NOT NULL,
    state           text NOT NULL,
    mode            text NOT NULL,
    error_flags     text[] NOT NULL DEFAULT '{}',
    wifi_strength   integer,
    battery_voltage double precision,
    battery_current double precision,
    battery_power   double precision,
    battery_soc     double precision,
    grid_voltage    double precision,
    grid_power      double precision,
    grid_frequency  double precision,
    -- Fields beyond the spec's (additive extensions), with their paths; NULL when none.
    extensions      jsonb
);
CREATE UNIQUE INDEX telemetry_device_time ON telemetry (device_id, time DESC);

CREATE TABLE commands (
    command_id  text PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    action      text NOT NULL,
    payload     jsonb NOT NULL,
    issued_by   text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    status      text NOT NULL
        CHECK (status IN ('PENDING', 'SENT', 'ACCEPTED', 'REJECTED', 'COMPLETED', 'EXPIRED')),
    status_at   timestamptz NOT NULL DEFAULT now(),
    reason      text,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX commands_device_issued ON commands (device_id, issued_at DESC);
CREATE INDEX commands_open ON commands (expires_at) WHERE status IN ('PENDING', 'SENT');

-- Derived by the server from consecutive telemetry of a device.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    time        timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('STATE_CHANGED', 'ERROR_RAISED', 'ERROR_CLEARED')),
    from_state  text,
    to_state    text,
    flag        text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_device_time ON events (device_id, time DESC);

-- Running ems-cloud processes; a device counts as online only while its instance heartbeats.
CREATE TABLE instances (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
