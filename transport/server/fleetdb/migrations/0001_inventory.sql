-- The fleet inventory and install reports. Portable to PostgreSQL: TEXT
-- and BIGINT only; times are Unix milliseconds (0: never).
CREATE TABLE inventory (
    device        TEXT   NOT NULL,
    image         TEXT   NOT NULL,
    channel       TEXT   NOT NULL DEFAULT '',
    config_digest TEXT   NOT NULL DEFAULT '',
    last_seen     BIGINT NOT NULL DEFAULT 0,
    agent_version TEXT   NOT NULL DEFAULT '',
    platform      TEXT   NOT NULL DEFAULT '',
    report_id     TEXT   NOT NULL DEFAULT '',
    report_result TEXT   NOT NULL DEFAULT '',
    report_to     TEXT   NOT NULL DEFAULT '',
    report_error  TEXT   NOT NULL DEFAULT '',
    report_time   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (device, image)
);
CREATE INDEX inventory_last_seen ON inventory (last_seen);
CREATE INDEX inventory_channel_image ON inventory (channel, image);

CREATE TABLE reports (
    id            TEXT   NOT NULL PRIMARY KEY,
    device        TEXT   NOT NULL,
    channel       TEXT   NOT NULL,
    image         TEXT   NOT NULL,
    from_digest   TEXT   NOT NULL DEFAULT '',
    to_digest     TEXT   NOT NULL DEFAULT '',
    result        TEXT   NOT NULL,
    error         TEXT   NOT NULL DEFAULT '',
    bytes         BIGINT NOT NULL DEFAULT 0,
    duration_ms   BIGINT NOT NULL DEFAULT 0,
    agent_version TEXT   NOT NULL DEFAULT '',
    platform      TEXT   NOT NULL DEFAULT '',
    time          BIGINT NOT NULL,
    received      BIGINT NOT NULL
);
CREATE INDEX reports_device_image ON reports (device, image, time);
