package fleetdb

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema change.
type migration struct {
	version int64
	name    string
	sql     string
}

// migrations lists the embedded migrations in order; their numbers must
// be 1, 2, 3, … (a gap or a repeat is a bug of the build, caught by the
// tests).
func migrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: want NNNN_name.sql", base)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != int64(i+1) {
			return nil, fmt.Errorf("migration %s: number %d, want %d (numbers run 1, 2, 3, …)", m.name, m.version, i+1)
		}
	}
	return out, nil
}

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT NOT NULL PRIMARY KEY,
		name    TEXT   NOT NULL,
		applied BIGINT NOT NULL
	)`

// migrationLock makes migrators that start at once (several servers on
// one database) take turns: setup runs before the migration transaction,
// lock first inside it. Whoever holds the lock reads the version and
// applies what is missing; the others wait, then find nothing to do.
type migrationLock struct{ setup, lock []string }

// sqliteLock: schema_migrations is created first (a no-op when it
// exists), then a write takes the database's write lock before the
// version is read: a read first would let two migrators read the same
// version.
var sqliteLock = migrationLock{
	setup: []string{createSchemaMigrations},
	lock:  []string{`UPDATE schema_migrations SET version = version WHERE 1 = 0`},
}

// postgresLockKey is the transaction-scoped advisory lock migrations hold
// on PostgreSQL ("skiff" in ASCII); it is database-wide, so migrations
// of different schemas in one database take turns too.
const postgresLockKey int64 = 0x736b696666

// postgresLock: the advisory lock comes before everything, since two
// concurrent CREATE TABLE IF NOT EXISTS can both fail on PostgreSQL (a
// unique violation in its catalog); DDL is transactional there, so the
// table is created inside the transaction. Neither the wait for the lock
// nor a long migration is cut by the session's statement_timeout.
var postgresLock = migrationLock{
	lock: []string{
		`SET LOCAL statement_timeout = 0`,
		fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, postgresLockKey),
		createSchemaMigrations,
	},
}

// migrate brings db to the newest embedded schema: every migration newer
// than the database's version, in order, in one transaction, after lk
// (see migrationLock). A database whose version is newer than any
// embedded migration is refused.
func migrate(ctx context.Context, db *sql.DB, ms []migration, lk migrationLock) error {
	for _, q := range lk.setup {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("schema_migrations: %v: %w", err, ErrMigration)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrMigration)
	}
	defer tx.Rollback()
	for _, q := range lk.lock {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("locking schema_migrations: %v: %w", err, ErrMigration)
		}
	}
	var have int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("reading the schema version: %v: %w", err, ErrMigration)
	}
	latest := int64(len(ms))
	if have > latest {
		return fmt.Errorf("the database is at schema version %d, this skiff knows up to %d (upgrade skiff, or use another --db): %w", have, latest, ErrSchemaTooNew)
	}
	for _, m := range ms[have:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %v: %w", m.name, err, ErrMigration)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)`,
			m.version, m.name, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migration %s: %v: %w", m.name, err, ErrMigration)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%v: %w", err, ErrMigration)
	}
	return nil
}
