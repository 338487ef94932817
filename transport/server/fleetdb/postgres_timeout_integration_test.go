//go:build integration

package fleetdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
)

// TestIntegrationPostgresStatementTimeout: sessions get
// PostgresStatementTimeout unless the DSN sets statement_timeout.
// (fleetdbtest imports this package, so the schema is made here.)
func TestIntegrationPostgresStatementTimeout(t *testing.T) {
	base := os.Getenv("SKIFF_POSTGRES")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SKIFF_POSTGRES is not set under CI")
		}
		t.Skip("SKIFF_POSTGRES is not set: start PostgreSQL with COMPONENTS=postgres testdata/infra/start-infra.sh, then . /tmp/skiff-infra/env.sh")
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "skiff_test_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]string{"": "30s", "5s": "5s"} {
		q := u.Query()
		q.Set("search_path", schema)
		if set != "" {
			q.Set("statement_timeout", set)
		}
		dsn := *u
		dsn.RawQuery = q.Encode()
		s, err := OpenPostgres(context.Background(), dsn.String())
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = s.r.QueryRow(`SHOW statement_timeout`).Scan(&got)
		s.Close()
		if err != nil || got != want {
			t.Errorf("statement_timeout=%q in the DSN: %q (%v), want %q", set, got, err, want)
		}
	}
}
