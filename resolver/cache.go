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

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]*item
	bytes int
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
		c.shards[i].m = make(map[string]*item)
	}
	return c
}

func (c *Cache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the entry for key, fresh or (when serve-stale keeps it)
// expired; nil when there is none. It does not allocate.
func (c *Cache) get(key []byte) *item {
	s := c.shard(key)
	s.mu.RLock()
	it := s.m[string(key)]
	s.mu.RUnlock()
	return it
}

// set stores it under key, evicting as needed to stay within the bounds.
func (c *Cache) set(key []byte, it *item) {
	s := c.shard(key)
	now := c.now()
	s.mu.Lock()
	if old, ok := s.m[string(key)]; ok {
		s.bytes -= old.size()
		delete(s.m, string(key))
	}
	for len(s.m) >= c.maxEntries || (len(s.m) > 0 && s.bytes+it.size() > c.maxBytes) {
		s.evictOne(now, c.staleFor)
	}
	s.m[string(key)] = it
	s.bytes += it.size()
	s.mu.Unlock()
}

// evictOne drops one entry: the first unusable one among a few random
// picks, else the first pick. Go's map iteration starts at a random
// position, which makes the pick random.
func (s *cacheShard) evictOne(now time.Time, staleFor time.Duration) {
	var victim string
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
		s.bytes -= it.size()
		delete(s.m, victim)
	}
}

// remove deletes key when it still maps to it.
func (c *Cache) remove(key []byte, it *item) {
	s := c.shard(key)
	s.mu.Lock()
	if cur, ok := s.m[string(key)]; ok && cur == it {
		s.bytes -= it.size()
		delete(s.m, string(key))
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

// Bytes is the approximate memory held by entries.
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
