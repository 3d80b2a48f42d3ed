-- Devices carry tags (a site, a customer, a region: `site:lyon`, `fleet-a`). An API token may be
-- scoped to tags as well as to device ids: it sees the devices it names and every device that
-- has one of its tags, tagged now or later (resolved at each authentication).
ALTER TABLE devices ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
CREATE INDEX devices_tags ON devices USING gin (tags);
ALTER TABLE api_tokens ADD COLUMN tags text[];
