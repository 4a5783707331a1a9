package lab

import (
	"fmt"
	"slices"
	"strings"
)

// CheckAnswers asserts the content of a row's answers: every lookup that
// returned "ok" must have returned exactly the addresses want (in any
// order, each once). Latency and counters cannot see a resolver that
// answers quickly with the wrong thing — an AAAA turned into NODATA, an
// address rewritten, a stale record — and getaddrinfo still says "ok".
//
// Negative controls (cluster lab, issue 19, 100 lookups a row): a sidecar
// that forwarded the AAAA but answered it NODATA failed here in every
// sidecar row — glibc 0 of 100 lookups right, musl 62 and 52 (musl took the
// fallback's AAAA when it came first) — while its counters passed (200 sent
// upstream for 100 lookups) and no lookup was slow. A node cache that never
// forwarded the AAAA (NODATA of its own) failed here too (glibc 0 of 100,
// musl 15 and 7) besides its counters.
func CheckAnswers(scope string, ls []Lookup, want []string) Check {
	wantSorted := slices.Sorted(slices.Values(want))
	ok, wrong := 0, 0
	var first []string
	for _, l := range ls {
		if !l.OK {
			continue
		}
		got := slices.Sorted(slices.Values(l.Addrs))
		if slices.Equal(got, wantSorted) {
			ok++
			continue
		}
		if wrong == 0 {
			first = l.Addrs
		}
		wrong++
	}
	text := fmt.Sprintf("%s: %d of %d answered lookups returned exactly %s", scope, ok, ok+wrong, strings.Join(wantSorted, " "))
	if wrong > 0 {
		text += fmt.Sprintf("; %d returned something else, the first [%s]", wrong, strings.Join(first, " "))
	}
	return Check{OK: wrong == 0 && ok > 0, Text: text + " (want every one)"}
}
