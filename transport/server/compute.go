package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/transport"
)

// A flight is one pair's computation, queued or running: one goroutine,
// however many devices ask for the pair meanwhile.
type flight struct {
	wanted atomic.Int64 // unix nanoseconds of the last check that asked for it
	keep   atomic.Bool  // started or joined by a publish: never abandoned
}

// errAbandoned cancels a computation no device asks for any more.
var errAbandoned = errors.New("no device asked for the delta any more")

// errComputeTimeout is a computation that missed ComputeTimeout.
var errComputeTimeout = errors.New("delta computation timed out")

// startCompute makes sure the delta base -> target is being computed: at
// most one flight per pair, at most MaxQueuedDiffs flights (a check of one
// more is answered pending, and asks again), at most MaxConcurrentDiffs
// computing at once (a semaphore), each within ComputeTimeout, and one
// devices started cancelled when none has asked for AbandonAfter. It
// returns at once. byPublish marks a precomputation, which is never
// abandoned.
func (s *Server) startCompute(base, target record, byPublish bool) {
	key := pairKey(base.ConfigDigest, target.ConfigDigest)
	s.flightMu.Lock()
	if f, ok := s.flights[key]; ok {
		s.flightMu.Unlock()
		f.wanted.Store(time.Now().UnixNano())
		if byPublish {
			f.keep.Store(true)
		}
		return
	}
	if len(s.flights) >= s.cfg.MaxQueuedDiffs {
		s.flightMu.Unlock()
		s.metrics.computations.WithLabelValues("queue_full").Inc()
		return
	}
	f := &flight{}
	f.wanted.Store(time.Now().UnixNano())
	f.keep.Store(byPublish)
	s.flights[key] = f
	s.flightMu.Unlock()
	s.goBackground(func(ctx context.Context) {
		defer func() {
			s.flightMu.Lock()
			delete(s.flights, key)
			s.flightMu.Unlock()
		}()
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		ctx, stop := context.WithTimeoutCause(ctx, s.cfg.ComputeTimeout,
			fmt.Errorf("%w after %v", errComputeTimeout, s.cfg.ComputeTimeout))
		defer stop()
		go s.watchFlight(ctx, f, cancel)
		s.computePair(ctx, base, target)
	})
}

// watchFlight cancels ctx when no device has asked for f for AbandonAfter.
func (s *Server) watchFlight(ctx context.Context, f *flight, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(min(s.cfg.AbandonAfter/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !f.keep.Load() && time.Since(time.Unix(0, f.wanted.Load())) > s.cfg.AbandonAfter {
				cancel(errAbandoned)
				return
			}
		}
	}
}

// flightCount is how many pairs are computing or queued.
func (s *Server) flightCount() int {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	return len(s.flights)
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
		if cause := context.Cause(ctx); errors.Is(cause, errAbandoned) {
			s.metrics.computations.WithLabelValues("abandoned").Inc()
		}
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
		switch cause := context.Cause(ctx); {
		case s.ctx.Err() != nil:
			// Shutting down: not the pair's fault.
			return pairIndex{}, err
		case errors.Is(cause, errAbandoned):
			// Nobody waits: the next device to ask starts it again.
			s.metrics.computations.WithLabelValues("abandoned").Inc()
			log.Warn("delta computation abandoned", "duration", d, "after", s.cfg.AbandonAfter)
			return pairIndex{}, err
		case cause != nil:
			err = cause // the deadline, named
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
