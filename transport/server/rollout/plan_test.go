package rollout

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func pcts(ps ...float64) []Wave {
	ws := make([]Wave, len(ps))
	for i, p := range ps {
		ws[i] = Wave{Percent: p}
	}
	return ws
}

func TestParsePlan(t *testing.T) {
	canary := Wave{Labels: map[string]string{"group": "canary"}}
	for _, tc := range []struct {
		in    string
		waves []Wave
		err   string // substring of the error; "" for success
	}{
		{in: "100%", waves: pcts(100)},
		{in: "1%,10%,50%,100%", waves: pcts(1, 10, 50, 100)},
		{in: " 0.5% , 10% ,100%", waves: pcts(0.5, 10, 100)},
		{in: "group=canary,25%,100%", waves: []Wave{canary, {Percent: 25}, {Percent: 100}}},
		{in: "1%,group=canary,100%", waves: []Wave{{Percent: 1}, canary, {Percent: 100}}},
		{in: "group=qa+site=berlin,100%", waves: []Wave{{Labels: map[string]string{"group": "qa", "site": "berlin"}}, {Percent: 100}}},
		{in: "k8s.io/zone=eu-1:a,100%", waves: []Wave{{Labels: map[string]string{"k8s.io/zone": "eu-1:a"}}, {Percent: 100}}},

		{in: "", err: "no waves"},
		{in: "  ", err: "no waves"},
		{in: "10%,5%,100%", err: `wave 2 "5%": percentages are cumulative and must increase (after 10%)`},
		{in: "10%,10%,100%", err: "must increase"},
		{in: "10%,150%", err: `wave 2 "150%": percentage above 100%`},
		{in: "0%,100%", err: "above 0%"},
		{in: "1%,50%", err: "the last wave must be 100%"},
		{in: "group=canary", err: "the last wave must be 100%"},
		{in: "100%,group=canary", err: "100% must be the last wave"},
		{in: "1%,,100%", err: `wave 2 "": empty`},
		{in: "1%,100%,", err: `wave 3 "": empty`},
		{in: "ten%", err: "a percentage is digits"},
		{in: "1e2%", err: "a percentage is digits"},
		{in: "-5%,100%", err: "a percentage is digits"},
		{in: ".5%,100%", err: "a percentage is digits"},
		{in: "5.%,100%", err: "a percentage is digits"},
		{in: "NaN%", err: "a percentage is digits"},
		{in: "10,100%", err: "neither a percentage (10%) nor a label"},
		{in: "canary,100%", err: "neither a percentage"},
		{in: "group=,100%", err: `label value ""`},
		{in: "=canary,100%", err: `label key ""`},
		{in: "group=can ary,100%", err: `label value "can ary"`},
		{in: "group=a+group=b,100%", err: `label "group" given twice`},
		{in: "group=a+x,100%", err: `"x" is no key=value pair`},
		{in: "group=a,group=a,100%", err: "repeats wave 1"},
		{in: "group=a%,100%", err: "a percentage is digits"},
		{in: strings.Repeat("group=a,", MaxWaves) + "100%", err: "at most 32"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePlan(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrPlan) {
					t.Fatalf("ParsePlan(%q) = %v, want an ErrPlan containing %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Plan{Waves: tc.waves, SuccessThreshold: 0.9, ErrorThreshold: 0.05, MinDevices: 5}
			if d := cmp.Diff(want, p); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestPlanString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1%,10%,50%,100%", "1%,10%,50%,100%"},
		{" 0.50% ,100%", "0.5%,100%"},
		{"site=berlin+group=qa,100%", "group=qa+site=berlin,100%"},
	} {
		p, err := ParsePlan(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.String(); got != tc.want {
			t.Errorf("ParsePlan(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPlanValidateThresholds(t *testing.T) {
	ok := pcts(10, 100)
	for _, tc := range []struct {
		name string
		p    Plan
		err  string
	}{
		{"zero thresholds are the defaults", Plan{Waves: ok}, ""},
		{"extremes", Plan{Waves: ok, SuccessThreshold: 1, ErrorThreshold: 0.999, MinDevices: 1000, Soak: time.Hour}, ""},
		{"success above 1", Plan{Waves: ok, SuccessThreshold: 1.5}, "success threshold 1.5"},
		{"success negative", Plan{Waves: ok, SuccessThreshold: -0.1}, "success threshold"},
		{"error 1", Plan{Waves: ok, ErrorThreshold: 1}, "error threshold 1"},
		{"min devices negative", Plan{Waves: ok, MinDevices: -1}, "min devices -1"},
		{"soak negative", Plan{Waves: ok, Soak: -time.Second}, "soak -1s"},
		{"no waves", Plan{}, "no waves"},
		{"both kinds", Plan{Waves: []Wave{{Percent: 5, Labels: map[string]string{"a": "b"}}, {Percent: 100}}}, "both a percentage and labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrPlan) {
				t.Fatalf("Validate = %v, want an ErrPlan containing %q", err, tc.err)
			}
		})
	}
}

func TestPlanJSON(t *testing.T) {
	p := Plan{
		Waves:            []Wave{{Labels: map[string]string{"group": "canary"}}, {Percent: 0.5}, {Percent: 100}},
		SuccessThreshold: 0.95, ErrorThreshold: 0.02, MinDevices: 3, Soak: 90 * time.Minute,
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"waves":[{"labels":{"group":"canary"}},{"percent":0.5},{"percent":100}],"success_threshold":0.95,"error_threshold":0.02,"min_devices":3,"soak":"1h30m0s"}`
	if string(b) != want {
		t.Errorf("Marshal = %s\nwant      %s", b, want)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if err := json.Unmarshal([]byte(`{"waves":[{"percent":100}],"soak":"soon"}`), &back); !errors.Is(err, ErrPlan) {
		t.Errorf("bad soak: %v, want ErrPlan", err)
	}
	if err := json.Unmarshal([]byte(`{"waves":[{"percent":100}]}`), &back); err != nil || back.Soak != 0 || back.SuccessThreshold != 0 {
		t.Errorf("minimal plan: %+v, %v", back, err)
	}
}

// FuzzParsePlan checks that ParsePlan never panics, that what it accepts
// is valid, and that its String parses back to the same plan.
func FuzzParsePlan(f *testing.F) {
	for _, s := range []string{
		"1%,10%,50%,100%", "group=canary,25%,100%", "0.5%,100%", "100%",
		"group=qa+site=berlin,1%,100%", "10%,5%,100%", "1%,150%", "1%,50%",
		"", ",", "=", "%", "1e2%", "group=a+group=b,100%", "100%,group=a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlan(s)
		if err != nil {
			if !errors.Is(err, ErrPlan) {
				t.Fatalf("ParsePlan(%q): %v does not wrap ErrPlan", s, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParsePlan(%q) accepted an invalid plan: %v", s, err)
		}
		if last := p.Waves[len(p.Waves)-1]; last.IsGroup() || last.Percent != 100 {
			t.Fatalf("ParsePlan(%q): last wave %v", s, last)
		}
		back, err := ParsePlan(p.String())
		if err != nil {
			t.Fatalf("ParsePlan(%q).String() = %q does not parse: %v", s, p.String(), err)
		}
		if d := cmp.Diff(p, back); d != "" {
			t.Fatalf("ParsePlan(%q) round trip (-first +second):\n%s", s, d)
		}
	})
}
