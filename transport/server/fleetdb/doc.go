// Package fleetdb stores what the rollout server learns about its fleet:
// the inventory (per device and logical image: channel, running config
// digest, last check-in, agent version and platform, last install report)
// and the install reports devices send.
//
// Store is the interface the server uses; Open returns the backend a DSN
// names. Both backends run the same queries (sqlStore, over
// database/sql) and differ only in how they connect:
//
//   - SQLite ("sqlite:PATH", through the pure Go modernc.org/sqlite, so
//     the binary needs no cgo): WAL journal, a busy timeout, one writing
//     connection (writes queue in Go, not in SQLite's busy loop) and a
//     pool of readers. It suits one server: SQLite does not support
//     several processes on a network file system.
//   - PostgreSQL ("postgres://…" or "postgresql://…", through pgx's
//     database/sql driver, also pure Go): one pool of at most
//     PostgresMaxConns connections per server, replaced after
//     PostgresConnLifetime, a connect timeout. Several servers share one
//     database: each upsert is one statement, a report and its inventory
//     update one transaction, so concurrent servers neither lose nor
//     double a write.
//
// On PostgreSQL device IDs sort in the database's collation (byte order
// under C or C.UTF-8); on SQLite in byte order. Pages are consistent
// either way, since the cursor compares in the same order.
//
// The schema is versioned: migrations/NNNN_name.sql, embedded, applied in
// order, each in a transaction with its row in schema_migrations.
// Servers that start at once take turns: on PostgreSQL the migration
// transaction first takes an advisory lock (pg_advisory_xact_lock), on
// SQLite the database's write lock; the first applies what is missing,
// the others then find nothing to do. A database migrated by a newer
// binary (a version this one does not know) is refused with
// ErrSchemaTooNew instead of being used half-understood.
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
