-- API tokens get a lifecycle: an optional expiry, and revocation (the row stays, for the audit
-- trail; its name may be given to a new token).
ALTER TABLE api_tokens
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN revoked_at timestamptz,
    ADD COLUMN revoked_by text;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_name_key;
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Who did what: commands, token and device changes, failed authentications.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    time        timestamptz NOT NULL DEFAULT now(),
    -- The acting API token's name and role; NULL when nobody authenticated (failed attempts).
    actor       text,
    role        text,
    -- COMMAND_ISSUED, TOKEN_CREATED, TOKEN_REVOKED, TOKEN_ROTATED, DEVICE_CREATED, AUTH_FAILED
    action      text NOT NULL,
    device_id   text,
    command_id  text,
    -- The token acted on (TOKEN_*), or what a failed attempt presented (never the secret).
    target      text,
    -- The client's address.
    source      text,
    -- "ok", or why it was refused.
    result      text NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time DESC);
CREATE INDEX audit_log_device_time ON audit_log (device_id, time DESC) WHERE device_id IS NOT NULL;

-- The key ems-cloud instances sign their LISTEN/NOTIFY notices with (any role that can connect
-- may NOTIFY): made by the first instance, readable by the cloud's own role only (unless
-- `notice_secret` is configured, which then wins).
CREATE TABLE cluster_secret (
    id      integer PRIMARY KEY CHECK (id = 1),
    secret  bytea NOT NULL
);
REVOKE ALL ON cluster_secret FROM PUBLIC;

-- An API token may be limited to some devices (NULL: every device). Outside its scope a device
-- does not exist for it (404).
ALTER TABLE api_tokens ADD COLUMN devices text[];

-- Device tokens rotate: after a rotation the previous token keeps working until
-- `previous_valid_until` (a grace period for the device to take the new one), then its sockets
-- close. A disabled device is refused (403) and its sockets are closed; its data stays.
ALTER TABLE devices
    ADD COLUMN previous_token_hash bytea,
    ADD COLUMN previous_valid_until timestamptz,
    ADD COLUMN disabled_at timestamptz;

-- Single-use tickets for opening a live feed from a browser (which cannot set headers on a
-- WebSocket), so API tokens stay out of URLs and logs. Only their SHA-256 is stored.
CREATE TABLE live_tickets (
    ticket_hash bytea PRIMARY KEY,
    token_name  text NOT NULL,
    device_id   text NOT NULL,
    expires_at  timestamptz NOT NULL
);
