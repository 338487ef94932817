package server

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/transport"
)

// startCompute makes sure the delta base -> target is being computed: at
// most one computation per pair runs at a time (singleflight on the pair),
// and at most MaxConcurrentDiffs pairs at once (a semaphore). It returns at
// once.
func (s *Server) startCompute(base, target record) {
	key := pairKey(base.ConfigDigest, target.ConfigDigest)
	s.goBackground(func(ctx context.Context) {
		<-s.sf.DoChan(key, func() (any, error) {
			return s.computePair(ctx, base, target)
		})
	})
}

// computePair computes, stores and indexes the delta base -> target,
// unless it is in the cache already.
func (s *Server) computePair(ctx context.Context, base, target record) (pairIndex, error) {
	if idx, ok, _ := s.cache.lookup(base.ConfigDigest, target.ConfigDigest); ok {
		return idx, nil
	}
	// A check racing the previous flight may start this one just after
	// that flight failed: report its failure rather than run it again.
	if err, ok := s.failed(base.ConfigDigest, target.ConfigDigest); ok {
		return pairIndex{}, err
	}
	if err := s.diffs.Acquire(ctx, 1); err != nil {
		return pairIndex{}, err
	}
	defer s.diffs.Release(1)
	// A server sharing the cache may have finished it while this waited.
	if idx, ok, _ := s.cache.lookup(base.ConfigDigest, target.ConfigDigest); ok {
		return idx, nil
	}
	s.metrics.inflight.Inc()
	defer s.metrics.inflight.Dec()
	log := s.log.With("base", base.ConfigDigest, "target", target.ConfigDigest, "base_ref", base.Pinned, "target_ref", target.Pinned)
	log.Info("computing delta")
	t0 := time.Now()
	idx, err := s.diff(ctx, base, target)
	d := time.Since(t0)
	if err != nil {
		if ctx.Err() != nil {
			// Shutting down: not the pair's fault.
			return pairIndex{}, err
		}
		s.metrics.computations.WithLabelValues("error").Inc()
		s.metrics.computeTime.Observe(d.Seconds())
		s.setFailed(base.ConfigDigest, target.ConfigDigest, err)
		log.Error("delta computation failed", "err", err, "duration", d)
		return pairIndex{}, err
	}
	s.metrics.computations.WithLabelValues("ok").Inc()
	s.metrics.computeTime.Observe(d.Seconds())
	s.metrics.deltaBytes.Observe(float64(idx.Size))
	s.clearFailed(base.ConfigDigest, target.ConfigDigest)
	log.Info("delta computed", "digest", idx.Digest, "size", idx.Size, "duration", d)
	return idx, nil
}

// diff opens both images by their pinned references and writes the delta
// into the cache.
func (s *Server) diff(ctx context.Context, base, target record) (pairIndex, error) {
	b, err := s.openPinned(ctx, base)
	if err != nil {
		return pairIndex{}, fmt.Errorf("base: %w", err)
	}
	defer b.Close()
	t, err := s.openPinned(ctx, target)
	if err != nil {
		return pairIndex{}, fmt.Errorf("target: %w", err)
	}
	defer t.Close()
	opts := s.cfg.DiffOptions
	opts.Manifest = transport.CarriesManifest(t.Ref)
	work, err := os.MkdirTemp(s.cache.tmpDir(), "work-")
	if err != nil {
		return pairIndex{}, err
	}
	defer os.RemoveAll(work)
	opts.WorkDir = work
	opts.Signers = s.cfg.Signers
	return s.cache.store(base.ConfigDigest, target.ConfigDigest, func(w io.Writer) error {
		_, err := delta.Diff(ctx, b, t, w, opts)
		return err
	})
}

func (s *Server) failed(base, target string) (error, bool) {
	key := pairKey(base, target)
	s.failMu.Lock()
	defer s.failMu.Unlock()
	f, ok := s.failures[key]
	if !ok {
		return nil, false
	}
	if time.Since(f.when) > s.cfg.FailureTTL {
		delete(s.failures, key)
		return nil, false
	}
	return f.err, true
}

func (s *Server) setFailed(base, target string, err error) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	s.failures[pairKey(base, target)] = failure{err: err, when: time.Now()}
}

func (s *Server) clearFailed(base, target string) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	delete(s.failures, pairKey(base, target))
}
