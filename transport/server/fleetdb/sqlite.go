package fleetdb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BusyTimeout is how long a statement waits for another process's lock
// on the database file before it fails.
const BusyTimeout = 5 * time.Second

// SQLite is the Store of one SQLite database file: one writing
// connection (every write, in order; writes queue in Go, not in SQLite's
// busy loop) and a pool of readers (WAL: they do not block the writer).
type SQLite struct {
	sqlStore
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens the database file at path (creating it and its
// directory), switches it to WAL and migrates it.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if sqliteDriver == "" {
		return nil, fmt.Errorf("sqlite:%s: this skiff is a device build (-tags skiff_device) without the SQLite driver: %w", path, ErrNoDriver)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite path %q: may not hold ? or #: %w", path, ErrBadDSN)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("database dir: %w", err)
	}
	dsn := fmt.Sprintf("%s?_busy_timeout=%d&_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1", path, BusyTimeout.Milliseconds())
	w, err := sql.Open(sqliteDriver, dsn)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	ms, err := migrations(migrationFiles)
	if err == nil {
		err = migrate(ctx, w, ms, sqliteLock)
	}
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	r, err := sql.Open(sqliteDriver, dsn)
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(8)
	return &SQLite{sqlStore{w: w, r: r}}, nil
}
