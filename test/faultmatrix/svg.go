package faultmatrix

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// The plot follows the race lab's (test/racelab/lab/svg.go, unexported
// there): one strip per cell, latency on a log axis from 0.1 ms to 10 s.
const (
	plotLeft  = 330.0
	plotWidth = 600.0
	rowH      = 14.0
	plotTop   = 50.0
	svgWidth  = plotLeft + plotWidth + 90
)

func xFor(ms float64) float64 {
	d := -1.0
	if ms > 0 {
		d = math.Log10(ms)
	}
	d = math.Max(-1, math.Min(4, d))
	return plotLeft + (d+1)/5*plotWidth
}

// SVG draws every lookup of every cell as a dot (× when it failed), with
// p50 and p99 ticks and the count over 1 s on the right; faults are
// separated by a line and a heading.
func (r Run) SVG() string {
	var b strings.Builder
	rows := 0
	for _, f := range r.Faults {
		rows++ // heading
		for _, c := range r.Cells {
			if c.Fault == f.ID {
				rows++
			}
		}
	}
	height := plotTop + rowH*float64(rows) + 50
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", svgWidth, height, svgWidth, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">dnsguard fault matrix on a real node (%s)</text>`+"\n", html.EscapeString(r.Commit))
	b.WriteString(`<text x="10" y="38" fill="#555">each dot = one lookup (<tspan fill="#1f77b4">glibc</tspan>, <tspan fill="#e6550d">musl</tspan>; × = failed), log scale; bar = p50, ▲ = p99; dashed = 1 s</text>` + "\n")
	bottom := plotTop + rowH*float64(rows)
	for i, l := range []string{"0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s"} {
		x := xFor(math.Pow(10, float64(i-1)))
		stroke := `stroke="#ddd"`
		if l == "1 s" {
			stroke = `stroke="#c00" stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" %s/>`+"\n", x, plotTop-4, x, bottom+4, stroke)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", x, bottom+18, l)
	}
	i := 0
	for _, f := range r.Faults {
		y := plotTop + rowH*float64(i) + rowH/2
		fmt.Fprintf(&b, `<line x1="10" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", y-rowH/2, svgWidth-10, y-rowH/2)
		fmt.Fprintf(&b, `<text x="10" y="%.1f" dominant-baseline="middle" font-weight="bold">(%s) %s</text>`+"\n", y, f.ID, html.EscapeString(f.Title))
		i++
		for _, c := range r.Cells {
			if c.Fault != f.ID {
				continue
			}
			y := plotTop + rowH*float64(i) + rowH/2
			i++
			color := "#e6550d"
			if strings.HasPrefix(c.Client, "glibc") {
				color = "#1f77b4"
			}
			fmt.Fprintf(&b, `<text x="20" y="%.1f" dominant-baseline="middle">%s — %s</text>`+"\n", y, html.EscapeString(r.label(c.Mode)), html.EscapeString(c.Client))
			for j, l := range c.Lookups {
				x, jy := xFor(l.MS), y+float64(j%3-1)*2
				if l.OK {
					fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s" fill-opacity="0.35"/>`+"\n", x, jy, color)
				} else {
					fmt.Fprintf(&b, `<path d="M%.1f %.1fl5 5m0 -5l-5 5" stroke="black" transform="translate(-2.5 -2.5)"/>`+"\n", x, jy)
				}
			}
			s := Summarize(c.Lookups)
			if s.N == 0 {
				continue
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="2"/>`+"\n", xFor(s.P50), y-6, xFor(s.P50), y+6)
			fmt.Fprintf(&b, `<path d="M%.1f %.1fl-4 6h8z" fill="black"/>`+"\n", xFor(s.P99), y+1)
			fill := "#999"
			if s.Over1s > 0 || s.Failures > 0 {
				fill = "#c00"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" fill="%s">%d &gt; 1 s, %d ✗</text>`+"\n", plotLeft+plotWidth+10, y, fill, s.Over1s, s.Failures)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
