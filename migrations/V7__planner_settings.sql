-- Per-device opt-in to the cloud planner (issue 17): `PUT /devices/<id>/planner` stores the
-- battery figures a plan needs; with mode 'cloud' the background re-planner plans the device
-- and sends it a SET_SCHEDULE when its tariff or these settings change, every
-- `planner.replan_interval_s`, or when the measured SoC departs from the plan. Without a row
-- (or with mode 'off') nothing is ever sent.
CREATE TABLE planner_settings (
    device_id        text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    mode             text NOT NULL CHECK (mode IN ('cloud', 'off')),
    capacity_wh      double precision NOT NULL,
    max_charge_w     double precision NOT NULL,
    max_discharge_w  double precision NOT NULL,
    reserve_soc_pct  double precision NOT NULL,
    max_soc_pct      double precision NOT NULL,
    efficiency       double precision NOT NULL,
    import_limit_w   double precision,
    export_limit_w   double precision,
    end_soc_pct      double precision,
    hours            double precision NOT NULL,
    time_zone        text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text NOT NULL,
    -- Bumped by every change that calls for a new plan (these settings, the tariff); the
    -- re-planner is due while it is above planned_seq.
    change_seq       bigint NOT NULL DEFAULT 1,
    planned_seq      bigint NOT NULL DEFAULT 0,
    -- The last planning attempt: when, the plan's SoC at its start and at each slot's end
    -- (for the SoC departure check), the command sent, or why none was.
    planned_at       timestamptz,
    plan_start       timestamptz,
    planned_soc      double precision[],
    last_command_id  text,
    last_error       text,
    -- Which instance is planning the device, until when (an UPDATE … RETURNING claim, so
    -- instances sharing the database never both send).
    claimed_by       text,
    claimed_until    timestamptz
);
