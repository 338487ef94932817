package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/agent"
)

type agentOptions struct {
	config   string
	format   formatOptions
	image    string
	stateDir string
}

func (o *agentOptions) addConfig(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.config, "config", agent.DefaultConfigPath, "agent configuration (YAML)")
}

func (o *agentOptions) addFormat(cmd *cobra.Command) { o.format.AddFlags(cmd, legacyOutput) }

func newAgentCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "The on-device agent: check for, fetch, apply and load image updates",
		Long: `The on-device agent keeps the images named in its configuration up to date:
it asks a rollout server (or a registry) whether a newer image exists, fetches
the delta from the image it runs, rebuilds the target exactly, loads it into
the engine (Docker, containerd or an OCI layout), runs a hook and prunes old
images. See agent/README.md for the configuration.

Exit codes: 0 success, 1 failure, 2 usage error.`,
	}
	cmd.AddCommand(newAgentRunCommand(g), newAgentCheckCommand(g), newAgentApplyCommand(g), newAgentStatusCommand(g))
	return cmd
}

func loadAgent(o *agentOptions, errOut io.Writer, opts ...agent.Option) (*agent.Agent, error) {
	cfg, err := agent.LoadConfig(o.config)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return agent.New(cfg, append([]agent.Option{agent.WithLogger(log)}, opts...)...)
}

func newAgentRunCommand(_ *globalOptions) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Check and update every configured image on its schedule until stopped",
		Long: `Check and update every configured image on its schedule (policy.interval plus
jitter; exponential backoff after failures, up to policy.backoff_max) until
SIGINT or SIGTERM. The schedule survives restarts (next_check in the state).
Under systemd (Type=notify) it reports READY=1 once started and STOPPING=1
when stopped, and with WatchdogSec it sends WATCHDOG=1 while the loop shows
progress (waiting, downloading or applying), so a stuck agent is restarted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := loadAgent(o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			go watchdog(ctx, a)
			daemon.SdNotify(false, daemon.SdNotifyReady)
			defer daemon.SdNotify(false, daemon.SdNotifyStopping)
			return a.Run(ctx)
		},
	}
	o.addConfig(cmd)
	return cmd
}

func newAgentCheckCommand(_ *globalOptions) *cobra.Command {
	o := &agentOptions{}
	var update bool
	cmd := &cobra.Command{
		Use:   "check --config FILE [--image NAME] [--update] [--format json]",
		Short: "Check once whether updates exist (and with --update, install them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := loadAgent(o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return runAgentCheck(cmd.Context(), a, o, update, cmd.OutOrStdout())
		},
	}
	o.addConfig(cmd)
	o.addFormat(cmd)
	cmd.Flags().StringVar(&o.image, "image", "", "check only this image (default: all)")
	cmd.Flags().BoolVar(&update, "update", false, "install the updates found")
	return cmd
}

func runAgentCheck(ctx context.Context, a *agent.Agent, o *agentOptions, update bool, out io.Writer) error {
	var names []string
	if o.image != "" {
		if _, err := a.Config().Image(o.image); err != nil {
			return usageError{err.Error()}
		}
		names = []string{o.image}
	} else {
		for _, im := range a.Config().Images {
			names = append(names, im.Name)
		}
	}
	var checks []*agent.CheckResult
	var updates []*agent.UpdateResult
	var firstErr error
	for _, n := range names {
		if update {
			res, err := a.Update(ctx, n)
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				if !o.format.json() {
					fmt.Fprintf(out, "%s: %v\n", n, err)
				}
				continue
			}
			updates = append(updates, res)
			if !o.format.json() {
				printUpdate(out, res)
			}
			continue
		}
		res, err := a.Check(ctx, n)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			if !o.format.json() {
				fmt.Fprintf(out, "%s: %v\n", n, err)
			}
			continue
		}
		checks = append(checks, res)
		if !o.format.json() {
			printCheck(out, res)
		}
	}
	if o.format.json() {
		var v any = checks
		if update {
			v = updates
		}
		if err := printJSON(out, v); err != nil {
			return err
		}
	}
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func printCheck(out io.Writer, r *agent.CheckResult) {
	cur := r.Current.ID
	if cur == "" {
		cur = "(no image)"
	}
	switch {
	case r.Pending:
		fmt.Fprintf(out, "%s: the server is computing the delta; ask again in %s\n", r.Image, r.RetryAfter.D())
	case !r.Update:
		fmt.Fprintf(out, "%s: up to date (%s)\n", r.Image, cur)
	case r.Delta != nil:
		where := r.Delta.URL
		if where == "" {
			where = r.Delta.Artifact
		}
		fmt.Fprintf(out, "%s: update available: %s -> %s, delta %s (%s)\n", r.Image, cur, r.Target.ConfigDigest, where, humanBytes(r.Delta.Size))
	default:
		fmt.Fprintf(out, "%s: update available: %s -> %s, no delta (%s)\n", r.Image, cur, r.Target.ConfigDigest, r.Reason)
	}
}

func printUpdate(out io.Writer, r *agent.UpdateResult) {
	if !r.Updated {
		switch {
		case r.Check != nil:
			printCheck(out, r.Check)
		case r.To != nil:
			fmt.Fprintf(out, "%s: already runs the delta's target %s: nothing to do\n", r.Image, r.To.ConfigDigest)
		}
		return
	}
	fmt.Fprintf(out, "%s: updated %s -> %s (%s", r.Image, r.From, r.To.ConfigDigest, r.Via)
	if r.DeltaBytes > 0 {
		fmt.Fprintf(out, ", %s downloaded", humanBytes(r.DeltaBytes))
	}
	fmt.Fprintln(out, ")")
	if r.To.ManifestDigest != "" {
		fmt.Fprintf(out, "%s: manifest %s\n", r.Image, r.To.ManifestDigest)
	}
	for _, p := range r.Pruned {
		fmt.Fprintf(out, "%s: pruned %s\n", r.Image, p)
	}
}

func newAgentApplyCommand(_ *globalOptions) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "apply FILE --config FILE --image NAME",
		Short: "Apply a delta file (air-gapped update) to a configured image",
		Long: `Apply a delta file carried to the device (e.g. on a USB stick) to the running
image of NAME, exactly as a downloaded delta is applied: verify, load under
the configured ref, check the image ID, run the hook, prune. A delta for
another base image is refused and nothing changes.`,
		Example: `  skiff agent apply /media/usb/web-1.5.skiff --config /etc/skiff/agent.yaml --image web`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := loadAgent(o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if _, err := a.Config().Image(o.image); err != nil {
				return usageError{err.Error()}
			}
			res, err := a.ApplyFile(cmd.Context(), o.image, args[0])
			if err != nil {
				return err
			}
			if o.format.json() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printUpdate(cmd.OutOrStdout(), res)
			return nil
		},
	}
	o.addConfig(cmd)
	o.addFormat(cmd)
	cmd.Flags().StringVar(&o.image, "image", "", "the configured image to update")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

func newAgentStatusCommand(_ *globalOptions) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "status [--config FILE | --state-dir DIR] [--format json]",
		Short: "Show what each image runs, when it was last checked and updated",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := o.stateDir
			if dir == "" {
				cfg, err := agent.LoadConfig(o.config)
				if err != nil {
					return err
				}
				dir = cfg.StateDir
			}
			st, err := agent.ReadStatus(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.format.json() {
				return printJSON(out, st)
			}
			printStatus(out, st)
			return nil
		},
	}
	o.addConfig(cmd)
	o.addFormat(cmd)
	cmd.Flags().StringVar(&o.stateDir, "state-dir", "", "read the state of this directory instead of the config's state_dir")
	return cmd
}

func printStatus(out io.Writer, st *agent.State) {
	if len(st.Images) == 0 {
		fmt.Fprintln(out, "no state yet (the agent has not checked anything)")
		return
	}
	names := make([]string, 0, len(st.Images))
	for n := range st.Images {
		names = append(names, n)
	}
	sort.Strings(names)
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format(time.RFC3339)
	}
	for _, n := range names {
		s := st.Images[n]
		fmt.Fprintf(out, "%s:\n", n)
		fmt.Fprintf(out, "  current:     %s\n", orNone(s.Current.ConfigDigest))
		if s.Current.ManifestDigest != "" {
			fmt.Fprintf(out, "  manifest:    %s\n", s.Current.ManifestDigest)
		}
		if s.Available != nil {
			fmt.Fprintf(out, "  available:   %s\n", s.Available.ConfigDigest)
		}
		fmt.Fprintf(out, "  last check:  %s\n", when(s.LastCheck))
		fmt.Fprintf(out, "  last update: %s\n", when(s.LastUpdate))
		fmt.Fprintf(out, "  next check:  %s\n", when(s.NextCheck))
		if len(s.Previous) > 0 {
			fmt.Fprintf(out, "  kept:        %v\n", s.Previous)
		}
		if s.LastError != "" {
			fmt.Fprintf(out, "  last error:  %s\n", s.LastError)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// watchdog keeps systemd's watchdog (WatchdogSec) fed while the agent
// shows progress within the watchdog interval, and stops feeding it when
// the agent is stuck, so that systemd restarts it. Without a watchdog it
// returns at once.
func watchdog(ctx context.Context, a *agent.Agent) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every <= 0 {
		return
	}
	// Stuck means no progress for the watchdog interval, and at least two
	// idle heartbeats.
	stuck := max(every, 2*agent.HeartbeatEvery)
	t := time.NewTicker(every / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if last := a.LastBeat(); !last.IsZero() && time.Since(last) < stuck {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}
