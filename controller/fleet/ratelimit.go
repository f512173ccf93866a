package fleet

import (
	"net"
	"sync"
	"time"
)

// failureLimiter rate-limits failed attempts per source address with a
// token bucket each. The map is bounded: when it is full, addresses whose
// buckets have refilled are forgotten first, and if none has, an arbitrary
// one is, so a flood of source addresses costs bounded memory.
type failureLimiter struct {
	burst   float64
	every   time.Duration // one token back per interval
	maxKeys int
	now     func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// Defaults for failed enrolments: ten failures at once, then one a minute.
const (
	enrollFailBurst = 10
	enrollFailEvery = 6 * time.Second
	enrollFailKeys  = 10_000
)

func newFailureLimiter(burst int, every time.Duration, maxKeys int, now func() time.Time) *failureLimiter {
	if now == nil {
		now = time.Now
	}
	return &failureLimiter{burst: float64(burst), every: every, maxKeys: maxKeys, now: now, buckets: map[string]*bucket{}}
}

// refill brings b up to date; the caller holds mu.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.every))
	b.at = now
}

// Allowed reports whether addr may try again now, and if not, how long
// until it may.
func (l *failureLimiter) Allowed(addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[addr]
	if !ok {
		return true, 0
	}
	l.refill(b, l.now())
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.every))
}

// Failed spends one token of addr's bucket.
func (l *failureLimiter) Failed(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[addr]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[addr] = b
	}
	l.refill(b, now)
	b.tokens = max(b.tokens-1, 0)
}

// evict forgets full buckets (they would allow the next attempt anyway),
// or one arbitrary bucket when none is full. The caller holds mu.
func (l *failureLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < l.maxKeys {
		return
	}
	for k := range l.buckets {
		delete(l.buckets, k)
		return
	}
}

// sourceHost is the address part of a peer address, so every port of one
// host shares a bucket.
func sourceHost(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(addr.String()); err == nil {
		return h
	}
	return addr.String()
}
