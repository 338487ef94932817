//go:build !skiff_device

package fleetdb

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // pgx as a database/sql driver
)

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
