package server

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/skiff-dev/skiff/transport/server/rollout"
)

// Check results, the values of the "result" label of
// skiff_server_check_requests_total.
const (
	resultCurrent     = "current"      // the device runs the target
	resultDelta       = "delta"        // a delta is offered
	resultPending     = "pending"      // the delta is being computed
	resultUnknownBase = "unknown_base" // full pull: base never published (or diff_ids differ)
	resultFailed      = "failed"       // full pull: the delta computation failed
	resultNoTarget    = "no_target"    // nothing published for channel/image
	resultBadRequest  = "bad_request"
	resultForbidden   = "forbidden" // a scoped token outside its scope
)

// metrics are the server's Prometheus collectors, in a registry of its own
// so that several servers in one process do not collide.
type metrics struct {
	reg          *prometheus.Registry
	checks       *prometheus.CounterVec
	computations *prometheus.CounterVec
	computeTime  prometheus.Histogram
	deltaBytes   prometheus.Histogram
	servedBytes  prometheus.Counter
	evicted      prometheus.Counter
	publishes    *prometheus.CounterVec
	notified     *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	inflight     prometheus.Gauge
	reports      *prometheus.CounterVec
	pruned       prometheus.Counter

	rolloutDevices *prometheus.GaugeVec
	rolloutWave    *prometheus.GaugeVec
	rolloutStatus  *prometheus.GaugeVec
	rolloutEvents  *prometheus.CounterVec
	// shown is, per track ("channel/image"), the rollouts that have
	// series: the newest and at most one final one before it.
	shownMu sync.Mutex
	shown   map[string][]shownRollout
}

type shownRollout struct {
	id    string
	final bool
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_server_check_requests_total",
			Help: "Device check-ins by result (current, delta, pending, unknown_base, failed, no_target, bad_request).",
		}, []string{"result"}),
		computations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_server_delta_computations_total",
			Help: "Delta computations, by result: ok, error (timeouts too), abandoned (no device asked any more), queue_full (a check not queued).",
		}, []string{"result"}),
		computeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_server_delta_computation_seconds",
			Help:    "Time to compute one delta, including opening both images.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14), // 50ms .. ~7min
		}),
		deltaBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_server_delta_bytes",
			Help:    "Size of the deltas computed.",
			Buckets: prometheus.ExponentialBuckets(1<<10, 4, 12), // 1KiB .. 4GiB
		}),
		servedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_server_delta_served_bytes_total",
			Help: "Delta bytes sent to devices (Range requests count what they send).",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_server_cache_evicted_total",
			Help: "Cached delta files removed because their target was superseded and nobody fetched them for the cache TTL.",
		}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_server_publishes_total",
			Help: "Publishes by result (changed, unchanged, error), from the API and from notifications.",
		}, []string{"result"}),
		notified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_server_notification_events_total",
			Help: "Registry notification events by outcome (matched, ignored).",
		}, []string{"outcome"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "skiff_server_http_request_duration_seconds",
			Help:    "HTTP request duration by route and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "code"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_server_delta_computations_in_progress",
			Help: "Delta computations running now (waiting ones excluded).",
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_server_reports_total",
			Help: "Install reports stored, by result (installed, rolled_back, failed); a report sent again is counted once.",
		}, []string{"result"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_server_reports_pruned_total",
			Help: "Install reports deleted for being older than the report retention (the inventory keeps each row's last one).",
		}),
	}
	rl := []string{"channel", "image", "rollout"}
	m.rolloutDevices = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "skiff_rollout_devices",
		Help: "Devices of a staged rollout's track by state, as this server last counted them: target (runs it, or reported installing it), previous (in no started wave), pending (in a started wave, not installed yet), rolled_back, failed (their last report about the target). Running and paused rollouts, and the last finished one per track.",
	}, append(rl, "state"))
	m.rolloutWave = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "skiff_rollout_wave",
		Help: "The current wave of a staged rollout, numbered from 1.",
	}, rl)
	m.rolloutStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "skiff_rollout_status",
		Help: "1 for the status a staged rollout is in (running, paused, aborted, completed), 0 for the others.",
	}, append(rl, "status"))
	m.rolloutEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_rollout_events_total",
		Help: "Staged-rollout events this server made: started, wave_started, soaking, paused, resumed, skipped, aborted, completed, pinned, unpinned.",
	}, []string{"event"})
	m.shown = map[string][]shownRollout{}
	m.reg.MustRegister(m.rolloutDevices, m.rolloutWave, m.rolloutStatus, m.rolloutEvents)
	m.reg.MustRegister(m.reports, m.pruned, m.checks, m.computations, m.computeTime, m.deltaBytes, m.servedBytes, m.evicted,
		m.publishes, m.notified, m.httpDuration, m.inflight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// rolloutDeviceStates are the values of skiff_rollout_devices' state.
var rolloutDeviceStates = []string{"target", "previous", "pending", "rolled_back", "failed"}

// observeRollout sets the rollout gauges of st; fleet (nil: keep the
// device counts) is its track's devices. Only the newest rollout of a
// track and the last final one before it keep series, so the label sets
// stay bounded however many rollouts a track saw.
func (m *metrics) observeRollout(st *rollout.State, fleet []rollout.Device) {
	lv := []string{st.Channel, st.Image, st.ID}
	if fleet != nil {
		n := map[string]int{}
		for _, d := range fleet {
			in := st.Status == rollout.StatusCompleted || st.WaveOf(d.ID, d.Labels) <= st.Wave
			switch {
			case d.Running == st.Target || d.Result == rollout.ResultInstalled && in:
				n["target"]++
			case !in:
				n["previous"]++
			case d.Result == rollout.ResultRolledBack:
				n["rolled_back"]++
			case d.Result == rollout.ResultFailed:
				n["failed"]++
			default:
				n["pending"]++
			}
		}
		for _, s := range rolloutDeviceStates {
			m.rolloutDevices.WithLabelValues(append(lv, s)...).Set(float64(n[s]))
		}
	}
	m.rolloutWave.WithLabelValues(lv...).Set(float64(st.Wave + 1))
	for _, s := range []rollout.Status{rollout.StatusRunning, rollout.StatusPaused, rollout.StatusAborted, rollout.StatusCompleted} {
		v := 0.0
		if st.Status == s {
			v = 1
		}
		m.rolloutStatus.WithLabelValues(append(lv, string(s))...).Set(v)
	}

	m.shownMu.Lock()
	defer m.shownMu.Unlock()
	key := st.Channel + "/" + st.Image
	keep := []shownRollout{{id: st.ID, final: st.Status.Final()}}
	lastFinal := st.Status.Final()
	for _, r := range m.shown[key] {
		switch {
		case r.id == st.ID:
		case r.final && !lastFinal:
			keep = append(keep, r)
			lastFinal = true
		default:
			for _, v := range []*prometheus.MetricVec{m.rolloutDevices.MetricVec, m.rolloutWave.MetricVec, m.rolloutStatus.MetricVec} {
				v.DeletePartialMatch(prometheus.Labels{"rollout": r.id})
			}
		}
	}
	m.shown[key] = keep
}
