package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/transport/api"
)

// rolloutOptions are the flags every `skiff rollout` command shares.
type rolloutOptions struct {
	adminClientOptions
	format formatOptions
	now    func() time.Time // tests
}

func (o *rolloutOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	o.adminClientOptions.addFlags(fs)
	o.format.AddFlags(cmd, legacyNone)
	_ = cmd.MarkFlagRequired("server")
}

const rolloutExitCodes = `

Exit codes: 0 done, 1 the server could not be asked or refused (a change
the rollout's status does not allow is refused with 409), 2 usage.`

func newRolloutCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Stage a target over a track's devices in waves, and steer the rollout",
		Long: `Staged rollouts on a rollout server (admin token): a target is offered to
a growing share of a track's devices, wave by wave; a wave starts when the
one before reached the success threshold, and too many rollbacks pause the
rollout. Waves are cumulative percentages of the devices (a hash of the
rollout and device IDs, the same on every server) or label groups
(group=canary, from the labels: of the agents' configs).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newRolloutStartCommand(g), newRolloutStatusCommand(g),
		newRolloutPauseCommand(g),
		newRolloutActionCommand(g, "resume", "Let a paused rollout go on (the rollbacks it paused for are excused)"),
		newRolloutActionCommand(g, "abort", "End a rollout: every device not pinned is offered the previous target again"),
		newRolloutActionCommand(g, "skip", "Start the next wave now, whatever the current one's counts"),
		newRolloutPinCommand(g), newRolloutUnpinCommand(g))
	return cmd
}

type rolloutStartOptions struct {
	rolloutOptions
	waves      string
	success    float64
	errors     float64
	minDevices int
	soak       time.Duration
}

func newRolloutStartCommand(_ *globalOptions) *cobra.Command {
	o := &rolloutStartOptions{}
	cmd := &cobra.Command{
		Use:   "start CHANNEL/IMAGE REF|CONFIG_DIGEST --waves 1%,10%,100% --server URL",
		Short: "Publish REF to the track's history and roll it out in waves",
		Long: `Start a staged rollout (POST /v1/rollouts/): REF is published into the
track's history, as skiff push's publish does, but the track's target does
not move; the devices of started waves are offered REF, the others the
previous target. A CONFIG_DIGEST (sha256:…) rolls out an image published on
the track before. The last wave must be 100%.` + rolloutExitCodes,
		Example: `  skiff rollout start stable/web docker://registry:5000/web:2 --waves 1%,10%,100% --server https://skiff.example.com
  skiff rollout start stable/web docker://registry:5000/web:2 --waves group=canary,25%,100% --soak 30m --errors 0.02`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRolloutStart(cmd.Context(), o, args, cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.waves, "waves", "", `the waves, e.g. "1%,10%,100%" or "group=canary,25%,100%" (required)`)
	fs.Float64Var(&o.success, "success", 0, "fraction of a wave's devices that must have installed before the next wave starts (server default 0.9)")
	fs.Float64Var(&o.errors, "errors", 0, "fraction of a wave's devices rolled back or failed above which the rollout pauses (server default 0.05)")
	fs.IntVar(&o.minDevices, "min-devices", 0, "least number of devices a percentage wave is judged on (server default 5)")
	fs.DurationVar(&o.soak, "soak", 0, "how long a successful wave waits before the next starts, e.g. 10m")
	_ = cmd.MarkFlagRequired("waves")
	return cmd
}

func runRolloutStart(ctx context.Context, o *rolloutStartOptions, args []string, out io.Writer) error {
	channel, image, ok := strings.Cut(args[0], "/")
	if !ok || channel == "" || image == "" || strings.Contains(image, "/") {
		return usageError{fmt.Sprintf("%q: want CHANNEL/IMAGE, e.g. stable/web", args[0])}
	}
	if o.soak < 0 {
		return usageError{"--soak must not be negative"}
	}
	req := api.RolloutRequest{Channel: channel, Image: image, Waves: o.waves,
		SuccessThreshold: o.success, ErrorThreshold: o.errors, MinDevices: o.minDevices}
	if o.soak > 0 {
		req.Soak = o.soak.String()
	}
	if strings.HasPrefix(args[1], "sha256:") {
		req.ConfigDigest = args[1]
	} else {
		req.Ref = args[1]
	}
	var ro api.Rollout
	if err := o.call(ctx, http.MethodPost, api.PathRollouts, req, &ro); err != nil {
		return err
	}
	return o.print(out, ro)
}

type rolloutStatusOptions struct {
	rolloutOptions
	channel, image, status string
}

func newRolloutStatusCommand(_ *globalOptions) *cobra.Command {
	o := &rolloutStatusOptions{}
	cmd := &cobra.Command{
		Use:   "status [ID] --server URL",
		Short: "Show a rollout's waves and counts, or list the rollouts",
		Long: `Without ID, list the rollouts (newest first, at most 100; --channel,
--image and --status filter). With ID, show the rollout: its status, and per
wave when it started and succeeded and its devices as the server last
counted them (cumulative: a wave's counts include the earlier waves').` + rolloutExitCodes,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRolloutStatus(cmd.Context(), o, args, cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.channel, "channel", "", "list: only this channel")
	fs.StringVar(&o.image, "image", "", "list: only this logical image")
	fs.StringVar(&o.status, "status", "", "list: only running, paused, aborted or completed rollouts")
	return cmd
}

func runRolloutStatus(ctx context.Context, o *rolloutStatusOptions, args []string, out io.Writer) error {
	if len(args) == 1 {
		if o.channel != "" || o.image != "" || o.status != "" {
			return usageError{"--channel, --image and --status filter the list: give them without an ID"}
		}
		var ro api.Rollout
		if err := o.call(ctx, http.MethodGet, api.PathRollouts+url.PathEscape(args[0]), nil, &ro); err != nil {
			return err
		}
		return o.print(out, ro)
	}
	q := url.Values{}
	for k, v := range map[string]string{"channel": o.channel, "image": o.image, "status": o.status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := api.PathRollouts
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var list api.RolloutsResponse
	if err := o.call(ctx, http.MethodGet, path, nil, &list); err != nil {
		return err
	}
	if o.format.json() {
		return writeIndented(out, list.Rollouts)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTRACK\tSTATUS\tWAVE\tPLAN\tTARGET\tCREATED")
	for _, ro := range list.Rollouts {
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%d of %d\t%s\t%s\t%s\n", ro.ID, ro.Channel, ro.Image, ro.Status, ro.Wave+1, len(ro.Waves),
			ro.Plan, shortDigest(ro.Target), o.ago(ro.Created))
	}
	return tw.Flush()
}

func newRolloutPauseCommand(_ *globalOptions) *cobra.Command {
	o := &rolloutOptions{}
	var reason string
	cmd := &cobra.Command{
		Use:   "pause ID --server URL [--reason TEXT]",
		Short: "Stop a running rollout from spreading (devices that run the target keep it)",
		Long: `Pause a running rollout: no device that does not run the target yet is
offered it until the rollout is resumed.` + rolloutExitCodes,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ro api.Rollout
			if err := o.call(cmd.Context(), http.MethodPost, api.PathRollouts+url.PathEscape(args[0])+"/pause",
				api.RolloutPauseRequest{Reason: reason}, &ro); err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), ro)
		},
	}
	o.AddFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown in the rollout's status")
	return cmd
}

func newRolloutActionCommand(_ *globalOptions, action, short string) *cobra.Command {
	o := &rolloutOptions{}
	cmd := &cobra.Command{
		Use:   action + " ID --server URL",
		Short: short,
		Long:  short + "." + rolloutExitCodes,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ro api.Rollout
			if err := o.call(cmd.Context(), http.MethodPost, api.PathRollouts+url.PathEscape(args[0])+"/"+action, nil, &ro); err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), ro)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func newRolloutPinCommand(_ *globalOptions) *cobra.Command {
	o := &rolloutOptions{}
	cmd := &cobra.Command{
		Use:   "pin ID DEVICE CONFIG_DIGEST --server URL",
		Short: "Make a device be offered an image of the track whatever the rollout says",
		Long: `Pin DEVICE to CONFIG_DIGEST (an image published on the rollout's track)
while the rollout governs the track: in every status, aborted included.` + rolloutExitCodes,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ro api.Rollout
			if err := o.call(cmd.Context(), http.MethodPut, pinPath(args[0], args[1]), api.RolloutPin{ConfigDigest: args[2]}, &ro); err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), ro)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func newRolloutUnpinCommand(_ *globalOptions) *cobra.Command {
	o := &rolloutOptions{}
	cmd := &cobra.Command{
		Use:   "unpin ID DEVICE --server URL",
		Short: "Remove a device's pin: the rollout decides what it is offered again",
		Long:  "Remove DEVICE's pin from the rollout." + rolloutExitCodes,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ro api.Rollout
			if err := o.call(cmd.Context(), http.MethodDelete, pinPath(args[0], args[1]), nil, &ro); err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), ro)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func pinPath(id, device string) string {
	return api.PathRollouts + url.PathEscape(id) + "/pins/" + url.PathEscape(device)
}

// call sends one request with the admin token and decodes the answer
// into v.
func (o *rolloutOptions) call(ctx context.Context, method, path string, body, v any) error {
	base, token, client, err := o.connect("rollouts", 5*time.Minute) // a start opens and publishes an image
	if err != nil {
		return err
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	u := base + path
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, shortText(msg, 512))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: unreadable answer: %w", method, u, err)
	}
	return nil
}

func (o *rolloutOptions) ago(rfc3339 string) string {
	if rfc3339 == "" {
		return "-"
	}
	t, err := time.Parse(time.RFC3339Nano, rfc3339)
	if err != nil {
		return rfc3339
	}
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	return ago(now(), t)
}

func writeIndented(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// print shows one rollout: a header, then a line per wave.
func (o *rolloutOptions) print(out io.Writer, ro api.Rollout) error {
	if o.format.json() {
		return writeIndented(out, ro)
	}
	status := ro.Status
	if ro.PauseReason != "" {
		status += ": " + ro.PauseReason
	}
	soak := ro.Soak
	if soak == "" {
		soak = "none"
	}
	previous := ro.Previous
	if previous == "" {
		previous = "none"
	}
	fmt.Fprintf(out, "Rollout:   %s (%s/%s, created %s)\n", ro.ID, ro.Channel, ro.Image, o.ago(ro.Created))
	fmt.Fprintf(out, "Target:    %s (previous %s)\n", ro.Target, previous)
	fmt.Fprintf(out, "Status:    %s\n", status)
	fmt.Fprintf(out, "Plan:      %s (success ≥ %s, errors > %s pause, at least %d devices a wave, soak %s)\n",
		ro.Plan, percent(ro.SuccessThreshold), percent(ro.ErrorThreshold), ro.MinDevices, soak)
	if len(ro.Pins) > 0 {
		fmt.Fprintf(out, "Pins:      %d\n", len(ro.Pins))
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tSELECTS\tSTARTED\tSUCCEEDED\tDEVICES\tINSTALLED\tROLLED BACK\tFAILED")
	for i, w := range ro.Waves {
		mark := " "
		if i == ro.Wave && (ro.Status == "running" || ro.Status == "paused") {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", i+1, mark, w.Wave, o.ago(w.Started), o.ago(w.Succeeded),
			w.Devices, w.Installed, w.RolledBack, w.Failed)
	}
	return tw.Flush()
}

// percent formats a fraction: 0.9 -> "90%".
func percent(f float64) string {
	return fmt.Sprintf("%g%%", float64(int64(f*1000+0.5))/10)
}
