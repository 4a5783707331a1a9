package resolver

import (
	"errors"
	"time"
)

// Upstream health: consecutive failures mark an upstream down; traffic
// then skips it and a query arriving after its probe interval starts a
// background ". NS" probe that brings it back on any answer.

// Healthy reports how many upstreams are currently considered healthy.
func (f *Forwarder) Healthy() int {
	n := 0
	for _, u := range f.ups {
		if u.healthy() {
			n++
		}
	}
	return n
}

// order lists upstreams to try: healthy ones in configured order; when
// none is healthy, all of them (a last resort beats certain failure).
// An unhealthy upstream whose probe is due gets a background probe.
func (f *Forwarder) order() []*upstream {
	now := time.Now().UnixNano()
	out := make([]*upstream, 0, len(f.ups))
	for _, u := range f.ups {
		d := u.downUntil.Load()
		if d == 0 {
			out = append(out, u)
			continue
		}
		if now >= d && u.probing.CompareAndSwap(false, true) {
			go f.probe(u)
		}
	}
	if len(out) == 0 {
		out = append(out, f.ups...)
	}
	return out
}

// probe sends ". IN NS" to an unhealthy upstream; an answer of any kind
// brings it back.
func (f *Forwarder) probe(u *upstream) {
	defer u.probing.Store(false)
	msg := buildQuery(nil, []byte{0}, typeNS, classIN, false, false, true)
	if err := f.probeOnce(u, msg); err == nil || errors.Is(err, errTruncated) {
		f.markOK(u)
		f.log.Info("upstream healthy again", "upstream", u.name)
		return
	}
	u.downUntil.Store(time.Now().Add(f.probeEvery).UnixNano())
}

func (f *Forwarder) probeOnce(u *upstream, msg []byte) error {
	s, err := u.dialFresh()
	if err != nil {
		return err
	}
	defer s.c.Close()
	setID(msg)
	if _, err := s.c.Write(msg); err != nil {
		return err
	}
	_, err = f.readUDP(u, s, msg, time.Now().Add(f.maxTimeout))
	return err
}

func (f *Forwarder) markOK(u *upstream) {
	u.fails.Store(0)
	u.downUntil.Store(0)
}

func (f *Forwarder) markFail(u *upstream, err error) {
	if u.fails.Add(1) >= f.failLimit && u.downUntil.Load() == 0 {
		u.downUntil.Store(time.Now().Add(f.probeEvery).UnixNano())
		f.log.Warn("upstream marked unhealthy", "upstream", u.name, "err", err)
	}
}
