package server

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Cache eviction. A check-in always answers with the current target of the
// device's channel, so a delta to any other image is only still wanted by
// a device that was downloading it when a newer target was published. Such
// a delta is removed once it has not been served for CacheTTL: its pair
// index first, then, unreferenced, the file. Deltas to a current target are
// kept, however old. A delta being served while it is removed is served to
// its end (the open file stays readable).

const (
	defaultCacheTTL = 7 * 24 * time.Hour
	// evictEvery is how often the cache is swept.
	evictEvery = time.Hour
	// touchEvery bounds how often serving a delta records the time.
	touchEvery = time.Hour
)

// evictStats say what a sweep removed.
type evictStats struct {
	Pairs, Files int
	Bytes        int64
}

// evict removes the pair indexes whose target is not current and whose
// delta has not been served within ttl, then the delta files no pair index
// names that are older than ttl.
func (s *Server) evict(now time.Time, ttl time.Duration) (evictStats, error) {
	var st evictStats
	if err := s.state.refresh(); err != nil {
		// Sweeping with an old view of the state could remove a delta of a
		// target published since: wait for the next sweep.
		return st, err
	}
	current := map[string]bool{}
	for _, p := range s.state.all() {
		current[p.Target.ConfigDigest] = true
	}
	c := s.cache
	pairsDir := filepath.Join(c.dir, "pairs")
	ents, err := os.ReadDir(pairsDir)
	if err != nil {
		return st, err
	}
	keep := map[string]bool{} // delta digests a remaining pair index names
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(pairsDir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue // removed meanwhile
		}
		var idx pairIndex
		if json.Unmarshal(b, &idx) != nil || !digestRe.MatchString(idx.Digest) {
			// Unreadable: lookup ignores it and rewrites it when needed.
			if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > ttl {
				errs = append(errs, removePair(c, p, ""))
				st.Pairs++
			}
			continue
		}
		if current[idx.Target] || now.Sub(lastUsed(c.deltaPath(idx.Digest), idx.Created)) <= ttl {
			keep[idx.Digest] = true
			continue
		}
		if err := removePair(c, p, pairKey(idx.Base, idx.Target)); err != nil {
			errs = append(errs, err)
			keep[idx.Digest] = true
			continue
		}
		st.Pairs++
		s.log.Info("evicted a delta to a superseded target", "base", idx.Base, "target", idx.Target, "digest", idx.Digest)
	}
	files, err := os.ReadDir(c.deltaDir())
	if err != nil {
		return st, errors.Join(append(errs, err)...)
	}
	for _, e := range files {
		if keep["sha256:"+e.Name()] {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		p := filepath.Join(c.deltaDir(), e.Name())
		if now.Sub(lastUsed(p, fi.ModTime())) <= ttl {
			continue // just written (its index may follow) or served
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		st.Files++
		st.Bytes += fi.Size()
	}
	s.metrics.evicted.Add(float64(st.Files))
	return st, errors.Join(errs...)
}

// removePair removes a pair index and forgets its memo (key "" = none).
func removePair(c *cache, path, key string) error {
	if key != "" {
		c.mu.Lock()
		delete(c.pairs, key)
		c.mu.Unlock()
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// lastUsed is when the delta file at path was last written or served (its
// mtime or atime, see touch), or since if it cannot be read.
func lastUsed(path string, since time.Time) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return since
	}
	t := fi.ModTime()
	if a := atime(fi); a.After(t) {
		t = a
	}
	return t
}

// touch records that the delta file at path is being served, at most once
// per touchEvery: its access time is set, its modification time (the
// Last-Modified it is served with) kept.
func touch(path string, fi fs.FileInfo, now time.Time) {
	if now.Sub(lastUsed(path, fi.ModTime())) < touchEvery {
		return
	}
	os.Chtimes(path, now, fi.ModTime())
}

// sweep evicts now and every evictEvery until ctx ends.
func (s *Server) sweep(ctx context.Context) {
	t := time.NewTicker(evictEvery)
	defer t.Stop()
	for {
		st, err := s.evict(time.Now(), s.cfg.CacheTTL)
		if err != nil {
			s.log.Warn("cache eviction", "err", err)
		} else if st.Pairs+st.Files > 0 {
			s.log.Info("cache eviction", "pairs", st.Pairs, "files", st.Files, "bytes", st.Bytes)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
