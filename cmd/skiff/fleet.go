package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/transport/api"
)

func newFleetCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Ask a rollout server about its devices",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newFleetDevicesCommand(g))
	return cmd
}

type fleetDevicesOptions struct {
	adminClientOptions
	channel, image, digest string
	result                 string
	stale                  time.Duration
	pageSize               int
	format                 formatOptions
	now                    func() time.Time // tests
}

func (o *fleetDevicesOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	o.adminClientOptions.addFlags(fs)
	fs.StringVar(&o.channel, "channel", "", "only this channel")
	fs.StringVar(&o.image, "image", "", "only this logical image")
	fs.StringVar(&o.digest, "config-digest", "", "only devices running this config digest (sha256:…)")
	fs.StringVar(&o.result, "result", "", "only rows whose last install report is installed, rolled_back or failed")
	fs.DurationVar(&o.stale, "stale", 0, "only rows not seen for longer than this, e.g. 24h")
	fs.IntVar(&o.pageSize, "page-size", 500, "devices asked for per request (all pages are printed)")
	o.format.AddFlags(cmd, legacyNone)
	_ = cmd.MarkFlagRequired("server")
}

func newFleetDevicesCommand(g *globalOptions) *cobra.Command {
	o := &fleetDevicesOptions{}
	cmd := &cobra.Command{
		Use:   "devices --server URL --token-file FILE [--channel C] [--image I] [--stale 24h]",
		Short: "List the devices a rollout server knows, with what they run and their last install",
		Long: `List the server's device inventory (GET /v1/devices, admin token): per device
and image the channel, the running config digest, when it last checked in,
its agent version and platform, and its last install report.

Exit codes: 0 listed, 1 the server could not be asked or refused, 2 usage.`,
		Example: `  skiff fleet devices --server https://skiff.example.com --token-file /etc/skiff/admin-token --stale 24h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFleetDevices(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runFleetDevices(ctx context.Context, o *fleetDevicesOptions, out io.Writer) error {
	base, token, client, err := o.connect("GET /v1/devices", time.Minute)
	if err != nil {
		return err
	}
	if o.pageSize < 1 || o.pageSize > 1000 {
		return usageError{fmt.Sprintf("--page-size %d: want 1 to 1000", o.pageSize)}
	}
	q := url.Values{}
	for k, v := range map[string]string{"channel": o.channel, "image": o.image, "config_digest": o.digest, "result": o.result} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.stale < 0 {
		return usageError{"--stale must be positive"}
	}
	if o.stale > 0 {
		q.Set("stale", o.stale.String())
	}
	q.Set("limit", fmt.Sprint(o.pageSize))
	var devs []api.Device
	for {
		page, err := getDevices(ctx, client, base+api.PathDevices+"?"+q.Encode(), token)
		if err != nil {
			return err
		}
		devs = append(devs, page.Devices...)
		if page.Next == "" {
			break
		}
		q.Set("after", page.Next)
	}
	if o.format.json() {
		if devs == nil {
			devs = []api.Device{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(devs)
	}
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	return printDevices(out, devs, now())
}

func getDevices(ctx context.Context, c *http.Client, u, token string) (*api.DevicesResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, shortText(msg, 512))
	}
	var dr api.DevicesResponse
	if err := json.Unmarshal(b, &dr); err != nil {
		return nil, fmt.Errorf("GET %s: unreadable answer: %w", u, err)
	}
	return &dr, nil
}

func shortText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// printDevices prints one line per device and image.
func printDevices(out io.Writer, devs []api.Device, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tIMAGE\tCHANNEL\tRUNNING\tLAST SEEN\tAGENT\tPLATFORM\tLABELS\tLAST RESULT")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, d := range devs {
		for _, im := range d.Images {
			result := "-"
			if r := im.LastReport; r != nil {
				result = r.Result + " " + shortDigest(r.ToDigest) + " " + ago(now, r.Time)
				if r.Error != "" {
					result += ": " + shortText(strings.ReplaceAll(r.Error, "\n", " "), 60)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, im.Image, dash(im.Channel), shortDigest(im.ConfigDigest),
				ago(now, im.LastSeen), dash(im.AgentVersion), dash(im.Platform), dash(labelText(im.Labels)), result)
		}
	}
	return tw.Flush()
}

// labelText is labels as k=v,k=v in key order ("" for none).
func labelText(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return strings.Join(keys, ",")
}

// shortDigest is the first 12 hex digits of a sha256 digest ("-" for none).
func shortDigest(d string) string {
	if d == "" {
		return "-"
	}
	h := strings.TrimPrefix(d, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// ago says how long before now t was, roughly: "45s ago", "3m ago",
// "5h ago", "2d ago"; "never" for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
