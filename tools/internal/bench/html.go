package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// palette is used in order for the plotted series.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}

// WriteHTML writes a self-contained page: the figures table, the latency table and two
// inline SVG plots (latency percentiles per query kind on a log scale, and Fusion's p50/p99
// against the equivalent find). No scripts, no external resources.
func (r *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>` + esc(r.Title) + `</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#080}.fail{color:#c00;font-weight:bold}
.meta td:first-child{font-weight:bold}svg{margin:1em 0;border:1px solid #eee}
</style></head><body>
`)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<table class=\"meta\">\n", esc(r.Title))
	t := r.Tree
	for _, kv := range [][2]string{{"date", r.Date}, {"command", r.Command}, {"machine", r.Machine.String()},
		{"tree", fmt.Sprintf("%s: %s files, %s directories, %s (reused: %v)", t.Root, commas(int64(t.Files)), commas(int64(t.Dirs)), t.Layout, t.Reused)}} {
		fmt.Fprintf(&b, "<tr><td>%s</td><td><code>%s</code></td></tr>\n", esc(kv[0]), esc(kv[1]))
	}
	b.WriteString("</table>\n<h2>Figures</h2>\n<table>\n<tr><th>id</th><th>figure</th><th>value</th><th>target</th><th>result</th><th>detail</th></tr>\n")
	for _, f := range r.Figures {
		cls := ""
		if f.Pass != nil {
			cls = map[bool]string{true: "pass", false: "fail"}[*f.Pass]
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td class=\"num\">%s</td><td>%s</td><td class=\"%s\">%s</td><td>%s</td></tr>\n",
			esc(f.ID), esc(f.Name), esc(FormatValue(f.Value, f.Unit)), esc(f.target()), cls, esc(f.result()), esc(f.Detail))
	}
	b.WriteString("</table>\n")
	if len(r.Latency) > 0 {
		b.WriteString("<h2>Latency percentiles</h2>\n")
		b.WriteString(percentilePlot(r.Latency))
		if bars := findPlot(r.Latency); bars != "" {
			b.WriteString("<h2>Fusion vs the equivalent find</h2>\n")
			b.WriteString(bars)
		}
		b.WriteString("<table>\n<tr><th>query</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>find ms</th></tr>\n")
		for _, s := range r.Latency {
			l := s.Lat
			find := "-"
			if s.FindMs > 0 {
				find = trimFloat(s.FindMs, 2)
			}
			fmt.Fprintf(&b, "<tr><td>%s</td><td class=\"num\">%d</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td class=\"num\">%s</td></tr>\n",
				esc(s.Name), l.Count, l.P50, l.P90, l.P99, l.P999, l.Max, find)
		}
		b.WriteString("</table>\n")
	}
	for _, list := range []struct {
		title string
		items []string
	}{{"Errors", r.Errors}, {"How each figure is measured", r.Notes}} {
		if len(list.items) == 0 {
			continue
		}
		fmt.Fprintf(&b, "<h2>%s</h2>\n<ul>\n", esc(list.title))
		for _, n := range list.items {
			fmt.Fprintf(&b, "<li>%s</li>\n", esc(n))
		}
		b.WriteString("</ul>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// logScale maps milliseconds to a y or x coordinate on a log axis spanning whole decades.
type logScale struct {
	lo, hi   float64 // decades: 10^lo .. 10^hi ms
	from, to float64 // pixels
}

func newLogScale(minV, maxV, from, to float64) logScale {
	minV, maxV = max(minV, 1e-3), max(maxV, 1e-3)
	return logScale{lo: math.Floor(math.Log10(minV)), hi: math.Max(math.Ceil(math.Log10(maxV)), math.Floor(math.Log10(minV))+1), from: from, to: to}
}

func (s logScale) at(v float64) float64 {
	v = max(v, math.Pow(10, s.lo))
	return s.from + (math.Log10(v)-s.lo)/(s.hi-s.lo)*(s.to-s.from)
}

func decadeLabel(d float64) string {
	return fmt.Sprintf("%g ms", math.Pow(10, d))
}

// percentilePlot draws one line per series through p50, p90, p99, p99.9 and max.
func percentilePlot(series []Series) string {
	const w, h, left, right, top, bottom = 760.0, 360.0, 70.0, 200.0, 20.0, 40.0
	names := []string{"p50", "p90", "p99", "p99.9", "max"}
	lo, hi := math.Inf(1), 0.0
	for _, s := range series {
		for _, v := range values(s.Lat) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		if s.Target > 0 {
			hi = math.Max(hi, s.Target)
		}
	}
	y := newLogScale(lo, hi, h-bottom, top)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="12">`+"\n", w, h)
	for d := y.lo; d <= y.hi; d++ {
		py := y.at(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, py, w-right, py, left-6, py+4, decadeLabel(d))
	}
	step := (w - left - right) / float64(len(names)-1)
	for i, n := range names {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", left+float64(i)*step, h-bottom+18, n)
	}
	targets := map[float64]bool{}
	for _, s := range series {
		if s.Target > 0 && !targets[s.Target] {
			targets[s.Target] = true
			py := y.at(s.Target)
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#c00" stroke-dasharray="4 4"/><text x="%.0f" y="%.1f" fill="#c00" font-size="10">target p99 %g ms</text>`+"\n",
				left, py, w-right, py, left+4, py-3, s.Target)
		}
	}
	for i, s := range series {
		c := palette[i%len(palette)]
		var pts []string
		for j, v := range values(s.Lat) {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", left+float64(j)*step, y.at(v)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		for _, p := range pts {
			xy := strings.Split(p, ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`, xy[0], xy[1], c)
		}
		ly := top + 10 + float64(i)*18
		fmt.Fprintf(&b, "\n"+`<rect x="%.0f" y="%.1f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.1f">%s</text>`+"\n",
			w-right+12, ly-10, c, w-right+30, ly, html.EscapeString(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func values(l Latencies) []float64 { return []float64{l.P50, l.P90, l.P99, l.P999, l.Max} }

// findPlot draws, per query with a find equivalent, bars for Fusion's p50 and p99 and for
// find, on a log scale; empty when no series has a find time.
func findPlot(series []Series) string {
	var rows []Series
	lo, hi := math.Inf(1), 0.0
	for _, s := range series {
		if s.FindMs > 0 {
			rows = append(rows, s)
			lo = math.Min(lo, math.Min(s.Lat.P50, s.FindMs))
			hi = math.Max(hi, math.Max(s.Lat.P99, s.FindMs))
		}
	}
	if len(rows) == 0 {
		return ""
	}
	const w, left, right, barH = 760.0, 130.0, 90.0, 12.0
	rowH := 3*barH + 14
	h := 30 + float64(len(rows))*rowH + 30
	x := newLogScale(lo, hi, left, w-right)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="12">`+"\n", w, h)
	for d := x.lo; d <= x.hi; d++ {
		px := x.at(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="20" x2="%.1f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
			px, px, h-25, px, h-10, decadeLabel(d))
	}
	bars := []struct {
		label, color string
		v            func(Series) float64
	}{
		{"Fusion p50", palette[0], func(s Series) float64 { return s.Lat.P50 }},
		{"Fusion p99", palette[3], func(s Series) float64 { return s.Lat.P99 }},
		{"find", palette[1], func(s Series) float64 { return s.FindMs }},
	}
	for i, s := range rows {
		y0 := 24 + float64(i)*rowH
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, y0+1.8*barH, html.EscapeString(s.Name))
		for j, bar := range bars {
			v := bar.v(s)
			y := y0 + float64(j)*barH
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.1f" height="%.0f" fill="%s"><title>%s %.3f ms</title></rect><text x="%.1f" y="%.1f" font-size="10">%s %.3g ms</text>`+"\n",
				left, y, math.Max(x.at(v)-left, 1), barH-2, bar.color, bar.label, v, x.at(v)+4, y+barH-3, bar.label, v)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
