package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The chart is plain SVG written here rather than with a plotting library:
// gonum/plot parses its fonts when the program starts, which added 4 MB to
// the resident memory of every skiff command — apply on a device included.

// palette colours the methods, in order (Okabe–Ito, readable by the colour
// blind), repeating when there are more methods.
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999", "#882255"}

// Chart geometry, in pixels.
const (
	chartLeft   = 80  // room for the Y labels
	chartTop    = 40  // room for the title
	chartHeight = 360 // plot area
	chartBottom = 40  // room for the pair names
	groupWidth  = 150 // per pair
	legendWidth = 170
)

// WriteSVG draws the bytes on the wire of every method on every pair as
// grouped bars on a log scale and writes the chart as SVG. Methods that
// did not run (not installed, failed) have no bar.
func (r *Report) WriteSVG(w io.Writer) error {
	if len(r.Pairs) == 0 {
		return fmt.Errorf("chart: the report has no pairs")
	}
	var methods []string
	seen := map[string]bool{}
	lo, hi := math.Inf(1), 0.0
	for _, p := range r.Pairs {
		for _, res := range p.Results {
			if !res.OK() || res.WireBytes <= 0 {
				continue
			}
			if !seen[res.Method] {
				seen[res.Method] = true
				methods = append(methods, res.Method)
			}
			lo, hi = min(lo, float64(res.WireBytes)), max(hi, float64(res.WireBytes))
		}
	}
	// Whole decades around the values.
	eLo, eHi := 0.0, 1.0
	if hi > 0 {
		eLo, eHi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi*1.2))
	}
	plotW := float64(groupWidth * len(r.Pairs))
	width := chartLeft + plotW + legendWidth
	height := float64(chartTop + chartHeight + chartBottom)
	y := func(v float64) float64 { // value to pixel row
		return chartTop + chartHeight*(1-(math.Log10(v)-eLo)/(eHi-eLo))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14" text-anchor="middle">Bytes on the wire per update (log scale; smaller is better)</text>`+"\n", chartLeft+plotW/2)
	// Grid and Y labels: a line per decade, faint ones at 2..9.
	for e := eLo; e <= eHi; e++ {
		d := math.Pow(10, e)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#bbb"/>`+"\n", chartLeft, chartLeft+plotW, y(d), y(d))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", chartLeft-6, y(d), decadeLabel(int(e)))
		for k := 2.0; k < 10 && e < eHi; k++ {
			fmt.Fprintf(&b, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", chartLeft, chartLeft+plotW, y(k*d), y(k*d))
		}
	}
	// Bars: one group per pair, one bar per method.
	barW := groupWidth * 0.8 / float64(max(1, len(methods)))
	for pi, p := range r.Pairs {
		x0 := chartLeft + float64(pi*groupWidth) + groupWidth*0.1
		for mi, m := range methods {
			res := p.Result(m)
			if res == nil || !res.OK() || res.WireBytes <= 0 {
				continue
			}
			top := y(float64(res.WireBytes))
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`+"\n",
				x0+float64(mi)*barW, top, barW, chartTop+chartHeight-top, palette[mi%len(palette)],
				html.EscapeString(p.Name), html.EscapeString(m), HumanBytes(res.WireBytes))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			chartLeft+float64(pi*groupWidth)+groupWidth/2, chartTop+chartHeight+20, html.EscapeString(p.Name))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="none" stroke="black"/>`+"\n", chartLeft, chartTop, plotW, chartHeight)
	// Legend.
	lx := chartLeft + plotW + 16
	for mi, m := range methods {
		ly := float64(chartTop + 8 + mi*20)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/>`+"\n", lx, ly, palette[mi%len(palette)])
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" dominant-baseline="middle">%s</text>`+"\n", lx+18, ly+6, html.EscapeString(m))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// decadeLabel names 10^e bytes: "1 B", "10 kB", "100 MB".
func decadeLabel(e int) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	if e < 0 || e/3 >= len(units) {
		return fmt.Sprintf("1e%d B", e)
	}
	return fmt.Sprintf("%d %s", int(math.Pow10(e%3)), units[e/3])
}
