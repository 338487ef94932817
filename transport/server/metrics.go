package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
	}
	m.reg.MustRegister(m.reports, m.checks, m.computations, m.computeTime, m.deltaBytes, m.servedBytes, m.evicted,
		m.publishes, m.notified, m.httpDuration, m.inflight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
