package server

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/internal/counting"
)

// digestRe is the only digest form the server accepts from clients.
var digestRe = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// pairIndex is cache/pairs/<base hex>_<target hex>.json: the delta that
// turns base into target.
type pairIndex struct {
	Base    string    `json:"base"`   // config digest
	Target  string    `json:"target"` // config digest
	Digest  string    `json:"digest"` // of the delta file
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	// Signers are the key IDs that signed the delta (Config.Signers).
	Signers []string `json:"signers,omitempty"`
}

// cache is the content-addressed delta cache under CacheDir:
//
//	deltas/sha256/<hex>               delta files, named by their sha256
//	pairs/<base hex>_<target hex>.json pair index
//	tmp/                              files being written, diff work dirs
//
// Every file appears by rename only, complete.
type cache struct {
	dir string
	// signers are the key IDs a cached delta must be signed by.
	signers []string

	mu    sync.Mutex
	pairs map[string]pairIndex // memo of pair files read or written
}

func openCache(dir string) (*cache, error) {
	c := &cache{dir: dir, pairs: map[string]pairIndex{}}
	for _, d := range []string{c.deltaDir(), filepath.Join(dir, "pairs"), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
	}
	// Leftovers of a server killed mid-write: nobody else writes into a
	// server's own tmp names, but servers sharing the cache may, so only
	// remove what is old.
	if ents, err := os.ReadDir(c.tmpDir()); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
				os.RemoveAll(filepath.Join(c.tmpDir(), e.Name()))
			}
		}
	}
	return c, nil
}

func (c *cache) deltaDir() string { return filepath.Join(c.dir, "deltas", "sha256") }
func (c *cache) tmpDir() string   { return filepath.Join(c.dir, "tmp") }

// deltaPath is where the delta with digest d lives; d must match digestRe.
func (c *cache) deltaPath(d string) string {
	return filepath.Join(c.deltaDir(), strings.TrimPrefix(d, "sha256:"))
}

func pairKey(base, target string) string {
	return strings.TrimPrefix(base, "sha256:") + "_" + strings.TrimPrefix(target, "sha256:")
}

func (c *cache) pairPath(base, target string) string {
	return filepath.Join(c.dir, "pairs", pairKey(base, target)+".json")
}

// lookup returns the delta for (base, target) if its index and its delta
// file (of the indexed size) are both on disk.
func (c *cache) lookup(base, target string) (pairIndex, bool, error) {
	key := pairKey(base, target)
	c.mu.Lock()
	idx, ok := c.pairs[key]
	c.mu.Unlock()
	if !ok {
		b, err := os.ReadFile(c.pairPath(base, target))
		if errors.Is(err, fs.ErrNotExist) {
			return pairIndex{}, false, nil
		}
		if err != nil {
			return pairIndex{}, false, err
		}
		if err := json.Unmarshal(b, &idx); err != nil || !digestRe.MatchString(idx.Digest) || idx.Base != base || idx.Target != target {
			// A bad index is not fatal: the delta is computed again and
			// the index rewritten.
			return pairIndex{}, false, nil
		}
	}
	fi, err := os.Stat(c.deltaPath(idx.Digest))
	if err != nil || fi.Size() != idx.Size || !slices.Equal(idx.Signers, c.signers) {
		c.mu.Lock()
		delete(c.pairs, key)
		c.mu.Unlock()
		return pairIndex{}, false, nil
	}
	c.mu.Lock()
	c.pairs[key] = idx
	c.mu.Unlock()
	return idx, true, nil
}

// store writes a delta for (base, target) through fill into a temporary
// file, hashing it on the way, renames it to its content address and
// writes the pair index.
func (c *cache) store(base, target string, fill func(io.Writer) error) (pairIndex, error) {
	f, err := atomicfile.CreateIn(c.tmpDir())
	if err != nil {
		return pairIndex{}, err
	}
	defer f.Abort()
	h := sha256.New()
	cw := &counting.Writer{W: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20) // large writes: one hash call per MiB
	if err := fill(bw); err != nil {
		return pairIndex{}, err
	}
	if err := bw.Flush(); err != nil {
		return pairIndex{}, err
	}
	idx := pairIndex{Base: base, Target: target, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: cw.N, Created: time.Now().UTC(), Signers: c.signers}
	// Another server sharing the cache may have renamed the same bytes
	// into place already; renaming over them is harmless.
	if err := f.CommitAs(c.deltaPath(idx.Digest)); err != nil {
		return pairIndex{}, err
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return pairIndex{}, err
	}
	if err = atomicfile.WriteFile(c.pairPath(base, target), append(b, '\n')); err != nil {
		return pairIndex{}, err
	}
	c.mu.Lock()
	c.pairs[pairKey(base, target)] = idx
	c.mu.Unlock()
	return idx, nil
}
