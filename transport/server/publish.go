package server

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/skiff-dev/skiff/layerfs"
)

// publish opens ref, makes it the target of (channel, image) and returns
// its record.
func (s *Server) publish(ctx context.Context, channel, image, ref string) (record, error) {
	if id, err := s.governed(ctx, channel, image); err != nil {
		s.metrics.publishes.WithLabelValues("error").Inc()
		return record{}, err
	} else if id != "" {
		s.metrics.publishes.WithLabelValues("error").Inc()
		s.log.Warn("publish refused: a staged rollout governs the track", "channel", channel, "image", image, "ref", ref, "rollout", id)
		return record{}, fmt.Errorf("%s/%s: rollout %s: abort it (skiff rollout abort) or let it complete first: %w", channel, image, id, ErrRolloutActive)
	}
	rec, err := s.inspect(ctx, ref)
	if err != nil {
		s.metrics.publishes.WithLabelValues("error").Inc()
		s.log.Warn("publish failed", "channel", channel, "image", image, "ref", ref, "err", err)
		return record{}, err
	}
	changed, err := s.state.publish(channel, image, rec)
	if err != nil {
		s.metrics.publishes.WithLabelValues("error").Inc()
		s.log.Error("publish failed", "channel", channel, "image", image, "ref", ref, "err", err)
		return record{}, err
	}
	if cur, ok := s.state.current(channel, image); ok && cur.ConfigDigest == rec.ConfigDigest {
		rec = cur // with its serial
	}
	if changed {
		s.metrics.publishes.WithLabelValues("changed").Inc()
		s.log.Info("published", "channel", channel, "image", image, "ref", ref, "config", rec.ConfigDigest, "manifest", rec.ManifestDigest)
	} else {
		s.metrics.publishes.WithLabelValues("unchanged").Inc()
		s.log.Debug("publish: already the target", "channel", channel, "image", image, "ref", ref)
	}
	return rec, nil
}

// inspect opens ref and records its digests, diff_ids and a pinned
// reference.
func (s *Server) inspect(ctx context.Context, ref string) (record, error) {
	img, err := layerfs.Open(ctx, ref, s.cfg.RefOptions...)
	if err != nil {
		return record{}, err
	}
	defer img.Close()
	cfg, err := img.ConfigName()
	if err != nil {
		return record{}, fmt.Errorf("%s: config digest: %w", ref, err)
	}
	man, err := img.Digest()
	if err != nil {
		return record{}, fmt.Errorf("%s: manifest digest: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return record{}, fmt.Errorf("%s: config: %w", ref, err)
	}
	rec := record{Ref: ref, Pinned: ref, ConfigDigest: cfg.String(), ManifestDigest: man.String(), Published: time.Now().UTC()}
	for _, d := range cf.RootFS.DiffIDs {
		rec.DiffIDs = append(rec.DiffIDs, d.String())
	}
	switch img.Ref.Transport {
	case layerfs.TransportRegistry:
		// A tag moves; the manifest digest does not.
		r, err := name.ParseReference(img.Ref.Name)
		if err != nil {
			return record{}, fmt.Errorf("%s: %v: %w", ref, err, layerfs.ErrBadReference)
		}
		rec.Pinned = layerfs.TransportRegistry + "://" + r.Context().Digest(man.String()).String()
	case layerfs.TransportDaemon:
		rec.Pinned = layerfs.TransportDaemon + ":" + cfg.String()
	}
	return rec, nil
}

// openPinned opens a published image by its pinned reference and checks it
// is still the image published.
func (s *Server) openPinned(ctx context.Context, rec record) (*layerfs.Image, error) {
	img, err := layerfs.Open(ctx, rec.Pinned, s.cfg.RefOptions...)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigName()
	if err != nil {
		img.Close()
		return nil, fmt.Errorf("%s: config digest: %w", rec.Pinned, err)
	}
	if cfg.String() != rec.ConfigDigest {
		img.Close()
		return nil, fmt.Errorf("%s now holds config %s, not the published %s: %w", rec.Pinned, cfg, rec.ConfigDigest, ErrImageChanged)
	}
	return img, nil
}
