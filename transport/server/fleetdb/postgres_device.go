//go:build skiff_device

package fleetdb

import (
	"context"
	"fmt"
)

// OpenPostgres: a device build (-tags skiff_device) has no database
// drivers; the rollout server is built without the tag.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	return nil, fmt.Errorf("%s: this skiff is a device build (-tags skiff_device) without the PostgreSQL driver: %w", Redact(dsn), ErrNoDriver)
}
