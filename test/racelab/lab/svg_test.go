package lab

import (
	"strings"
	"testing"
)

// TestPlotted: a strip draws at most PlotDots of its lookups under 1 s,
// the fastest and the slowest of them included, and every failure and
// every lookup over 1 s.
func TestPlotted(t *testing.T) {
	var ls []Lookup
	for i := range 3000 {
		ls = append(ls, Lookup{MS: float64(3000-i) * 0.3, OK: true}) // 900 … 0.3 ms
		if i%500 == 0 {
			ls = append(ls, Lookup{MS: 1500, OK: true})
		}
	}
	ls = append(ls, Lookup{MS: 3})
	slow, fails, fast := 0, 0, 0
	lo, hi := 1e9, 0.0
	for _, l := range plotted(ls) {
		switch {
		case !l.OK:
			fails++
		case l.MS > 1000:
			slow++
		default:
			fast++
			lo, hi = min(lo, l.MS), max(hi, l.MS)
		}
	}
	if fails != 1 || slow != 6 || fast != PlotDots || lo != 0.3 || hi != 900 {
		t.Errorf("plotted %d failed, %d over 1 s, %d under (%.1f … %.1f ms); want 1, 6, %d (0.3 … 900.0 ms)", fails, slow, fast, lo, hi, PlotDots)
	}
	if n := len(plotted(ls[:10])); n != 10 {
		t.Errorf("a short strip drew %d of 10 lookups", n)
	}
	svg := PlotSVG("t", []Strip{{Heading: "h"}, {Label: "l", Lookups: ls}})
	if c := strings.Count(svg, "<circle"); c != PlotDots+6 {
		t.Errorf("%d dots in the SVG, want %d", c, PlotDots+6)
	}
}
