package fleetdb

import "time"

// Pool settings of the PostgreSQL backend.
const (
	// PostgresMaxConns is the most connections one server opens (and
	// keeps idle) unless the DSN sets pool_max_conns; count them per
	// server against the database's max_connections.
	PostgresMaxConns = 16
	// PostgresConnLifetime is how long a connection is used before it is
	// replaced (a failed-over or restarted database is found again).
	PostgresConnLifetime = 30 * time.Minute
	// PostgresConnIdle closes a connection idle this long.
	PostgresConnIdle = 5 * time.Minute
	// PostgresConnectTimeout bounds one connection attempt unless the DSN
	// sets connect_timeout.
	PostgresConnectTimeout = 10 * time.Second
	// PostgresStatementTimeout is the session's statement_timeout unless
	// the DSN sets one: the inventory write of a check-in runs without a
	// deadline of its own, and this bounds its wait for a lock.
	// Migrations run without it.
	PostgresStatementTimeout = 30 * time.Second
)

// Postgres is the Store of a PostgreSQL database, which several servers
// may share: one pool of at most PostgresMaxConns connections, reads and
// writes alike (PostgreSQL's row locks order concurrent writers).
type Postgres struct {
	sqlStore
}

var _ Store = (*Postgres)(nil)
