package delta

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/layerfs"
)

// keepIngester stores the payloads of one base layer that base.keep marks
// (version 6) and only hashes the others, so the device's work directory
// holds the base files the delta reads and no more (FORMAT.md, "Kept base
// payloads").
type keepIngester struct {
	store *layerfs.Store
	keep  format.KeepSet // nil: keep all
	n     int            // payloads seen
}

func (a *applier) keeper(i int) (*keepIngester, error) {
	keep, err := a.m.KeepBits(i)
	if err != nil {
		return nil, err
	}
	return &keepIngester{store: a.store, keep: keep}, nil
}

// Ingest stores or hashes the next payload of the layer.
func (k *keepIngester) Ingest(ctx context.Context, r io.Reader, size int64) (digest.Digest, error) {
	n := k.n
	k.n++
	if k.keep == nil || k.keep.Has(n) {
		return k.store.Ingest(ctx, r, size)
	}
	return layerfs.Discard{}.Ingest(ctx, r, size)
}

// check refuses a keep set that marks payloads layer i does not have.
func (k *keepIngester) check(i int) error {
	if k.keep != nil && k.keep.Len() > k.n {
		return fmt.Errorf("%w: base keep marks payload %d of base layer %d, which has %d", ErrBadDelta, k.keep.Len()-1, i, k.n)
	}
	return nil
}

// checkKept refuses, before any payload is made, a delta whose ops or
// rebuilt layers read a base payload that base.keep did not keep.
func (a *applier) checkKept(d digest.Digest, what string) error {
	if len(a.m.Base.Keep) == 0 || a.store.Has(d) {
		return nil
	}
	return fmt.Errorf("%w: %s reads base payload %s, which the delta's base keep does not keep", ErrBadDelta, what, d)
}

// consumingStore gives the store's payloads to the layers being rebuilt
// and removes each after its last read: refs counts the reads the rebuilt
// layers' skeletons make.
func (a *applier) consumingStore() (*consumer, error) {
	c := &consumer{store: a.store, refs: map[digest.Digest]int{}}
	for i := range a.m.Layers {
		if a.tarOf[i] == "" {
			continue
		}
		f, err := os.Open(a.tarOf[i])
		if err != nil {
			return nil, err
		}
		err = layerfs.Walk(f, func(file layerfs.File) error {
			if file.Payload != "" {
				c.refs[file.Payload]++
			}
			return nil
		})
		f.Close()
		if err != nil {
			return nil, asCorrupt(err)
		}
	}
	// What no layer reads (the ops' bases, files the target dropped) goes
	// now.
	held, err := a.store.List()
	if err != nil {
		return nil, err
	}
	for _, d := range held {
		if c.refs[d] == 0 {
			if err := a.store.Remove(d); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

type consumer struct {
	store *layerfs.Store
	refs  map[digest.Digest]int
}

// Open opens payload d for one of the reads counted.
func (c *consumer) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if c.refs[d] <= 0 {
		return nil, fmt.Errorf("%w: payload %s read more often than the skeletons say", ErrBadDelta, d)
	}
	rc, err := c.store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return &consumed{ReadCloser: rc, c: c, d: d}, nil
}

type consumed struct {
	io.ReadCloser
	c    *consumer
	d    digest.Digest
	done bool
}

// Close closes the payload and removes it from the store after its last
// read.
func (r *consumed) Close() error {
	err := r.ReadCloser.Close()
	if r.done {
		return err
	}
	r.done = true
	if r.c.refs[r.d]--; r.c.refs[r.d] == 0 {
		if rerr := r.c.store.Remove(r.d); err == nil {
			err = rerr
		}
	}
	return err
}
