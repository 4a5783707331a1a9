package webhook

import (
	"sync"
)

// byteBudget bounds the memory that request bodies can pin at once. Every
// byte of a body is charged (times bodyCostFactor, for the decoded copies
// made while handling it) before it is read, and given back when the
// request is done; a request that does not fit is refused with 429 rather
// than waited for, because waiting would hold its connection (and the
// bytes the kernel already buffered) for just as long.
//
// Large bodies may only take the budget down to a reserve kept for small
// ones, so a flood of big reviews is shed while ordinary pods (a few KiB)
// are still admitted.
type byteBudget struct {
	mu    sync.Mutex
	total int64 // the whole budget
	small int64 // a charge this size or less may use the reserve
	// reserve is the part of total that only small charges may use.
	reserve int64
	used    int64
	peak    int64
}

// bodyCostFactor is how many bytes of heap one byte of request body costs
// while a review is handled: the body itself, the copy of the pod the
// review decode keeps (runtime.RawExtension), the pod's strings decoded
// from it and the garbage left behind until the next collection. Measured
// with the hostile-concurrency benchmark (make bench) rather than derived.
const bodyCostFactor = 3

// smallCharge is the largest charge that may dip into the reserve: a pod
// of a few containers is about 6-20 KiB, so 64 KiB covers every ordinary
// review with room.
const smallCharge = 64 << 10 * bodyCostFactor

func newByteBudget(total int64) *byteBudget {
	b := &byteBudget{total: total, small: smallCharge, reserve: total / 4}
	if b.reserve < b.small {
		b.reserve = 0 // too small a budget to split; first come first served
	}
	return b
}

// acquire charges n bytes and reports whether they fit.
func (b *byteBudget) acquire(n int64) bool {
	if n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.total
	if n > b.small {
		limit -= b.reserve
	}
	if b.used+n > limit {
		return false
	}
	b.used += n
	if b.used > b.peak {
		b.peak = b.used
	}
	return true
}

// fits reports whether n bytes could be charged now, without charging.
func (b *byteBudget) fits(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.total
	if n > b.small {
		limit -= b.reserve
	}
	return b.used+n <= limit
}

// release gives back n bytes charged before.
func (b *byteBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.used < 0 { // a bug; never let it turn into an unlimited budget
		b.used = 0
	}
	b.mu.Unlock()
}

// inUse returns the bytes charged now.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
