package lab

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Plot geometry: one horizontal strip per row, latency on a log axis from
// 0.1 ms to 10 s, so sub-millisecond answers and 5 s stalls share a picture.
const (
	plotLeft   = 300.0
	plotWidth  = 620.0
	rowHeight  = 26.0
	plotTop    = 50.0
	minDecade  = -1.0 // 0.1 ms
	maxDecade  = 4.0  // 10 s
	svgWidth   = plotLeft + plotWidth + 80
	glibcColor = "#1f77b4"
	muslColor  = "#e6550d"
)

// xFor maps a latency in ms to the x coordinate (clamped to the axis).
func xFor(ms float64) float64 {
	d := minDecade
	if ms > 0 {
		d = math.Log10(ms)
	}
	d = math.Max(minDecade, math.Min(maxDecade, d))
	return plotLeft + (d-minDecade)/(maxDecade-minDecade)*plotWidth
}

// renderSVG draws every lookup of every row as a translucent dot (failures
// as a cross), with the row's p50 and p99 as ticks; rows of one
// configuration are grouped between separators.
func renderSVG(rows []Row, title string) string {
	var b strings.Builder
	height := plotTop + rowHeight*float64(len(rows)) + 60
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="10" y="38" fill="#555">each dot = one lookup (<tspan fill="%s">glibc</tspan>, <tspan fill="%s">musl</tspan>; × = failed), latency on a log scale; bar = p50, ▲ = p99; dashed = 1 s</text>`+"\n", glibcColor, muslColor)

	bottom := plotTop + rowHeight*float64(len(rows))
	labels := []string{"0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s"}
	for i, l := range labels {
		x := xFor(math.Pow(10, minDecade+float64(i)))
		dash := ""
		if l == "1 s" {
			dash = ` stroke-dasharray="4 3" stroke="#c00"`
		} else {
			dash = ` stroke="#ddd"`
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"%s/>`+"\n", x, plotTop-4, x, bottom+4, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", x, bottom+20, l)
	}

	prevMode := ""
	for i, r := range rows {
		y := plotTop + rowHeight*float64(i) + rowHeight/2
		if r.Mode != prevMode && i > 0 {
			fmt.Fprintf(&b, `<line x1="10" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", y-rowHeight/2, svgWidth-10, y-rowHeight/2)
		}
		prevMode = r.Mode
		color := muslColor
		if isGlibc(r.Client) {
			color = glibcColor
		}
		fmt.Fprintf(&b, `<text x="10" y="%.1f" dominant-baseline="middle">%s — %s</text>`+"\n", y, html.EscapeString(r.Label), html.EscapeString(r.Client))
		for j, l := range r.Lookups {
			x := xFor(l.MS)
			// Spread dots a little vertically so equal latencies stay visible.
			jy := y + float64(j%5-2)*2.5
			if l.OK {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s" fill-opacity="0.35"/>`+"\n", x, jy, color)
			} else {
				fmt.Fprintf(&b, `<path d="M%.1f %.1fl6 6m0 -6l-6 6" stroke="black" transform="translate(-3 -3)"/>`+"\n", x, jy)
			}
		}
		s := Summarize(r.Lookups)
		if s.N > 0 {
			x50, x99 := xFor(s.P50), xFor(s.P99)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-width="2"/>`+"\n", x50, y-9, x50, y+9)
			fmt.Fprintf(&b, `<path d="M%.1f %.1fl-5 8h10z" fill="black"/>`+"\n", x99, y+4)
			// The stalls pile up on one spot; say how many there are.
			fill := "#999"
			if s.Over1s > 0 {
				fill = "#c00"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" fill="%s">%d &gt; 1 s</text>`+"\n", plotLeft+plotWidth+20, y, fill, s.Over1s)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
