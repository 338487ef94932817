package fleetdbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresEnv names the variable holding the URL of the PostgreSQL
// database the tests may use (testdata/infra/start-infra.sh writes it to
// $INFRA/env.sh).
const PostgresEnv = "SKIFF_POSTGRES"

// PostgresDSN returns the DSN of a new, empty schema in the database
// $SKIFF_POSTGRES names (its search_path set to that schema), dropped
// with everything in it when t ends, so runs and tests do not see each
// other's rows. Without SKIFF_POSTGRES it skips t, or fails it when CI
// is set (CI starts PostgreSQL: a missing URL is a broken setup there).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set under CI: start PostgreSQL (COMPONENTS=postgres testdata/infra/start-infra.sh) and source $INFRA/env.sh", PostgresEnv)
		}
		t.Skipf("%s is not set: start PostgreSQL with COMPONENTS=postgres testdata/infra/start-infra.sh, then . /tmp/skiff-infra/env.sh", PostgresEnv)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "skiff_test_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(context.Background(), `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		t.Fatalf("creating schema %s in %s: %v", schema, u.Redacted(), err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
