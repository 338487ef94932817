//go:build integration

package fleetdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
)

// TestIntegrationPostgresSessionSettings: sessions get
// PostgresStatementTimeout and the pool PostgresMaxConns unless the DSN
// sets statement_timeout or pool_max_conns. (fleetdbtest imports this
// package, so the schema is made here.)
func TestIntegrationPostgresSessionSettings(t *testing.T) {
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
	for _, tc := range []struct {
		timeout, want    string
		conns, wantConns int
	}{{"", "30s", 0, PostgresMaxConns}, {"5s", "5s", 3, 3}} {
		q := u.Query()
		q.Set("search_path", schema)
		if tc.timeout != "" {
			q.Set("statement_timeout", tc.timeout)
		}
		if tc.conns != 0 {
			q.Set("pool_max_conns", fmt.Sprint(tc.conns))
		}
		dsn := *u
		dsn.RawQuery = q.Encode()
		s, err := OpenPostgres(context.Background(), dsn.String())
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = s.r.QueryRow(`SHOW statement_timeout`).Scan(&got)
		conns := s.r.Stats().MaxOpenConnections
		s.Close()
		if err != nil || got != tc.want {
			t.Errorf("statement_timeout=%q in the DSN: %q (%v), want %q", tc.timeout, got, err, tc.want)
		}
		if conns != tc.wantConns {
			t.Errorf("pool_max_conns=%d in the DSN: a pool of %d, want %d", tc.conns, conns, tc.wantConns)
		}
	}
}
