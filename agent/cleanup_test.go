package agent

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

// TestRemoveUnwantedDeltas: an update removes the downloads in
// work_dir/deltas no image wants (a delta for a target a newer one
// replaced, one applied by another path), keeps one another image's state
// still wants, one written in the last minutes and anything that is not a
// download, removes even a wanted one after 7 days, and resumes its own
// partial download whatever its age.
func TestRemoveUnwantedDeltas(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	fs := &fakeServer{t: t, p: p, delta: p.forward}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	y := "state_dir: " + d.stateDir + "\n" +
		"trusted_keys: ['" + d.trusted + "']\n" +
		"images:\n"
	for _, n := range []string{"web", "cam", "db"} {
		y += "  - name: " + n + "\n" +
			"    engine: oci:" + filepath.Join(d.dir, n) + "\n" +
			"    ref: " + n + ":stable\n" +
			"    source:\n" + indent(serverSource(srv.URL), "      ")
	}
	y = strings.Replace(y, "oci:"+filepath.Join(d.dir, "web"), "oci:"+d.images, 1)
	cfg, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	a := newAgent(t, cfg)
	hex := func(s string) string { return digest.FromString(s).Encoded() }
	// cam and db were checked before and want these deltas.
	if _, err := a.state.Update("cam", func(s *ImageState) { s.WantedDelta = hex("cam") }); err != nil {
		t.Fatal(err)
	}
	if _, err := a.state.Update("db", func(s *ImageState) { s.WantedDelta = hex("db") }); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.WorkDir, "deltas")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	own := digest.FromBytes(p.forward).Encoded()
	files := []struct {
		name string
		age  time.Duration
		data []byte
		keep bool
	}{
		{hex("older target") + ".skiff.part", time.Hour, []byte("x"), false},
		{hex("applied elsewhere") + ".skiff", 3 * time.Hour, []byte("x"), false},
		{hex("cam") + ".skiff.part", time.Hour, []byte("x"), true},
		{hex("db") + ".skiff.part", 8 * 24 * time.Hour, []byte("x"), false},
		{hex("just now") + ".skiff.part", time.Minute, []byte("x"), true},
		{hex("notes") + ".skiff.meta", 30 * 24 * time.Hour, []byte("x"), true},
		{"README", 30 * 24 * time.Hour, []byte("x"), true},
		// web's own delta, half downloaded long ago: resumed, then
		// removed once applied.
		{own + ".skiff.part", 9 * 24 * time.Hour, p.forward[:len(p.forward)/2], false},
	}
	for _, f := range files {
		pth := writeFile(t, dir, f.name, f.data)
		if err := os.Chtimes(pth, now.Add(-f.age), now.Add(-f.age)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := a.Update(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Updated {
		t.Fatalf("update: %+v", res)
	}
	if got, want := fs.fetchedBytes.Load(), int64(len(p.forward)-len(p.forward)/2); got != want {
		t.Errorf("fetched %d bytes, want %d (the rest of the partial download)", got, want)
	}
	var want []string
	for _, f := range files {
		if f.keep {
			want = append(want, f.name)
		}
	}
	sort.Strings(want)
	var got []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("work_dir/deltas after the update (-want +got):\n%s", diff)
	}
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	if w := st.Images["web"].WantedDelta; w != "" {
		t.Errorf("web still wants %s after its update", w)
	}
	if w := st.Images["cam"].WantedDelta; w != hex("cam") {
		t.Errorf("cam's wanted delta changed to %q", w)
	}

	// Up to date: a download of web's left by anything is not wanted.
	stale := writeFile(t, dir, own+".skiff.part", []byte("x"))
	if err := os.Chtimes(stale, now.Add(-time.Hour), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Update(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a download web no longer wants is still there: %v", err)
	}
}
