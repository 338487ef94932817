package bench

import (
	"fmt"
	"image/color"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WriteSVG draws the bytes on the wire of every method on every pair as
// grouped bars on a log scale and writes the chart as SVG. Methods that
// did not run (not installed, failed) have no bar.
func (r *Report) WriteSVG(w io.Writer) error {
	p, legend, width, err := r.chart()
	if err != nil {
		return err
	}
	c := vgsvg.New(width+legendWidth, 5*vg.Inch)
	drawChart(draw.New(c), p, legend, width)
	_, err = c.WriteTo(w)
	return err
}

// legendWidth is the room right of the plot for the legend.
const legendWidth = 1.8 * vg.Inch

// drawChart draws the plot in the left part of c and the legend right of
// it, so the legend never hides a bar.
func drawChart(c draw.Canvas, p *plot.Plot, legend plot.Legend, width vg.Length) {
	p.Draw(draw.Crop(c, 0, -legendWidth, 0, 0))
	legend.Draw(draw.Crop(c, width+0.1*vg.Inch, 0, 0, -0.4*vg.Inch))
}

// chart builds the plot WriteSVG draws, its legend, and the plot's width.
func (r *Report) chart() (*plot.Plot, plot.Legend, vg.Length, error) {
	var methods []string
	seen := map[string]bool{}
	for _, p := range r.Pairs {
		for _, res := range p.Results {
			if res.OK() && res.WireBytes > 0 && !seen[res.Method] {
				seen[res.Method] = true
				methods = append(methods, res.Method)
			}
		}
	}
	bars := &logBars{methods: methods}
	var pairs []string
	for _, p := range r.Pairs {
		pairs = append(pairs, p.Name)
		vals := make([]float64, len(methods))
		for i, m := range methods {
			if res := p.Result(m); res != nil && res.OK() && res.WireBytes > 0 {
				vals[i] = float64(res.WireBytes)
			}
		}
		bars.values = append(bars.values, vals)
	}
	if len(pairs) == 0 {
		return nil, plot.Legend{}, 0, fmt.Errorf("chart: the report has no pairs")
	}
	p := plot.New()
	p.Title.Text = "Bytes on the wire per update (log scale; smaller is better)"
	p.Y.Label.Text = "bytes"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = bytesTicks{}
	p.NominalX(pairs...)
	p.Add(bars)
	lo, hi := bars.yRange()
	p.Y.Min, p.Y.Max = lo, hi
	p.X.Min, p.X.Max = -0.5, float64(len(pairs))-0.5
	legend := plot.NewLegend()
	for i, m := range methods {
		legend.Add(m, colorBox{plotutil.Color(i)})
	}
	legend.Top, legend.Left = true, true
	width := vg.Length(max(5, 1.6*float64(len(pairs))+1.5)) * vg.Inch
	return p, legend, width, nil
}

// logBars draws one group of bars per pair, one bar per method, from the
// bottom of a log-scaled Y axis (gonum's BarChart starts bars at 0, which a
// log scale cannot place).
type logBars struct {
	methods []string
	values  [][]float64 // [pair][method]; 0: no bar
}

var (
	_ plot.Plotter    = (*logBars)(nil)
	_ plot.DataRanger = (*logBars)(nil)
)

// yRange is the Y axis range: whole decades around the values.
func (b *logBars) yRange() (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	for _, vs := range b.values {
		for _, v := range vs {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if hi == 0 {
		return 1, 10
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi*1.2)))
	return lo, hi
}

func (b *logBars) DataRange() (xmin, xmax, ymin, ymax float64) {
	lo, hi := b.yRange()
	return -0.5, float64(len(b.values)) - 0.5, lo, hi
}

func (b *logBars) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	n := float64(len(b.methods))
	if n == 0 {
		return
	}
	const group = 0.8
	w := group / n
	bottom := trY(plt.Y.Min)
	for pi, vs := range b.values {
		for mi, v := range vs {
			if v <= 0 {
				continue
			}
			x0 := float64(pi) - group/2 + float64(mi)*w
			l, r, top := trX(x0), trX(x0+w), trY(v)
			c.FillPolygon(plotutil.Color(mi), []vg.Point{{X: l, Y: bottom}, {X: r, Y: bottom}, {X: r, Y: top}, {X: l, Y: top}})
		}
	}
}

// colorBox is a legend entry: a filled square.
type colorBox struct{ c color.Color }

func (b colorBox) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(b.c, []vg.Point{c.Min, {X: c.Min.X, Y: c.Max.Y}, c.Max, {X: c.Max.X, Y: c.Min.Y}})
}

// bytesTicks labels each decade with a byte size.
type bytesTicks struct{}

func (bytesTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		d := math.Pow(10, e)
		if d >= lo && d <= hi {
			ts = append(ts, plot.Tick{Value: d, Label: decadeLabel(int(e))})
		}
		for k := 2.0; k < 10; k++ {
			if v := k * d; v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v})
			}
		}
	}
	return ts
}

// decadeLabel names 10^e bytes: "1 B", "10 kB", "100 MB".
func decadeLabel(e int) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	if e < 0 || e/3 >= len(units) {
		return fmt.Sprintf("1e%d B", e)
	}
	return fmt.Sprintf("%d %s", int(math.Pow10(e%3)), units[e/3])
}
