package resolver

import (
	"testing"
	"time"
)

// TestRTOEstimator: samples give RFC 6298's srtt + 4·rttvar, with a
// margin above srtt of at least the floor and at most ceil in all, and the
// initial value before any sample. Negative control:
// with rttvar updated after srtt (RFC 6298 §2.3 takes the deviation from
// the old srtt) "two samples" gave 280 ms and "steady then slower" 175 ms,
// and both failed.
func TestRTOEstimator(t *testing.T) {
	ms := time.Millisecond
	const floor, ceil = 150 * time.Millisecond, time.Second
	for _, tt := range []struct {
		name    string
		samples []time.Duration
		floor   time.Duration
		ceil    time.Duration
		want    time.Duration
	}{
		{"before any sample", nil, floor, ceil, 400 * ms},
		{"before any sample, small ceiling", nil, floor, 300 * ms, 300 * ms},
		// --min-timeout = --timeout: fixed from the first query on (the
		// fault matrix's negative control). Negative control: without
		// the floor on the initial value this gave 400 ms.
		{"before any sample, fixed 10 s", nil, 10 * time.Second, 10 * time.Second, 10 * time.Second},
		{"fixed 10 s after samples", []time.Duration{ms}, 10 * time.Second, 10 * time.Second, 10 * time.Second},
		// First sample: srtt = R, rttvar = R/2, so RTO = 3R.
		{"one sample", []time.Duration{100 * ms}, floor, ceil, 300 * ms},
		{"fast upstream: srtt plus the floor", []time.Duration{ms, ms, ms}, floor, ceil, ms + floor},
		// The variance of a steady upstream decays to nothing; the floor
		// keeps its timeout 150 ms above its 300 ms. Negative control:
		// with min(max(srtt+4·rttvar, floor), ceil) this gave 302.5 ms.
		{"steady slow upstream keeps the margin", []time.Duration{300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms}, floor, ceil, 450 * ms},
		// 100, then 60: rttvar = 3/4·50 + 1/4·40 = 47.5, srtt = 7/8·100 +
		// 1/8·60 = 95; 95 + 190 = 285.
		{"two samples", []time.Duration{100 * ms, 60 * ms}, floor, ceil, 285 * ms},
		// 20, then 100: rttvar = 3/4·10 + 1/4·80 = 27.5, srtt = 30
		// (30 + 110 = 140, under the floor); one more 100: rttvar =
		// 3/4·27.5 + 1/4·70 = 38.125, srtt = 38.75; 38.75 + 152.5.
		{"steady then slower", []time.Duration{20 * ms, 100 * ms, 100 * ms}, floor, ceil, 191250 * time.Microsecond},
		{"slow upstream capped by the ceiling", []time.Duration{800 * ms}, floor, ceil, ceil},
		{"negative sample ignored", []time.Duration{100 * ms, -time.Second}, floor, ceil, 300 * ms},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var e rttEstimator
			for _, s := range tt.samples {
				e.sample(s)
			}
			if got := e.rto(tt.floor, tt.ceil); got != tt.want {
				t.Fatalf("rto %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBackoff: the first four tries wait the base timeout; from the fifth
// on each timed-out try doubles the next one's timeout, never past the
// ceiling. Negative control: the plain doubling (150, 300, 600 ms) fails
// the n=1..3 rows.
func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		base time.Duration
		n    int
		want time.Duration
	}{
		{150 * ms, 0, 150 * ms},
		{150 * ms, 1, 150 * ms},
		{150 * ms, 2, 150 * ms},
		{150 * ms, 3, 150 * ms},
		{150 * ms, 4, 300 * ms},
		{150 * ms, 5, 600 * ms},
		{150 * ms, 6, time.Second},
		{150 * ms, 40, time.Second}, // no overflow
		{time.Second, 1, time.Second},
	} {
		if got := backoff(tt.base, time.Second, tt.n); got != tt.want {
			t.Errorf("backoff(%v, 1s, %d) = %v, want %v", tt.base, tt.n, got, tt.want)
		}
	}
}
