package resolver

import (
	"hash/maphash"
	"sync"
	"time"
)

const cacheShards = 16

// Cache is a bounded answer cache. It is split into shards, each with its
// own lock, entry limit and byte limit; when a shard is full a random
// entry is evicted (preferring expired ones), the CoreDNS approach, which
// needs no bookkeeping on the hit path, unlike an LRU list.
type Cache struct {
	shards     [cacheShards]cacheShard
	seed       maphash.Seed
	maxEntries int // per shard
	maxBytes   int // per shard
	// staleFor is how long expired entries stay servable (serve-stale);
	// zero drops them on lookup.
	staleFor time.Duration
	// now is the clock; tests replace it.
	now func() time.Time
}

// cacheShard maps the 64-bit hash of a key to its entry: an 8-byte map
// key instead of a string header plus a separate copy of the key. The
// entry itself holds its key (its question plus item.kbits), so a hash
// collision is a miss and, on store, the older entry's eviction; never a
// wrong answer.
type cacheShard struct {
	mu    sync.RWMutex
	m     map[uint64]*item
	bytes int
}

// drop deletes the entry under h. The caller holds s.mu for writing.
func (s *cacheShard) drop(h uint64, it *item) {
	s.bytes -= it.size()
	delete(s.m, h)
}

// NewCache returns a cache holding at most maxEntries entries and about
// maxBytes bytes of answers.
func NewCache(maxEntries, maxBytes int, staleFor time.Duration) *Cache {
	c := &Cache{
		seed:       maphash.MakeSeed(),
		maxEntries: max(1, (maxEntries+cacheShards-1)/cacheShards),
		maxBytes:   max(4096, (maxBytes+cacheShards-1)/cacheShards),
		staleFor:   staleFor,
		now:        time.Now,
	}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*item)
	}
	return c
}

// shard returns the key's shard and its hash within it.
func (c *Cache) shard(key []byte) (*cacheShard, uint64) {
	h := maphash.Bytes(c.seed, key)
	return &c.shards[h%cacheShards], h
}

// get returns the entry for key, fresh or (when serve-stale keeps it)
// expired; nil when there is none. It does not allocate.
func (c *Cache) get(key []byte) *item {
	s, h := c.shard(key)
	s.mu.RLock()
	it := s.m[h]
	if it != nil && !it.wireKey(key) {
		it = nil
	}
	s.mu.RUnlock()
	return it
}

// set stores it under key, evicting as needed to stay within the bounds.
func (c *Cache) set(key []byte, it *item) {
	s, h := c.shard(key)
	now := c.now()
	if len(key) > 0 {
		it.kbits = key[len(key)-1]
	}
	s.mu.Lock()
	if old, ok := s.m[h]; ok {
		// The same key, or (vanishingly rare) another with the same hash.
		s.drop(h, old)
	}
	size := it.size()
	for len(s.m) > 0 && (len(s.m) >= c.maxEntries || s.bytes+size > c.maxBytes) {
		s.evictOne(now, c.staleFor)
	}
	s.m[h] = it
	s.bytes += size
	s.mu.Unlock()
}

// evictOne drops one entry: the first unusable one among a few random
// picks, else the first pick. Go's map iteration starts at a random
// position, which makes the pick random.
func (s *cacheShard) evictOne(now time.Time, staleFor time.Duration) {
	var victim uint64
	n := 0
	for k, it := range s.m {
		if n == 0 {
			victim = k
		}
		if !now.Before(it.expires().Add(staleFor)) {
			victim = k
			break
		}
		if n++; n >= 8 {
			break
		}
	}
	if it, ok := s.m[victim]; ok {
		s.drop(victim, it)
	}
}

// remove deletes key when it still maps to it.
func (c *Cache) remove(key []byte, it *item) {
	s, h := c.shard(key)
	s.mu.Lock()
	if cur, ok := s.m[h]; ok && cur == it {
		s.drop(h, it)
	}
	s.mu.Unlock()
}

// Len is the number of entries, fresh or stale.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Bytes is the memory held by entries, as item.size counts it.
func (c *Cache) Bytes() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += s.bytes
		s.mu.RUnlock()
	}
	return n
}

// lookup classifies the entry for key at now: fresh hit, stale (expired
// but within the serve-stale window) or nothing.
func (c *Cache) lookup(key []byte, now time.Time) (it *item, fresh bool) {
	it = c.get(key)
	if it == nil {
		return nil, false
	}
	if it.fresh(now) {
		return it, true
	}
	if c.staleFor > 0 && now.Before(it.expires().Add(c.staleFor)) {
		return it, false
	}
	c.remove(key, it)
	return nil, false
}
