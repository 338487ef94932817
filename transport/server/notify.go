package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/skiff-dev/skiff/layerfs"
)

// Envelope is the body distribution (the CNCF registry) POSTs to a
// notification endpoint; only the fields the server uses are declared.
type Envelope struct {
	Events []Event `json:"events"`
}

// Event is one registry event of an Envelope.
type Event struct {
	ID     string `json:"id"`
	Action string `json:"action"` // "push", "pull", "delete", ...
	Target struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Repository string `json:"repository"`
		URL        string `json:"url"`
		Tag        string `json:"tag"`
	} `json:"target"`
	Request struct {
		Host string `json:"host"`
	} `json:"request"`
}

// handleNotifications takes a notification envelope and answers at once;
// pushes of a published repo:tag are republished and their deltas from
// every known base computed in the background.
func (s *Server) handleNotifications(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxNotifyBody+1))
	if err != nil || len(body) > maxNotifyBody {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("notification body unreadable or larger than %d bytes", maxNotifyBody))
		return
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		writeError(w, http.StatusBadRequest, "not a notification envelope: "+err.Error())
		return
	}
	if err := s.state.refresh(); err != nil {
		s.log.Error("reading state", "err", err)
	}
	matched := s.matchEvents(env.Events)
	for _, p := range matched {
		s.goBackground(func(ctx context.Context) { s.republish(ctx, p) })
	}
	writeJSON(w, http.StatusOK, map[string]int{"events": len(env.Events), "matched": len(matched)})
}

// matchEvents returns the published (channel, image)s whose target ref is
// a registry tag some push event names. Only repository and tag are
// compared, not the host: the host a registry sees (or its http.host
// setting) is often not the one the server reaches it by, and a false match
// costs one manifest fetch that finds nothing new.
func (s *Server) matchEvents(events []Event) []published {
	var out []published
	seen := map[[2]string]bool{}
	all := s.state.all()
	for _, ev := range events {
		if ev.Action != "push" || ev.Target.Tag == "" || ev.Target.Repository == "" {
			s.metrics.notified.WithLabelValues("ignored").Inc()
			continue
		}
		hit := false
		for _, p := range all {
			repo, tag, ok := registryTag(p.Target.Ref)
			if !ok || repo != ev.Target.Repository || tag != ev.Target.Tag {
				continue
			}
			hit = true
			k := [2]string{p.Channel, p.Image}
			if !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
		if hit {
			s.metrics.notified.WithLabelValues("matched").Inc()
			s.log.Info("notification: push of a published tag", "repository", ev.Target.Repository, "tag", ev.Target.Tag, "digest", ev.Target.Digest, "host", ev.Request.Host)
		} else {
			s.metrics.notified.WithLabelValues("ignored").Inc()
		}
	}
	return out
}

// registryTag returns the repository and tag of a docker://HOST/REPO:TAG
// reference.
func registryTag(ref string) (repo, tag string, ok bool) {
	rest, ok := strings.CutPrefix(ref, layerfs.TransportRegistry+"://")
	if !ok {
		return "", "", false
	}
	t, err := name.NewTag(rest)
	if err != nil {
		return "", "", false
	}
	return t.RepositoryStr(), t.TagStr(), true
}

// republish publishes p's ref again and, if it now names another image,
// computes the deltas to it from every known base.
func (s *Server) republish(ctx context.Context, p published) {
	rec, err := s.publish(ctx, p.Channel, p.Image, p.Target.Ref)
	if err != nil {
		s.log.Error("notification: republish failed", "channel", p.Channel, "image", p.Image, "ref", p.Target.Ref, "err", err)
		return
	}
	for _, base := range s.state.bases(p.Channel, p.Image) {
		if base.ConfigDigest != rec.ConfigDigest {
			s.startCompute(base, rec, true)
		}
	}
}
