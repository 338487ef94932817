// Package fleetdb stores what the rollout server learns about its fleet:
// the inventory (per device and logical image: channel, running config
// digest, last check-in, agent version and platform, last install report)
// and the install reports devices send.
//
// Store is the interface the server uses; Open returns the backend a DSN
// names. The one backend so far is SQLite ("sqlite:PATH", through the pure
// Go modernc.org/sqlite, so the binary needs no cgo): WAL journal, a busy
// timeout, one writing connection (writes queue in Go, not in SQLite's
// busy loop) and a pool of readers. It suits one server; several servers
// need a shared database server (a PostgreSQL backend is planned, not
// written yet).
//
// The schema is versioned: migrations/NNNN_name.sql, embedded, applied in
// order, each in a transaction with its row in schema_migrations. A
// database migrated by a newer binary (a version this one does not know)
// is refused with ErrSchemaTooNew instead of being used half-understood.
// The SQL sticks to what PostgreSQL accepts too: $N placeholders, TEXT and
// BIGINT columns, times as BIGINT Unix milliseconds, and INSERT … ON
// CONFLICT DO NOTHING / DO UPDATE.
//
// Rollouts (RolloutStore, implemented once over database/sql by
// SQLRollouts) keep package rollout's State as JSON in the rollouts table,
// with its rev as the compare-and-set column, its status, and whether its
// outcome was written to the server's targets (settled). A partial unique
// index holds at most one running or paused rollout per (channel, image).
// The inventory keeps each device's labels (JSON) for group waves.
//
// Reports are idempotent by ID: a re-sent report is stored once (AddReport
// says whether it was new). The inventory keeps, per (device, image), the
// newest report by its time, so reports arriving out of order do not
// overwrite a later one.
package fleetdb
