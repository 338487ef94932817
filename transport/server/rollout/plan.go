package rollout

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of a Plan's thresholds; a zero field selects its default.
const (
	DefaultSuccessThreshold = 0.9
	DefaultErrorThreshold   = 0.05
	DefaultMinDevices       = 5
)

// Bounds of a plan, so that a plan from the network stays small.
const (
	MaxWaves    = 32
	maxLabelLen = 128
)

// Plan says how a target is rolled out: in waves, each started once the
// one before it succeeded.
type Plan struct {
	// Waves, in order. The last one is 100%: a rollout that completes has
	// reached every device.
	Waves []Wave
	// SuccessThreshold is the fraction (0, 1] of a wave's devices that must
	// have installed the target before the next wave starts; 0 selects
	// DefaultSuccessThreshold.
	SuccessThreshold float64
	// ErrorThreshold is the fraction [0, 1) of a wave's devices that rolled
	// back or failed above which the rollout pauses; 0 selects
	// DefaultErrorThreshold (to pause at the first failure, use a tiny
	// value such as 1e-9).
	ErrorThreshold float64
	// MinDevices is the least number of devices a percentage wave is
	// judged on: min(MinDevices, devices on the track). 0 selects
	// DefaultMinDevices; 1 is no minimum.
	MinDevices int
	// Soak is how long a wave waits after reaching SuccessThreshold before
	// the next wave starts (or the rollout completes). 0: no wait.
	Soak time.Duration
}

// Wave is one step of a Plan: either a percentage or a label selector.
type Wave struct {
	// Percent, when set, makes this a percentage wave: it covers the
	// devices whose Bucket is below Percent (cumulative, so 10% after 1%
	// adds 9% of the devices). In (0, 100].
	Percent float64 `json:"percent,omitempty"`
	// Labels, when set, makes this a group wave: it covers the devices
	// whose labels include every one of these key=value pairs.
	Labels map[string]string `json:"labels,omitempty"`
}

// IsGroup reports whether w selects devices by label.
func (w Wave) IsGroup() bool { return len(w.Labels) > 0 }

// String is the wave in ParsePlan's syntax: "10%" or "group=canary" (pairs
// joined by "+", sorted by key).
func (w Wave) String() string {
	if !w.IsGroup() {
		return strconv.FormatFloat(w.Percent, 'f', -1, 64) + "%"
	}
	keys := slices.Sorted(maps.Keys(w.Labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + w.Labels[k]
	}
	return strings.Join(parts, "+")
}

// matches reports whether a device with these labels is in group wave w.
func (w Wave) matches(labels map[string]string) bool {
	for k, v := range w.Labels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// String is the plan's waves in ParsePlan's syntax, e.g.
// "group=canary,25%,100%". Thresholds and Soak are not part of it.
func (p Plan) String() string {
	parts := make([]string, len(p.Waves))
	for i, w := range p.Waves {
		parts[i] = w.String()
	}
	return strings.Join(parts, ",")
}

// ParsePlan parses the CLI form of a plan's waves: a comma-separated list
// of waves, each either a percentage ("1%", "0.5%", "100%") or one or more
// label pairs joined by "+" ("group=canary", "group=qa+site=berlin").
// Spaces around a wave are ignored.
//
// Percentages are cumulative and must increase from one percentage wave to
// the next; the last wave must be "100%" (so a completed rollout has
// reached every device; to stop at a share, pause the rollout). Group waves
// may come anywhere before it. The returned plan has the default
// thresholds. Errors wrap ErrPlan.
func ParsePlan(text string) (Plan, error) {
	var p Plan
	if strings.TrimSpace(text) == "" {
		return p, fmt.Errorf("no waves (e.g. \"1%%,10%%,100%%\"): %w", ErrPlan)
	}
	fields := strings.Split(text, ",")
	if len(fields) > MaxWaves {
		return p, fmt.Errorf("%d waves, at most %d: %w", len(fields), MaxWaves, ErrPlan)
	}
	for i, f := range fields {
		w, err := parseWave(strings.TrimSpace(f))
		if err != nil {
			return Plan{}, fmt.Errorf("wave %d %q: %v: %w", i+1, strings.TrimSpace(f), err, ErrPlan)
		}
		p.Waves = append(p.Waves, w)
	}
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	return p, nil
}

func parseWave(s string) (Wave, error) {
	if s == "" {
		return Wave{}, fmt.Errorf("empty")
	}
	if num, ok := strings.CutSuffix(s, "%"); ok {
		if !isDecimal(num) {
			return Wave{}, fmt.Errorf("a percentage is digits with an optional fraction, e.g. 10%% or 0.5%%")
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return Wave{}, err
		}
		return Wave{Percent: v}, nil
	}
	if !strings.Contains(s, "=") {
		return Wave{}, fmt.Errorf("neither a percentage (10%%) nor a label (group=canary)")
	}
	w := Wave{Labels: map[string]string{}}
	for pair := range strings.SplitSeq(s, "+") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return Wave{}, fmt.Errorf("%q is no key=value pair", pair)
		}
		if _, dup := w.Labels[k]; dup {
			return Wave{}, fmt.Errorf("label %q given twice", k)
		}
		w.Labels[k] = v
	}
	return w, nil
}

func isDecimal(s string) bool {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || !allDigits(intPart) {
		return false
	}
	return !hasDot || (frac != "" && allDigits(frac))
}

func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validKey(k string) bool {
	if k == "" || len(k) > maxLabelLen || !alnum(k[0]) {
		return false
	}
	for _, c := range []byte(k) {
		if !alnum(c) && c != '.' && c != '_' && c != '-' && c != '/' {
			return false
		}
	}
	return true
}

func validValue(v string) bool {
	if v == "" || len(v) > maxLabelLen {
		return false
	}
	for _, c := range []byte(v) {
		if !alnum(c) && c != '.' && c != '_' && c != '-' && c != ':' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// withDefaults returns p with its zero thresholds set to the defaults.
func (p Plan) withDefaults() Plan {
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = DefaultSuccessThreshold
	}
	if p.ErrorThreshold == 0 {
		p.ErrorThreshold = DefaultErrorThreshold
	}
	if p.MinDevices == 0 {
		p.MinDevices = DefaultMinDevices
	}
	return p
}

// Validate checks the plan as ParsePlan does, and its thresholds: zero
// thresholds are valid (they select the defaults). Errors wrap ErrPlan.
func (p Plan) Validate() error {
	if len(p.Waves) == 0 {
		return fmt.Errorf("no waves: %w", ErrPlan)
	}
	if len(p.Waves) > MaxWaves {
		return fmt.Errorf("%d waves, at most %d: %w", len(p.Waves), MaxWaves, ErrPlan)
	}
	last := 0.0 // the last percentage so far
	for i, w := range p.Waves {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("wave %d %q: %s: %w", i+1, w.String(), fmt.Sprintf(format, a...), ErrPlan)
		}
		switch {
		case w.IsGroup() && w.Percent != 0:
			return bad("both a percentage and labels")
		case w.IsGroup():
			for k, v := range w.Labels {
				if !validKey(k) {
					return bad("label key %q: want 1-%d characters of A-Z a-z 0-9 . _ - or /, from a letter or digit", k, maxLabelLen)
				}
				if !validValue(v) {
					return bad("label value %q: want 1-%d characters of A-Z a-z 0-9 . _ - or :", v, maxLabelLen)
				}
			}
			for j := range i {
				if maps.Equal(p.Waves[j].Labels, w.Labels) {
					return bad("repeats wave %d (a device is in the first wave it matches)", j+1)
				}
			}
		case math.IsNaN(w.Percent) || w.Percent <= 0:
			return bad("percentage must be above 0%%")
		case w.Percent > 100:
			return bad("percentage above 100%%")
		case w.Percent <= last:
			return bad("percentages are cumulative and must increase (after %s%%)", strconv.FormatFloat(last, 'f', -1, 64))
		default:
			last = w.Percent
		}
		if last == 100 && i != len(p.Waves)-1 {
			return fmt.Errorf("wave %d: 100%% must be the last wave: %w", i+1, ErrPlan)
		}
	}
	if last != 100 {
		return fmt.Errorf("the last wave must be 100%% (a completed rollout reaches every device; pause it to stop at a share): %w", ErrPlan)
	}
	switch {
	case math.IsNaN(p.SuccessThreshold) || p.SuccessThreshold < 0 || p.SuccessThreshold > 1:
		return fmt.Errorf("success threshold %v: not in (0, 1]: %w", p.SuccessThreshold, ErrPlan)
	case math.IsNaN(p.ErrorThreshold) || p.ErrorThreshold < 0 || p.ErrorThreshold >= 1:
		return fmt.Errorf("error threshold %v: not in [0, 1): %w", p.ErrorThreshold, ErrPlan)
	case p.MinDevices < 0:
		return fmt.Errorf("min devices %d: negative: %w", p.MinDevices, ErrPlan)
	case p.Soak < 0:
		return fmt.Errorf("soak %v: negative: %w", p.Soak, ErrPlan)
	}
	return nil
}

// planJSON is Plan's JSON form: Soak as a Go duration string ("1h30m").
type planJSON struct {
	Waves            []Wave  `json:"waves"`
	SuccessThreshold float64 `json:"success_threshold,omitempty"`
	ErrorThreshold   float64 `json:"error_threshold,omitempty"`
	MinDevices       int     `json:"min_devices,omitempty"`
	Soak             string  `json:"soak,omitempty"`
}

// MarshalJSON writes the plan as {"waves":[{"percent":1},{"labels":{…}}],
// "success_threshold":0.9, "error_threshold":0.05, "min_devices":5,
// "soak":"1h0m0s"}; zero fields are left out.
func (p Plan) MarshalJSON() ([]byte, error) {
	j := planJSON{Waves: p.Waves, SuccessThreshold: p.SuccessThreshold, ErrorThreshold: p.ErrorThreshold, MinDevices: p.MinDevices}
	if p.Soak != 0 {
		j.Soak = p.Soak.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads MarshalJSON's form. It does not validate: call
// Validate on plans from outside.
func (p *Plan) UnmarshalJSON(b []byte) error {
	var j planJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var soak time.Duration
	if j.Soak != "" {
		d, err := time.ParseDuration(j.Soak)
		if err != nil {
			return fmt.Errorf("soak: %v: %w", err, ErrPlan)
		}
		soak = d
	}
	*p = Plan{Waves: j.Waves, SuccessThreshold: j.SuccessThreshold, ErrorThreshold: j.ErrorThreshold, MinDevices: j.MinDevices, Soak: soak}
	return nil
}
