package fleetdb

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOpenPostgresErrors: a DSN that does not parse is ErrBadDSN, a
// database that does not answer ErrUnreachable naming its host; neither
// error holds the password.
func TestOpenPostgresErrors(t *testing.T) {
	const pw = "s3cret-pw"
	for _, tc := range []struct {
		dsn      string
		want     error
		contains string
	}{
		{"postgres://skiff:" + pw + "@db.example:notaport/skiff", ErrBadDSN, "postgres://skiff:xxxxx@"},
		{"postgresql://skiff:" + pw + "@127.0.0.1:55432/skiff?sslmode=sometimes", ErrBadDSN, "sslmode"},
		{"postgres://skiff@127.0.0.1:1/skiff?password=" + pw + "&connect_timeout=5", ErrUnreachable, "127.0.0.1:1/skiff"},
		{"postgres://skiff:" + pw + "@127.0.0.1:1/skiff", ErrUnreachable, "postgres 127.0.0.1:1/skiff (user skiff)"},
		{"postgres://skiff:" + pw + "@127.0.0.1:1/skiff?pool_max_conns=many", ErrBadDSN, "pool_max_conns"},
		{"postgres://skiff:" + pw + "@127.0.0.1:1/skiff?pool_max_conns=0", ErrBadDSN, "want 1 to 1000"},
		{"postgres://skiff:" + pw + "@127.0.0.1:1/skiff?pool_max_conns=4", ErrUnreachable, "127.0.0.1:1"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := Open(ctx, tc.dsn)
		cancel()
		if !errors.Is(err, tc.want) {
			t.Errorf("Open(%s): %v, want %v", Redact(tc.dsn), err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Open(%s): the error shows the password: %v", Redact(tc.dsn), err)
		}
		if !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("Open(%s): %q does not say %q", Redact(tc.dsn), err, tc.contains)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"sqlite:/var/lib/skiff/fleet.db":                              "sqlite:/var/lib/skiff/fleet.db",
		"postgres://skiff@db:5432/skiff?sslmode=require":              "postgres://skiff@db:5432/skiff?sslmode=require",
		"postgres://skiff:pw@db:5432/skiff":                           "postgres://skiff:xxxxx@db:5432/skiff",
		"postgresql://skiff@db/skiff?password=pw&sslmode=disable":     "postgresql://skiff@db/skiff?password=xxxxx&sslmode=disable",
		"postgres://skiff:p%zzw@db/skiff":                             "postgres://skiff:xxxxx@db/skiff",
		"postgres://skiff:a:b@db:x/skiff?password=pw&sslmode=disable": "postgres://skiff:xxxxx@db:x/skiff?password=xxxxx&sslmode=disable",
		"mysql:x": "mysql:x",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
