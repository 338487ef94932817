package rollout

import (
	"fmt"
	"math"
	"testing"
)

// TestBucketGolden pins the hash: every server must place a device in the
// same bucket, so a change here breaks rollouts in flight across a mixed
// upgrade. The values were computed independently (Python hashlib).
func TestBucketGolden(t *testing.T) {
	for _, tc := range []struct {
		salt, device string
		want         float64
	}{
		{"r1", "dev-0001", 43.57774859168452},
		{"r1", "dev-0002", 25.1852650910804},
		{"r2", "dev-0001", 97.03303414664506},
		{"", "", 43.048164923648166},
		{"rollout-abc", "edge-berlin-17", 17.252471969386484},
	} {
		if got := Bucket(tc.salt, tc.device); got != tc.want {
			t.Errorf("Bucket(%q, %q) = %v, want %v", tc.salt, tc.device, got, tc.want)
		}
	}
	// The separator keeps the salt and the ID apart.
	if Bucket("ab", "c") == Bucket("a", "bc") {
		t.Error(`Bucket("ab", "c") == Bucket("a", "bc")`)
	}
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("device-%05d", i)
	}
	return out
}

// TestWaveDistribution checks that each percentage wave gets its share of
// 10,000 synthetic devices, within four standard deviations.
func TestWaveDistribution(t *testing.T) {
	plan, err := ParsePlan("1%,10%,50%,100%")
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	got := make([]int, len(plan.Waves)+1)
	for _, id := range ids(n) {
		b := Bucket("rollout-7", id)
		if b < 0 || b >= 100 {
			t.Fatalf("Bucket(%q) = %v, not in [0, 100)", id, b)
		}
		got[WaveOf(plan, "rollout-7", id, nil)]++
	}
	if got[len(plan.Waves)] != 0 {
		t.Fatalf("%d devices in no wave", got[len(plan.Waves)])
	}
	prev := 0.0
	for i, w := range plan.Waves {
		p := (w.Percent - prev) / 100
		prev = w.Percent
		want := p * n
		tol := 4 * math.Sqrt(n*p*(1-p))
		if math.Abs(float64(got[i])-want) > tol {
			t.Errorf("wave %d (%v): %d devices, want %.0f ± %.0f", i+1, w, got[i], want, tol)
		}
	}
}

// TestSaltReshuffles checks that two rollouts pick their first waves
// independently: of two 10% waves, about 10% of one is in the other.
func TestSaltReshuffles(t *testing.T) {
	both, first := 0, 0
	for _, id := range ids(10000) {
		a, b := Bucket("rollout-1", id) < 10, Bucket("rollout-2", id) < 10
		if a {
			first++
			if b {
				both++
			}
		}
	}
	if first < 900 || first > 1100 || both < 60 || both > 140 {
		t.Errorf("10%% waves: %d devices in the first, %d of them in the second too; want ~1000 and ~100", first, both)
	}
}

func TestWaveOf(t *testing.T) {
	// Under salt "r1", dev-0002 has bucket 25.18 and dev-0001 43.58.
	plan := Plan{Waves: []Wave{
		{Labels: map[string]string{"group": "canary"}},
		{Percent: 26},
		{Labels: map[string]string{"group": "qa", "site": "berlin"}},
		{Percent: 44},
		{Percent: 100},
	}}
	for _, tc := range []struct {
		device string
		labels map[string]string
		want   int
	}{
		{"dev-0002", nil, 1},
		{"dev-0001", nil, 3},
		{"dev-0001", map[string]string{"group": "canary"}, 0},
		{"dev-0002", map[string]string{"group": "canary", "site": "berlin"}, 0},
		{"dev-0001", map[string]string{"group": "qa", "site": "berlin"}, 2},
		{"dev-0002", map[string]string{"group": "qa", "site": "berlin"}, 1}, // the percentage wave comes first
		{"dev-0001", map[string]string{"group": "qa"}, 3},                   // every pair must match
		{"dev-0001", map[string]string{"group": "Canary"}, 3},
		{"r2-high", nil, 4},
	} {
		if got := WaveOf(plan, "r1", tc.device, tc.labels); got != tc.want {
			t.Errorf("WaveOf(%s, %v) = %d, want %d (bucket %v)", tc.device, tc.labels, got, tc.want, Bucket("r1", tc.device))
		}
	}
	// A plan without 100% (not valid) leaves devices in no wave.
	if got := WaveOf(Plan{Waves: pcts(1)}, "r1", "dev-0001", nil); got != 1 {
		t.Errorf("no wave: %d, want 1", got)
	}
}
