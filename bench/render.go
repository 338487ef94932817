package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// baseline is the method the "vs pull" column compares with.
const baseline = "pull-gzip"

// WriteMarkdown writes the report as one Markdown table per pair, with the
// methods' notes below it.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	for i, p := range r.Pairs {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "## %s\n\n", p.Name)
		fmt.Fprintf(&b, "`%s` → `%s`: %d of %d layers changed, %s uncompressed.\n\n",
			p.From, p.To, p.Changed, p.Layers, HumanBytes(p.ChangedBytes))
		var base int64
		if br := p.Result(baseline); br != nil && br.OK() {
			base = br.WireBytes
		}
		rows := [][]string{{"method", "wire bytes", "vs pull", "extra", "diff time", "diff peak RSS", "apply time", "apply peak RSS", "verified"}}
		var notes []string
		for _, res := range p.Results {
			row := []string{res.Method}
			switch {
			case len(res.NotInstalled) > 0:
				row = append(row, "not installed: "+strings.Join(res.NotInstalled, ", "))
			case res.Error != "":
				row = append(row, "failed")
				notes = append(notes, fmt.Sprintf("%s failed: %s", res.Method, oneLine(res.Error)))
			default:
				ratio := "-"
				if base > 0 {
					ratio = fmt.Sprintf("%.1f%%", 100*float64(res.WireBytes)/float64(base))
				}
				extra := ""
				if res.Extra > 0 || res.ExtraWhat != "" {
					extra = HumanBytes(res.Extra) + " " + res.ExtraWhat
				}
				row = append(row, HumanBytes(res.WireBytes), ratio, extra,
					fmtDuration(res.DiffTime), fmtRSS(res.DiffRSS), fmtDuration(res.ApplyTime), fmtRSS(res.ApplyRSS), res.Verified.String())
			}
			for len(row) < len(rows[0]) {
				row = append(row, "")
			}
			rows = append(rows, row)
			if res.Note != "" && res.OK() {
				notes = append(notes, res.Method+": "+res.Note)
			}
		}
		writeTable(&b, rows)
		if len(notes) > 0 {
			b.WriteString("\n")
			for _, n := range notes {
				fmt.Fprintf(&b, "- %s\n", n)
			}
		}
	}
	if r.Interrupted {
		b.WriteString("\nInterrupted: only the results that finished are shown.\n")
	}
	if len(r.Pairs) > 0 {
		b.WriteString("\nTimes are wall-clock, summed over the changed layers; \"-\": not measured (work done inside the harness, or nothing to do).\n")
		if r.Memory != "" {
			fmt.Fprintf(&b, "Memory: %s.\n", r.Memory)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTable writes rows as a Markdown table with aligned columns; every
// column but the first and last is right-aligned.
func writeTable(b *strings.Builder, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	pad := func(s string, n int, right bool) string {
		gap := strings.Repeat(" ", n-len([]rune(s)))
		if right {
			return gap + s
		}
		return s + gap
	}
	for r, row := range rows {
		b.WriteString("|")
		for i, c := range row {
			right := r > 0 && i > 0 && i < len(row)-1
			fmt.Fprintf(b, " %s |", pad(c, width[i], right))
		}
		b.WriteString("\n")
		if r == 0 {
			b.WriteString("|")
			for i := range row {
				dash := strings.Repeat("-", max(width[i], 3))
				if i > 0 && i < len(row)-1 {
					dash = dash[1:] + ":"
				}
				fmt.Fprintf(b, " %s |", dash)
			}
			b.WriteString("\n")
		}
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// HumanBytes formats a byte count with three significant digits in decimal
// units (B, kB, MB, GB).
func HumanBytes(n int64) string {
	units := []string{"kB", "MB", "GB", "TB"}
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	u := -1
	for f >= 999.5 && u < len(units)-1 {
		f /= 1000
		u++
	}
	switch {
	case f >= 99.95:
		return fmt.Sprintf("%.0f %s", f, units[u])
	case f >= 9.995:
		return fmt.Sprintf("%.1f %s", f, units[u])
	}
	return fmt.Sprintf("%.2f %s", f, units[u])
}

func fmtDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}

func fmtRSS(n int64) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
