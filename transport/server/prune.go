package server

import (
	"context"
	"time"
)

const (
	// defaultReportRetention is Config.ReportRetention's default.
	defaultReportRetention = 90 * 24 * time.Hour
	// pruneEvery is how often old reports are pruned.
	pruneEvery = time.Hour
)

// pruneReports deletes the reports received more than ReportRetention
// before now.
func (s *Server) pruneReports(ctx context.Context, now time.Time) (int64, error) {
	n, err := s.fleet.PruneReports(ctx, now.Add(-s.cfg.ReportRetention))
	if n > 0 {
		s.metrics.pruned.Add(float64(n))
		s.log.Info("pruned old install reports", "reports", n, "retention", s.cfg.ReportRetention)
	}
	return n, err
}

// pruneReportsEvery prunes now and every pruneEvery until ctx ends.
func (s *Server) pruneReportsEvery(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		// Without ctx's cancel: the SQLite driver would watch it with a
		// goroutine per statement.
		if _, err := s.pruneReports(context.WithoutCancel(ctx), time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("pruning install reports", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
