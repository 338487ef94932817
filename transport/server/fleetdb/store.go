package fleetdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
)

// Sentinel errors of the store.
var (
	// ErrBadDSN: the data source name names no backend this binary has.
	ErrBadDSN = errors.New("bad database name")
	// ErrSchemaTooNew: the database was migrated by a newer skiff; this
	// binary does not know its schema and refuses to use it.
	ErrSchemaTooNew = errors.New("database schema newer than this binary")
	// ErrUnreachable: no connection to the database server (not running,
	// wrong host or port, or it refused the login or the database name).
	ErrUnreachable = errors.New("database unreachable")
	// ErrNoDriver: a device build (-tags skiff_device) has no database
	// drivers; the rollout server needs a build without the tag.
	ErrNoDriver = errors.New("no database driver in this build")
	// ErrMigration: applying a migration failed (the database is left at
	// the version before it).
	ErrMigration = errors.New("database migration failed")
)

// Checkin is what one check-in tells the inventory.
type Checkin struct {
	Device, Channel, Image string
	// ConfigDigest is what the device runs ("" for nothing).
	ConfigDigest string
	AgentVersion string
	Platform     string
	// Labels are the device's labels (rollout group waves select on
	// them); nil for none.
	Labels map[string]string
	Time   time.Time
}

// Filter narrows Devices. Zero fields do not filter.
type Filter struct {
	Channel, Image, ConfigDigest string
	// Result is the result of the last report (api.Result*).
	Result string
	// SeenBefore keeps rows whose last check-in is before it (stale
	// devices; never seen counts as before).
	SeenBefore time.Time
	// After is the pagination cursor: only devices whose ID sorts after it.
	After string
	// Limit is the most devices returned (default 100, at most MaxLimit).
	Limit int
}

// MaxLimit is the most devices one Devices call returns.
const MaxLimit = 1000

// DefaultLimit is the page size when Filter.Limit is 0.
const DefaultLimit = 100

// Store keeps the inventory and the reports. Implementations are safe for
// concurrent use.
type Store interface {
	// RecordCheckin upserts the (device, image) row of c; an older
	// check-in than the row's last one changes nothing.
	RecordCheckin(ctx context.Context, c Checkin) error
	// AddReport stores r unless a report with its ID is stored already
	// (then added is false and nothing changes), and makes it the row's
	// last report unless that one is newer.
	AddReport(ctx context.Context, r api.Report, received time.Time) (added bool, err error)
	// Devices lists the devices with at least one row matching f, sorted
	// by ID, each with its matching rows sorted by image; next is the
	// cursor of the following page ("" on the last).
	Devices(ctx context.Context, f Filter) (devs []api.Device, next string, err error)
	// PruneReports deletes the reports received before before and returns
	// how many it deleted. The inventory keeps each row's last report; a
	// pruned report sent again is stored again.
	PruneReports(ctx context.Context, before time.Time) (int64, error)
	// Close releases the database.
	Close() error
}

// Open opens (creating and migrating it if needed) the store dsn names:
// "sqlite:PATH" (OpenSQLite) or "postgres://…" / "postgresql://…"
// (OpenPostgres). Its errors show the DSN as Redact does.
func Open(ctx context.Context, dsn string) (Store, error) {
	scheme, rest, ok := strings.Cut(dsn, ":")
	switch {
	case ok && scheme == "sqlite" && rest != "":
		return OpenSQLite(ctx, rest)
	case ok && (scheme == "postgres" || scheme == "postgresql") && strings.HasPrefix(rest, "//"):
		return OpenPostgres(ctx, dsn)
	}
	return nil, fmt.Errorf("%q: want sqlite:PATH or postgres://[USER@]HOST[:PORT]/DATABASE: %w", Redact(dsn), ErrBadDSN)
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
