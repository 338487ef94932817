package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/layerfs"
)

// Sentinel errors, wrapped with what was wrong.
var (
	// ErrBadPair: a pair specification or pairs file cannot be used (bad
	// syntax, duplicate name, unreadable file, image that cannot be opened).
	ErrBadPair = errors.New("bench: bad pair")
	// ErrUnknownMethod: a method name that is not registered.
	ErrUnknownMethod = errors.New("bench: unknown method")
	// ErrNotInstalled: a tool a method needs is not installed.
	ErrNotInstalled = errors.New("bench: tool not installed")
)

// Pair is one benchmark input: the image a device has (From) and the image
// it should get (To), as image references (see layerfs.ParseRef).
type Pair struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Method is one way of moving a device from a pair's base to its target.
type Method interface {
	// Name identifies the method in tables, JSON and --methods.
	Name() string
	// Run measures the method on a prepared pair. workdir is an empty
	// directory the method may fill; it is removed afterwards. Failures
	// are reported in the Result (Error, NotInstalled), not returned.
	Run(ctx context.Context, p *Prepared, workdir string) Result
}

// Verification says whether a method's output was checked against the
// target.
type Verification int

const (
	// NotChecked: the method does not rebuild layer tars (or failed before).
	NotChecked Verification = iota
	// Exact: every rebuilt layer tar has the target's diff_id.
	Exact
	// Mismatch: some rebuilt layer differs from the target.
	Mismatch
)

var verificationNames = [...]string{NotChecked: "n/a", Exact: "exact", Mismatch: "mismatch"}

// String returns "n/a", "exact" or "mismatch".
func (v Verification) String() string {
	if v < 0 || int(v) >= len(verificationNames) {
		return fmt.Sprintf("Verification(%d)", int(v))
	}
	return verificationNames[v]
}

// MarshalText implements encoding.TextMarshaler.
func (v Verification) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (v *Verification) UnmarshalText(b []byte) error {
	for i, n := range verificationNames {
		if n == string(b) {
			*v = Verification(i)
			return nil
		}
	}
	return fmt.Errorf("verification %q: want n/a, exact or mismatch", b)
}

// Result is what one method measured on one pair. Sizes are bytes, memory
// is the peak resident set size in bytes (0: not measured, for work done
// inside the harness process). Times and memory of several child processes
// (one per changed layer, or several steps) are summed and maxed.
type Result struct {
	Method    string `json:"method"`
	WireBytes int64  `json:"wire_bytes"`
	// Extra is further bytes the method needs that are not the download
	// (rdiff's signature, which the device computes and uploads);
	// ExtraWhat names them.
	Extra     int64         `json:"extra_bytes,omitempty"`
	ExtraWhat string        `json:"extra_what,omitempty"`
	DiffTime  time.Duration `json:"-"`
	DiffRSS   int64         `json:"diff_rss_bytes"`
	ApplyTime time.Duration `json:"-"`
	ApplyRSS  int64         `json:"apply_rss_bytes"`
	Verified  Verification  `json:"verified"`
	// NotInstalled names the missing tools; the other fields are zero.
	NotInstalled []string `json:"not_installed,omitempty"`
	// Error is why the method failed, if it did.
	Error string `json:"error,omitempty"`
	// Note qualifies the numbers (what was measured, which settings).
	Note string `json:"note,omitempty"`
}

// OK reports whether the method ran and produced numbers.
func (r *Result) OK() bool { return len(r.NotInstalled) == 0 && r.Error == "" }

type resultJSON struct {
	DiffSeconds  float64 `json:"diff_seconds"`
	ApplySeconds float64 `json:"apply_seconds"`
}

// MarshalJSON writes the times as diff_seconds and apply_seconds.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		resultJSON
	}{plain(r), resultJSON{r.DiffTime.Seconds(), r.ApplyTime.Seconds()}})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	var v struct {
		plain
		resultJSON
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Result(v.plain)
	r.DiffTime = time.Duration(math.Round(v.DiffSeconds * 1e9))
	r.ApplyTime = time.Duration(math.Round(v.ApplySeconds * 1e9))
	return nil
}

// PairReport is the results of every method on one pair.
type PairReport struct {
	Pair
	// Layers is the number of target layers, Changed how many of them are
	// not in the base, ChangedBytes their uncompressed size.
	Layers       int      `json:"layers"`
	Changed      int      `json:"changed_layers"`
	ChangedBytes int64    `json:"changed_bytes"`
	Results      []Result `json:"results"`
}

// Result returns the result of the named method, or nil.
func (p *PairReport) Result(method string) *Result {
	for i := range p.Results {
		if p.Results[i].Method == method {
			return &p.Results[i]
		}
	}
	return nil
}

// Report is a whole benchmark run.
type Report struct {
	Pairs []PairReport `json:"pairs"`
	// Memory says how peak memory was measured (Tools.MemoryProbe).
	Memory string `json:"memory,omitempty"`
	// Interrupted: the run was cancelled; Pairs holds the results that
	// finished before (a pair cut short lists those it has).
	Interrupted bool `json:"interrupted,omitempty"`
}

// options configure Run.
type options struct {
	workDir  string
	refOpts  []layerfs.Option
	onResult func(Pair, Result) error
}

// Option configures Run.
type Option func(*options) error

// WithWorkDir sets the directory under which Run makes its temporary
// directory (default $TMPDIR). The directory must exist.
func WithWorkDir(dir string) Option {
	return func(o *options) error {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("work dir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("work dir %s: not a directory", dir)
		}
		o.workDir = dir
		return nil
	}
}

// WithRefOptions passes options to layerfs.Open for the pairs' images
// (registry access, platform).
func WithRefOptions(opts ...layerfs.Option) Option {
	return func(o *options) error {
		o.refOpts = append(o.refOpts, opts...)
		return nil
	}
}

// WithResultFunc has Run call fn with each result as soon as it is
// measured, so that a long run that is interrupted (or killed) keeps what
// it finished: e.g. a JSON-lines journal. An error from fn stops the run.
func WithResultFunc(fn func(Pair, Result) error) Option {
	return func(o *options) error {
		o.onResult = fn
		return nil
	}
}

// Run measures every method on every pair and returns the report. It opens
// all images before measuring anything: a pair that cannot be opened is an
// error wrapping ErrBadPair that names the pair and the reference. A method
// that fails is reported in its Result and does not stop the run. Progress
// lines go to progress (which may be nil). Temporary files live in a fresh
// directory under the work dir and are removed before Run returns.
//
// When ctx is cancelled, Run returns the context's error together with a
// report of the results that finished, marked Interrupted; the method that
// was cut short is left out.
func Run(ctx context.Context, pairs []Pair, methods []Method, progress io.Writer, opts ...Option) (*Report, error) {
	o := &options{}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if progress == nil {
		progress = io.Discard
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("no pairs to measure: %w", ErrBadPair)
	}
	if err := checkPairNames(pairs); err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(o.workDir, "skiff-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)

	opened := make([]*openPair, len(pairs))
	defer func() {
		for _, op := range opened {
			if op != nil {
				op.close()
			}
		}
	}()
	for i, p := range pairs {
		if opened[i], err = openImages(ctx, p, o.refOpts); err != nil {
			return nil, err
		}
	}
	rep := &Report{}
	interrupted := func(pr *PairReport) (*Report, error) {
		if pr != nil && len(pr.Results) > 0 {
			rep.Pairs = append(rep.Pairs, *pr)
		}
		rep.Interrupted = true
		return rep, ctx.Err()
	}
	for i, p := range pairs {
		fmt.Fprintf(progress, "bench: %s: extracting changed layers\n", p.Name)
		prep, err := prepare(ctx, opened[i], root, i)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted(nil)
			}
			return nil, fmt.Errorf("pair %s: %w", p.Name, err)
		}
		fmt.Fprintf(progress, "bench: %s: %d of %d layers changed, %s uncompressed\n",
			p.Name, len(prep.Changed), len(prep.TargetDiffIDs), HumanBytes(prep.ChangedBytes()))
		pr := PairReport{Pair: p, Layers: len(prep.TargetDiffIDs), Changed: len(prep.Changed), ChangedBytes: prep.ChangedBytes()}
		for j, m := range methods {
			if ctx.Err() != nil {
				prep.cleanup()
				return interrupted(&pr)
			}
			fmt.Fprintf(progress, "bench: %s: %s ...\n", p.Name, m.Name())
			res := runMethod(ctx, m, prep, fmt.Sprintf("%s/m%02d", prep.dir, j))
			if ctx.Err() != nil { // cut short: its numbers mean nothing
				prep.cleanup()
				return interrupted(&pr)
			}
			fmt.Fprintf(progress, "bench: %s: %s: %s\n", p.Name, m.Name(), summary(&res))
			pr.Results = append(pr.Results, res)
			if o.onResult != nil {
				if err := o.onResult(p, res); err != nil {
					prep.cleanup()
					return nil, err
				}
			}
		}
		prep.cleanup()
		rep.Pairs = append(rep.Pairs, pr)
	}
	return rep, nil
}

// runMethod runs m in its own work directory and removes it afterwards.
func runMethod(ctx context.Context, m Method, p *Prepared, dir string) Result {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{Method: m.Name(), Error: err.Error()}
	}
	defer os.RemoveAll(dir)
	res := m.Run(ctx, p, dir)
	res.Method = m.Name()
	return res
}

// summary is the one-line progress report of a result.
func summary(r *Result) string {
	switch {
	case len(r.NotInstalled) > 0:
		return "not installed (" + strings.Join(r.NotInstalled, ", ") + ")"
	case r.Error != "":
		return "failed: " + r.Error
	}
	s := fmt.Sprintf("%s on the wire, diff %s, apply %s, %s", HumanBytes(r.WireBytes),
		fmtDuration(r.DiffTime), fmtDuration(r.ApplyTime), r.Verified)
	return s
}

// checkPairNames rejects empty and duplicate pair names.
func checkPairNames(pairs []Pair) error {
	seen := map[string]bool{}
	for _, p := range pairs {
		if p.Name == "" || strings.ContainsAny(p.Name, " \t\n/") {
			return fmt.Errorf("pair name %q: must be non-empty, without spaces or slashes: %w", p.Name, ErrBadPair)
		}
		if seen[p.Name] {
			return fmt.Errorf("pair name %q used twice: %w", p.Name, ErrBadPair)
		}
		seen[p.Name] = true
		if p.From == "" || p.To == "" {
			return fmt.Errorf("pair %s: needs both a base and a target image: %w", p.Name, ErrBadPair)
		}
	}
	return nil
}
