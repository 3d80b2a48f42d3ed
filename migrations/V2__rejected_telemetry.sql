-- Telemetry packets that passed validation but that the database refused to store (found by
-- bisecting the batch they came in). Kept for inspection; the device was told (ERROR REJECTED
-- naming the timestamp) and does not resend them. `packet` is the packet's JSON as text (with
-- its extension fields), not jsonb: the refusal may have been about its JSON.
CREATE TABLE rejected_telemetry (
    device_id   text NOT NULL,
    time        timestamptz NOT NULL,
    packet      text NOT NULL,
    -- What PostgreSQL said: message, detail and SQLSTATE.
    error       text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, time)
);
