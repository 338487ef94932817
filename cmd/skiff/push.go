package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/transport"
)

type pushOptions struct {
	subject string
	format  formatOptions
}

func (o *pushOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.subject, "subject", "", `the target image the delta belongs to, docker://REG/REPO:TAG or @sha256:...; "none" for no subject (default: the target manifest the delta carries, if any)`)
	o.format.AddFlags(cmd, legacyNone)
}

func newPushCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push FILE docker://REG/REPO:TAG",
		Short: "Store a delta in a registry as an OCI artifact",
		Long: `Store a delta file in a registry as an OCI artifact: its header and each of
its blobs become separate registry blobs, so a device fetches only what it
lacks and resumes blob by blob. The artifact's subject is the target image's
manifest, so "skiff pull" and agents find the delta through the referrers API
(or the sha256-<hex> tag where the registry lacks it). Prints the artifact's
manifest digest.`,
		Example: `  skiff push update.skiff docker://registry.example.com/app:delta-1-2
  skiff push update.skiff docker://127.0.0.1:5000/app:delta --subject docker://127.0.0.1:5000/app:2 --insecure`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPush(cmd.Context(), o, g, args[0], args[1], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// registryRef parses a docker:// reference for push and pull.
func (g *globalOptions) registryRef(what, s string) (name.Reference, error) {
	rest, ok := strings.CutPrefix(s, "docker://")
	if !ok {
		return nil, usageError{fmt.Sprintf("%s %q: want docker://REGISTRY/REPO:TAG", what, s)}
	}
	var nopts []name.Option
	if g.insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(rest, nopts...)
	if err != nil {
		return nil, usageError{fmt.Sprintf("%s %q: %v", what, s, err)}
	}
	return ref, nil
}

func registryOptions(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithUserAgent("skiff")}
}

func runPush(ctx context.Context, o *pushOptions, g *globalOptions, file, dest string, out, errOut io.Writer) error {
	ref, err := g.registryRef("destination", dest)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	h, err := format.ReadHeader(bufio.NewReader(f))
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	ropts := registryOptions(ctx)

	var subject *v1.Descriptor
	switch s := o.subject; {
	case s == "":
		subject = transport.TargetSubject(&h.Manifest)
	case s == "none":
	case strings.HasPrefix(s, "@"):
		d, err := v1.NewHash(s[1:])
		if err != nil {
			return usageError{fmt.Sprintf("--subject %q: %v", s, err)}
		}
		desc, err := remote.Head(ref.Context().Digest(d.String()), ropts...)
		if err != nil {
			return fmt.Errorf("--subject %s: %w", s, err)
		}
		subject = desc
	default:
		sref, err := g.registryRef("--subject", s)
		if err != nil {
			return err
		}
		if desc, err := remote.Head(sref, ropts...); err != nil {
			return fmt.Errorf("--subject %s: %w", s, err)
		} else {
			subject = desc
		}
	}
	if subject != nil {
		// The referrers API and its fallback tag take the plain descriptor.
		subject = &v1.Descriptor{MediaType: subject.MediaType, Size: subject.Size, Digest: subject.Digest}
	}

	var finish func()
	if isTerminal(errOut) {
		// go-containerregistry's Pusher sends updates but leaves the
		// channel open: it is closed here once Push returns.
		updates := make(chan v1.Update, 16)
		ropts = append(ropts, remote.WithProgress(updates))
		done := make(chan struct{})
		finish = func() { close(updates); <-done }
		go func() {
			defer close(done)
			var bar *progressbar.ProgressBar
			for u := range updates {
				if bar == nil {
					bar = newBar(errOut, "pushing", u.Total)
				}
				bar.ChangeMax64(u.Total)
				bar.Set64(u.Complete)
			}
			if bar != nil {
				bar.Finish()
			}
		}()
	}
	desc, err := transport.Push(ctx, file, ref, subject, ropts...)
	if finish != nil {
		finish()
	}
	if err != nil {
		return err
	}
	if o.format.json() {
		rep := struct {
			Reference string `json:"reference"`
			Digest    string `json:"digest"`
			Blobs     int    `json:"blobs"`
			Subject   string `json:"subject,omitempty"`
		}{ref.String(), desc.Digest.String(), len(h.Manifest.Blobs) + 1, ""}
		if subject != nil {
			rep.Subject = subject.Digest.String()
		}
		return printJSON(out, rep)
	}
	fmt.Fprintln(out, desc.Digest)
	if subject != nil {
		fmt.Fprintf(errOut, "pushed %s (%d blobs) with subject %s\n", ref, len(h.Manifest.Blobs)+1, subject.Digest)
	} else {
		fmt.Fprintf(errOut, "pushed %s (%d blobs), no subject: devices find it by tag only\n", ref, len(h.Manifest.Blobs)+1)
	}
	return nil
}

// newBar is a byte progress bar on a terminal (total -1: unknown).
func newBar(w io.Writer, what string, total int64) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}
