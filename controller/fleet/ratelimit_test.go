package fleet

import (
	"fmt"
	"testing"
	"time"
)

// Failures spend an address's tokens; time refills them; other addresses
// are unaffected; the map of addresses never exceeds its bound.
func TestFailureLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newFailureLimiter(3, 10*time.Second, 100, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.Allowed("a"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		l.Failed("a")
	}
	ok, wait := l.Allowed("a")
	if ok || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("after the burst: allowed %v, wait %v", ok, wait)
	}
	if ok, _ := l.Allowed("b"); !ok {
		t.Fatal("another address was refused")
	}
	now = now.Add(10 * time.Second)
	if ok, _ := l.Allowed("a"); !ok {
		t.Fatal("not allowed again after the refill interval")
	}
	for i := range 10_000 {
		l.Failed(fmt.Sprint("flood-", i))
		if n := len(l.buckets); n > 100 {
			t.Fatalf("%d addresses tracked, bound is 100", n)
		}
	}
}
