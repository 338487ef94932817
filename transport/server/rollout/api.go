package rollout

import (
	"fmt"
	"maps"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
)

// PlanFromRequest makes the plan of an api.RolloutRequest: its Waves text
// or its Plan list (exactly one), thresholds and Soak. The target (Ref or
// ConfigDigest) is the server's to resolve. Errors wrap ErrPlan.
func PlanFromRequest(req api.RolloutRequest) (Plan, error) {
	var p Plan
	switch {
	case req.Waves != "" && len(req.Plan) > 0:
		return Plan{}, fmt.Errorf("both waves and plan given: %w", ErrPlan)
	case req.Waves != "":
		var err error
		if p, err = ParsePlan(req.Waves); err != nil {
			return Plan{}, err
		}
	case len(req.Plan) > 0:
		for _, w := range req.Plan {
			p.Waves = append(p.Waves, Wave{Percent: w.Percent, Labels: maps.Clone(w.Labels)})
		}
	default:
		return Plan{}, fmt.Errorf("no waves (e.g. \"1%%,10%%,100%%\"): %w", ErrPlan)
	}
	p.SuccessThreshold, p.ErrorThreshold, p.MinDevices = req.SuccessThreshold, req.ErrorThreshold, req.MinDevices
	if req.Soak != "" {
		d, err := time.ParseDuration(req.Soak)
		if err != nil {
			return Plan{}, fmt.Errorf("soak: %v: %w", err, ErrPlan)
		}
		p.Soak = d
	}
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// API is s as the server shows it (api.Rollout), with each wave's last
// counts.
func (s *State) API() api.Rollout {
	p := s.Plan.withDefaults()
	r := api.Rollout{
		ID: s.ID, Channel: s.Channel, Image: s.Image, Target: s.Target, Previous: s.Previous,
		Status: string(s.Status), Wave: s.Wave, PauseReason: s.PauseReason,
		Plan: p.String(), SuccessThreshold: p.SuccessThreshold, ErrorThreshold: p.ErrorThreshold, MinDevices: p.MinDevices,
		Pins: maps.Clone(s.Pins), Created: timeString(s.Created), Rev: s.Rev,
	}
	if p.Soak != 0 {
		r.Soak = p.Soak.String()
	}
	for i, w := range p.Waves {
		ws := WaveState{}
		if i < len(s.Waves) {
			ws = s.Waves[i]
		}
		r.Waves = append(r.Waves, api.RolloutWaveStatus{
			Wave: w.String(), Started: timeString(ws.Started), Succeeded: timeString(ws.Succeeded),
			Devices: ws.Counts.Devices, Installed: ws.Counts.Installed, RolledBack: ws.Counts.RolledBack, Failed: ws.Counts.Failed,
		})
	}
	return r
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
