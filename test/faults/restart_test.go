//go:build faults

package faults

import (
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dnsguard/dnsguard/test/internal/harness"
)

// Test 6: SIGTERM to the resolver under a steady 200 queries/s, then a
// new resolver on the same port once the old one has exited (what a
// container restart does). Queries sent during the drain period must all
// be answered; the gap until the new process listens is measured.
func TestResolverRestartUnderLoad(t *testing.T) {
	const (
		rate     = 200
		duration = 5 * time.Second
		drain    = 2 * time.Second
		// margin: a query sent this close to the end of the drain may
		// meet a closed socket; earlier ones must not.
		margin = 100 * time.Millisecond
	)
	up := newFakeUpstream(t)
	port := harness.MustFreePort(t)
	flags := append(budgetFlags, "--upstream="+up.addr.String(), "--drain="+drain.String())
	r1 := startResolver(t, port, flags...)

	var (
		mu  sync.Mutex
		res []outcome
		wg  sync.WaitGroup
	)
	start := time.Now()
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := 0; i < int(duration.Seconds()*rate); i++ {
			<-tick.C
			name := fmt.Sprintf("hot%d.restart.faults.test", i%20)
			if i%2 == 1 {
				name = fmt.Sprintf("u%d.restart.faults.test", i)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := query(r1.addr, name, time.Second)
				mu.Lock()
				res = append(res, o)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}()

	time.Sleep(time.Second)
	sigAt := time.Now()
	if err := r1.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// readyz must fail while draining, so a kubelet stops routing.
	time.Sleep(300 * time.Millisecond)
	if resp, err := httpClient.Get("http://" + r1.health + "/readyz"); err != nil {
		t.Errorf("readyz during drain: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("readyz during drain: %s, want 503", resp.Status)
		}
	}
	select {
	case <-r1.Done():
	case <-time.After(drain + budget + 3*time.Second):
		t.Fatalf("resolver still running %s after SIGTERM (drain %s)", time.Since(sigAt), drain)
	}
	exitAfter := r1.ExitedAt().Sub(sigAt)
	if err := r1.Err(); err != nil {
		t.Errorf("resolver exit after SIGTERM: %v, want status 0", err)
	}
	if exitAfter < drain {
		t.Errorf("resolver exited %s after SIGTERM, before its %s drain ended", exitAfter, drain)
	}
	r2 := startResolver(t, port, flags...)
	readyAt := time.Now()
	<-loadDone

	drainEnd := sigAt.Add(drain)
	type bucket struct {
		name string
		os   []outcome
	}
	buckets := []*bucket{{name: "before SIGTERM"}, {name: "drain"}, {name: "gap (drain end .. new ready)"}, {name: "after restart"}}
	for _, o := range res {
		switch {
		case o.sent.Before(sigAt):
			buckets[0].os = append(buckets[0].os, o)
		case o.sent.Before(drainEnd.Add(-margin)):
			buckets[1].os = append(buckets[1].os, o)
		case o.sent.Before(readyAt):
			buckets[2].os = append(buckets[2].os, o)
		default:
			buckets[3].os = append(buckets[3].os, o)
		}
	}
	t.Logf("restart under %d q/s for %s: SIGTERM at +%s, old process exited %s after SIGTERM, new one ready %s after that (gap)",
		rate, duration, sigAt.Sub(start).Round(time.Millisecond), exitAfter.Round(time.Millisecond), readyAt.Sub(r1.ExitedAt()).Round(time.Millisecond))
	for _, b := range buckets {
		t.Logf("  %-30s %s", b.name+":", summary(b.os))
	}
	if len(res) != int(duration.Seconds()*rate) {
		t.Errorf("%d outcomes for %d queries", len(res), int(duration.Seconds()*rate))
	}
	for i, b := range buckets {
		if i == 2 {
			continue // the gap is reported, not judged
		}
		if len(b.os) == 0 && i != 3 {
			t.Errorf("no queries %s: the load did not cover the phase", b.name)
		}
		for _, o := range b.os {
			checkAnswer(t, o)
			if o.kind() != "NOERROR" {
				t.Errorf("%s: query %s sent at +%s: %s (err %v)", b.name, o.name, o.sent.Sub(start).Round(time.Millisecond), o.kind(), o.err)
			}
		}
	}
	if len(buckets[3].os) == 0 {
		t.Errorf("no query after the restart: the new process took %s to get ready", readyAt.Sub(r1.ExitedAt()))
	}
	r2.checkAlive(t)
}
