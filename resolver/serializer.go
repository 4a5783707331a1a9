package resolver

import (
	"context"
	"sync"
	"time"
)

// Over UDP, A and AAAA for one name are serialized: the first try of the
// second type waits until the first type's try has its answer or passed
// its per-try timeout, the adaptive one (rto.go; the key is held for the
// inline first try's read, whose end is that timeout). Two datagrams of one name leaving together are what loses the
// conntrack insert race after DNAT (one is dropped; glibc and musl then
// wait out their 5 s timeout); one after the other, they cannot race.

// serializer makes queries for one key wait for each other, first come
// first served: a name whose first query keeps retrying must not starve
// the other type (each try releases the key and the next waiter goes).
type serializer struct {
	mu sync.Mutex
	// m holds the keys owned, each with its waiters in arrival order; a
	// waiter's channel is closed when ownership passes to it. Held by
	// value: an uncontended key allocates nothing.
	m map[string][]chan struct{}
}

// acquire blocks until key is ours (or ctx ends, or deadline passes);
// the owner calls release(key) when done.
func (s *serializer) acquire(ctx context.Context, key string, deadline time.Time) error {
	s.mu.Lock()
	waiters, busy := s.m[key]
	if !busy {
		s.m[key] = nil
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.m[key] = append(waiters, ch)
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var err error
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = context.DeadlineExceeded
	}
	s.mu.Lock()
	waiters = s.m[key]
	for i, w := range waiters {
		if w == ch {
			s.m[key] = append(waiters[:i], waiters[i+1:]...)
			s.mu.Unlock()
			return err
		}
	}
	s.mu.Unlock()
	// Ownership was handed over just as the wait ended: pass it on.
	s.release(key)
	return err
}

func (s *serializer) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	waiters := s.m[key]
	if len(waiters) == 0 {
		delete(s.m, key)
		return
	}
	next := waiters[0]
	s.m[key] = waiters[1:]
	close(next)
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
