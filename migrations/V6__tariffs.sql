-- Tariffs for the cloud planner (issue 17): per device, periods with an import and an export
-- price per kWh. `PUT /devices/<id>/tariff` replaces a device's periods as a whole; the API
-- checks that they are ordered, do not overlap and are finite before it stores them.
CREATE TABLE tariffs (
    device_id     text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    start_at      timestamptz NOT NULL,
    end_at        timestamptz NOT NULL,
    import_price  double precision NOT NULL,
    export_price  double precision NOT NULL,
    PRIMARY KEY (device_id, start_at),
    CHECK (end_at > start_at)
);
