package fleetdb

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // pgx as a database/sql driver
)

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

// OpenPostgres connects to the database dsn names (a postgres:// or
// postgresql:// URL, with pgx's parameters: sslmode, connect_timeout,
// search_path, …, and pool_max_conns; the password is better left to
// PGPASSWORD or ~/.pgpass) and migrates it; several servers may open one database at
// once (migrations take an advisory lock). Errors never hold the
// password: an unparsable DSN is ErrBadDSN, a database that does not
// answer ErrUnreachable, both naming the host.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password in its error on a best-effort basis
		// only: the error shown is that of the DSN without it.
		if _, err := pgx.ParseConfig(Redact(dsn)); err != nil {
			return nil, fmt.Errorf("postgres DSN: %v: %w", err, ErrBadDSN)
		}
		return nil, fmt.Errorf("postgres DSN %s: its user or password does not parse (escape : / @ ? # as %%XX): %w", Redact(dsn), ErrBadDSN)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = PostgresConnectTimeout
	}
	if _, ok := cfg.RuntimeParams["statement_timeout"]; !ok {
		cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(PostgresStatementTimeout.Milliseconds(), 10)
	}
	maxConns := PostgresMaxConns
	if v, ok := cfg.RuntimeParams["pool_max_conns"]; ok {
		delete(cfg.RuntimeParams, "pool_max_conns") // ours, not a server setting
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("postgres DSN %s: pool_max_conns %q: want 1 to 1000: %w", Redact(dsn), v, ErrBadDSN)
		}
		maxConns = n
	}
	where := "postgres " + net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) + "/" + cfg.Database
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(PostgresConnLifetime)
	db.SetConnMaxIdleTime(PostgresConnIdle)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		// pgx lists each attempt on a line of its own: one line for logs.
		msg := strings.Join(strings.Fields(err.Error()), " ")
		return nil, fmt.Errorf("%s (user %s): %s: %w", where, cfg.User, msg, ErrUnreachable)
	}
	ms, err := migrations(migrationFiles)
	if err == nil {
		err = migrate(ctx, db, ms, postgresLock)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &Postgres{sqlStore{w: db, r: db}}, nil
}

// passwordParam is a password=VALUE parameter of a DSN's query.
var passwordParam = regexp.MustCompile(`((?:^|[?&])password=)[^&#]*`)

// Redact returns dsn fit for a log line: a postgres URL's password (in
// its user part or a password parameter) becomes "xxxxx", also in a URL
// that does not parse. Other DSNs are returned as they are.
func Redact(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok || (scheme != "postgres" && scheme != "postgresql") {
		return dsn
	}
	if u, err := url.Parse(dsn); err == nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	// By hand: the user part ends at the last @ (an @ in a password
	// must be escaped, but may not be).
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, has := strings.Cut(rest[:at], ":"); has {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	return scheme + "://" + passwordParam.ReplaceAllString(rest, "${1}xxxxx")
}
