package rollout_test

import (
	"fmt"
	"time"

	"github.com/skiff-dev/skiff/transport/server/rollout"
)

func ExampleParsePlan() {
	p, err := rollout.ParsePlan("group=canary, 1%, 10%, 100%")
	fmt.Println(p, p.SuccessThreshold, p.ErrorThreshold, err)
	_, err = rollout.ParsePlan("10%,5%,100%")
	fmt.Println(err)
	// Output:
	// group=canary,1%,10%,100% 0.9 0.05 <nil>
	// wave 2 "5%": percentages are cumulative and must increase (after 10%): invalid rollout plan
}

func ExampleState_Advance() {
	const (
		v1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		v2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	)
	plan, _ := rollout.ParsePlan("1%,10%,100%")
	now := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)
	s, _ := rollout.New("7c1e", "stable", "web", v2, v1, plan, now)

	_, ev := s.Advance(now, rollout.Counts{Fleet: 1000, Devices: 10, Installed: 10})
	fmt.Println(ev)
	_, ev = s.Advance(now, rollout.Counts{Fleet: 1000, Devices: 100, Installed: 60, RolledBack: 9})
	fmt.Println(ev)
	digest, why := rollout.TargetFor(s, "device-42", nil, v1)
	fmt.Println(digest == v1, why)
	// Output:
	// wave 2 (10%) started: wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%)
	// paused: wave 2 (10%): 9 of 100 devices rolled back or failed (9% > 5%)
	// true rollout 7c1e paused at wave 2 (10%)
}
