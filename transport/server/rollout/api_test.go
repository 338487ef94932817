package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skiff-dev/skiff/transport/api"
)

func TestPlanFromRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  api.RolloutRequest
		want Plan
		err  string
	}{
		{name: "waves text", req: api.RolloutRequest{Waves: "group=canary,10%,100%", Soak: "30m", ErrorThreshold: 0.1},
			want: Plan{Waves: []Wave{{Labels: map[string]string{"group": "canary"}}, {Percent: 10}, {Percent: 100}},
				SuccessThreshold: 0.9, ErrorThreshold: 0.1, MinDevices: 5, Soak: 30 * time.Minute}},
		{name: "plan list", req: api.RolloutRequest{Plan: []api.RolloutWave{{Percent: 5}, {Percent: 100}}, SuccessThreshold: 1, MinDevices: 1},
			want: Plan{Waves: pcts(5, 100), SuccessThreshold: 1, ErrorThreshold: 0.05, MinDevices: 1}},
		{name: "both", req: api.RolloutRequest{Waves: "100%", Plan: []api.RolloutWave{{Percent: 100}}}, err: "both waves and plan"},
		{name: "neither", req: api.RolloutRequest{}, err: "no waves"},
		{name: "bad list", req: api.RolloutRequest{Plan: []api.RolloutWave{{Percent: 50}, {Percent: 10}}}, err: "must increase"},
		{name: "bad soak", req: api.RolloutRequest{Waves: "100%", Soak: "a while"}, err: "soak"},
		{name: "bad threshold", req: api.RolloutRequest{Waves: "100%", ErrorThreshold: 2}, err: "error threshold 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanFromRequest(tc.req)
			if tc.err != "" {
				if !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PlanFromRequest = %v, want ErrPlan containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, p); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestStateAPI(t *testing.T) {
	s := goldenState(t)
	want := api.Rollout{
		ID: "0f8e2c4a9b7d6e5f", Channel: "stable", Image: "web", Target: targetDigest, Previous: prevDigest,
		Status: "paused", Wave: 1, PauseReason: "wave 2 (1%): 1 of 8 devices rolled back or failed (12.5% > 5%)",
		Plan: "group=canary,1%,10%,100%", SuccessThreshold: 0.9, ErrorThreshold: 0.05, MinDevices: 5, Soak: "30m0s",
		Pins:    map[string]string{"edge-berlin-17": pinDigest},
		Created: "2026-12-04T18:00:00Z", Rev: s.Rev,
		Waves: []api.RolloutWaveStatus{
			{Wave: "group=canary", Started: "2026-12-04T18:00:00Z", Succeeded: "2026-12-04T18:01:00Z", Devices: 3, Installed: 3},
			{Wave: "1%", Started: "2026-12-04T18:31:00Z", Devices: 8, Installed: 5, RolledBack: 1},
			{Wave: "10%"},
			{Wave: "100%"},
		},
	}
	if d := cmp.Diff(want, s.API()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
