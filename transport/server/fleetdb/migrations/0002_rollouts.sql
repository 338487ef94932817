-- Staged rollouts (issue 13) and device labels. Portable to PostgreSQL:
-- TEXT and BIGINT only, times in Unix milliseconds, and a partial unique
-- index (both SQLite and PostgreSQL have them).

-- labels is the JSON object of the labels a device sent with its last
-- check-in of the image ('' for none).
ALTER TABLE inventory ADD COLUMN labels TEXT NOT NULL DEFAULT '';

-- One row per rollout: state is the rollout.State JSON, rev its Rev (the
-- compare-and-set column), status its Status. settled is 1 once a final
-- rollout's outcome is written to the server's targets (the track's target
-- set to the rollout's, or the previous one published again after an
-- abort).
CREATE TABLE rollouts (
    id       TEXT   NOT NULL PRIMARY KEY,
    channel  TEXT   NOT NULL,
    image    TEXT   NOT NULL,
    status   TEXT   NOT NULL,
    rev      BIGINT NOT NULL,
    state    TEXT   NOT NULL,
    settled  BIGINT NOT NULL DEFAULT 0,
    created  BIGINT NOT NULL,
    updated  BIGINT NOT NULL
);
CREATE INDEX rollouts_track ON rollouts (channel, image, created);
-- At most one rollout that is not final per track.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (channel, image) WHERE status IN ('running', 'paused');
