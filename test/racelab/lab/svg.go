package lab

import (
	"cmp"
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// Plot geometry: one horizontal strip per row, latency on a log axis from
// 0.1 ms to 10 s, so sub-millisecond answers and 5 s stalls share a picture.
const (
	plotLeft   = 330.0
	plotWidth  = 600.0
	rowHeight  = 18.0
	plotTop    = 50.0
	minDecade  = -1.0 // 0.1 ms
	maxDecade  = 4.0  // 10 s
	svgWidth   = plotLeft + plotWidth + 110
	glibcColor = "#1f77b4"
	muslColor  = "#e6550d"
	// StallMS is the plot's dashed line and the outliers it always draws.
	stallMS = 1000
	// PlotDots is the most dots a strip draws for its lookups under 1 s:
	// evenly spaced quantiles of them, so a strip of thousands of lookups
	// keeps its shape and the page's plot stays a few hundred KB.
	PlotDots = 100
)

// Strip is one row of a latency plot.
type Strip struct {
	// Heading, when set, makes the strip a bold heading line with a
	// separator above it and no dots.
	Heading string
	// Label names the row; Glibc picks its colour (musl otherwise).
	Label string
	Glibc bool
	// Separator draws a line above the strip (a new group of rows).
	Separator bool
	Lookups   []Lookup
}

// xFor maps a latency in ms to the x coordinate (clamped to the axis).
func xFor(ms float64) float64 {
	d := minDecade
	if ms > 0 {
		d = math.Log10(ms)
	}
	d = math.Max(minDecade, math.Min(maxDecade, d))
	return plotLeft + (d-minDecade)/(maxDecade-minDecade)*plotWidth
}

// plotted are the lookups a strip draws: every failure and every lookup
// over 1 s, and of the others at most PlotDots, evenly spaced quantiles
// (the fastest and the slowest included).
func plotted(ls []Lookup) []Lookup {
	var out, fast []Lookup
	for _, l := range ls {
		if !l.OK || l.MS > stallMS {
			out = append(out, l)
		} else {
			fast = append(fast, l)
		}
	}
	if len(fast) <= PlotDots {
		return append(out, fast...)
	}
	slices.SortFunc(fast, func(a, b Lookup) int { return cmp.Compare(a.MS, b.MS) })
	for i := range PlotDots {
		out = append(out, fast[i*(len(fast)-1)/(PlotDots-1)])
	}
	return out
}

// PlotSVG draws the strips: a translucent dot per plotted lookup (a cross
// when it failed), the strip's p50 and p99 (of all its lookups) as ticks,
// and its count over 1 s and failed on the right. The race lab and the
// fault matrix share it.
func PlotSVG(title string, strips []Strip) string {
	var b strings.Builder
	height := plotTop + rowHeight*float64(len(strips)) + 60
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="10" y="38" fill="#555">dot = lookup (<tspan fill="%s">glibc</tspan>, <tspan fill="%s">musl</tspan>; × = failed; under 1 s at most %d quantiles per row, every slower one drawn), log scale; bar = p50, ▲ = p99; dashed = 1 s</text>`+"\n", glibcColor, muslColor, PlotDots)

	bottom := plotTop + rowHeight*float64(len(strips))
	labels := []string{"0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s"}
	for i, l := range labels {
		x := xFor(math.Pow(10, minDecade+float64(i)))
		stroke := ` stroke="#ddd"`
		if l == "1 s" {
			stroke = ` stroke-dasharray="4 3" stroke="#c00"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"%s/>`+"\n", x, plotTop-4, x, bottom+4, stroke)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", x, bottom+20, l)
	}

	for i, s := range strips {
		y := plotTop + rowHeight*float64(i) + rowHeight/2
		if s.Separator || s.Heading != "" {
			fmt.Fprintf(&b, `<line x1="10" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", y-rowHeight/2, svgWidth-10, y-rowHeight/2)
		}
		if s.Heading != "" {
			fmt.Fprintf(&b, `<text x="10" y="%.1f" dominant-baseline="middle" font-weight="bold">%s</text>`+"\n", y, html.EscapeString(s.Heading))
			continue
		}
		color := muslColor
		if s.Glibc {
			color = glibcColor
		}
		fmt.Fprintf(&b, `<text x="10" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", y, html.EscapeString(s.Label))
		fmt.Fprintf(&b, `<g fill="%s" fill-opacity="0.35">`+"\n", color)
		var crosses []string
		for j, l := range plotted(s.Lookups) {
			// Spread dots a little vertically so equal latencies stay visible.
			x, jy := xFor(l.MS), y+float64(j%5-2)*1.5
			if l.OK {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5"/>`+"\n", x, jy)
			} else {
				crosses = append(crosses, fmt.Sprintf(`<path d="M%.1f %.1fl5 5m0 -5l-5 5" stroke="black"/>`, x-2.5, jy-2.5))
			}
		}
		b.WriteString("</g>\n")
		for _, c := range crosses {
			b.WriteString(c + "\n")
		}
		st := Summarize(s.Lookups)
		if st.N == 0 {
			continue
		}
		x50, x99 := xFor(st.P50), xFor(st.P99)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="2"/>`+"\n", x50, y-7, x50, y+7)
		fmt.Fprintf(&b, `<path d="M%.1f %.1fl-4 6h8z" fill="black"/>`+"\n", x99, y+2)
		// The stalls pile up on one spot; say how many there are.
		fill := "#999"
		if st.Over1s > 0 || st.Failures > 0 {
			fill = "#c00"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" fill="%s">%d &gt; 1 s, %d ✗</text>`+"\n", plotLeft+plotWidth+10, y, fill, st.Over1s, st.Failures)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// renderSVG is the race lab's plot: a strip per row, rows of one
// configuration grouped between separators.
func renderSVG(rows []Row, title string) string {
	strips := make([]Strip, len(rows))
	for i, r := range rows {
		strips[i] = Strip{Label: r.Label + " — " + r.Client, Glibc: isGlibc(r.Client), Lookups: r.Lookups,
			Separator: i > 0 && r.Mode != rows[i-1].Mode}
	}
	return PlotSVG(title, strips)
}
