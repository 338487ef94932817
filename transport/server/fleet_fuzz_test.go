package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
)

// FuzzReport: whatever a device sends as a report body, decoding and
// validation return an error or a report that validates again after a
// round trip through JSON; never a panic.
func FuzzReport(f *testing.F) {
	ok, _ := json.Marshal(testReport("0123456789abcdef0123456789abcdef", "dev-1", "stable", "web"))
	f.Add(ok)
	f.Add([]byte(`{"id":"0123456789abcdef0123456789abcdef","device":"d","channel":"c","image":"i","result":"failed","error":"x","time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"","time":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"0123456789abcdef0123456789abcdef"} {}`))
	f.Add([]byte(`{"bytes_downloaded":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", api.PathReports, bytes.NewReader(body))
		var rep api.Report
		if err := decodeJSON(r, maxBody, &rep); err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("decode error %v is not ErrBadRequest", err)
			}
			return
		}
		if err := validateReport(&rep); err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("validate error %v is not ErrBadRequest", err)
			}
			return
		}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var again api.Report
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		if err := validateReport(&again); err != nil {
			t.Fatalf("a valid report is invalid after a round trip: %v\n%s", err, b)
		}
	})
}

// FuzzDevicesQuery: every query GET /v1/devices accepts makes a query the
// database runs (no filter value reaches the SQL text); what it refuses
// is ErrBadRequest.
func FuzzDevicesQuery(f *testing.F) {
	st, err := fleetdb.Open(context.Background(), "sqlite:"+filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	for _, s := range []string{"", "channel=stable&image=web", "stale=24h&limit=10&after=dev-9", "result=failed",
		"config_digest=sha256:" + string(bytes.Repeat([]byte("a"), 64)), "channel=a'--", "after=%27%20OR%201=1", "limit=1000&stale=1ns"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, err := devicesFilter(q, now)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("filter error %v is not ErrBadRequest", err)
			}
			return
		}
		if _, _, err := st.Devices(context.Background(), flt); err != nil {
			t.Fatalf("query %q: %v", raw, err)
		}
	})
}
