package billing

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

var t10 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

type sample struct {
	at time.Duration // after t10
	w  float64
}

func every(from, to, step time.Duration, w float64) []sample {
	var out []sample
	for d := from; d <= to; d += step {
		out = append(out, sample{d, w})
	}
	return out
}

func hourMilliWh(t *testing.T, s *Service, rig string, hour time.Time) map[string]int64 {
	t.Helper()
	u, err := s.Usage(UsageQuery{Rig: rig, From: hour, To: hour.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, h := range u.Hours {
		out[h.Customer] += h.MilliWh
	}
	return out
}

func TestMeterIntegrals(t *testing.T) {
	tests := []struct {
		name      string
		samples   []sample
		want      map[time.Duration]int64 // hour offset → mWh
		gaps      int
		backwards int64
	}{
		{name: "constant 1 kW for an hour", samples: every(0, time.Hour, 10*time.Second, 1000),
			want: map[time.Duration]int64{0: 1_000_000}},
		{name: "ramp split at the hour", samples: []sample{{59*time.Minute + 30*time.Second, 0}, {60*time.Minute + 30*time.Second, 1200}},
			// 0→600 W over 30 s = 2.5 Wh; 600→1200 W over 30 s = 7.5 Wh.
			want: map[time.Duration]int64{0: 2500, time.Hour: 7500}},
		{name: "gap is never filled", samples: []sample{{0, 500}, {5 * time.Minute, 500}, {5*time.Minute + 10*time.Second, 500}},
			// only the last 10 s count: 500 W × 10 s = 1.3889 Wh.
			want: map[time.Duration]int64{0: 1388}, gaps: 1},
		{name: "exactly max gap is integrated", samples: []sample{{0, 360}, {2 * time.Minute, 360}},
			want: map[time.Duration]int64{0: 12_000}},
		{name: "clock going backwards is ignored", samples: []sample{{0, 1000}, {10 * time.Second, 1000}, {5 * time.Second, 9000}, {10 * time.Second, 9000}, {20 * time.Second, 1000}},
			want: map[time.Duration]int64{0: 5555}, backwards: 2},
		{name: "sample exactly on the boundary", samples: []sample{{59 * time.Minute, 3600}, {60 * time.Minute, 3600}, {61 * time.Minute, 3600}},
			want: map[time.Duration]int64{0: 60_000, time.Hour: 60_000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{Now: testsupport.NewClock(t10).Now})
			m := s.Meter()
			for _, sm := range tc.samples {
				if err := m.Observe("rig1", t10.Add(sm.at), sm.w); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Flush(context.Background(), t10.Add(3*time.Hour)); err != nil {
				t.Fatal(err)
			}
			for off, want := range tc.want {
				if got := hourMilliWh(t, s, "rig1", t10.Add(off))[""]; got != want {
					t.Errorf("hour +%v: got %d mWh, want %d", off, got, want)
				}
			}
			u, err := s.Usage(UsageQuery{Rig: "rig1", From: t10, To: t10.Add(3 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if len(u.Gaps) != tc.gaps {
				t.Errorf("gaps = %v, want %d", u.Gaps, tc.gaps)
			}
			if got := m.Stats().Backwards; got != tc.backwards {
				t.Errorf("backwards = %d, want %d", got, tc.backwards)
			}
		})
	}
}

func TestMeterRejectsBadSamples(t *testing.T) {
	s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{Now: testsupport.NewClock(t10).Now})
	m := s.Meter()
	if err := m.Observe("rig1", t10, 1000); err != nil {
		t.Fatal(err)
	}
	for _, w := range []float64{math.NaN(), -1, math.Inf(1), 1e9} {
		if err := m.Observe("rig1", t10.Add(time.Second), w); !errors.Is(err, ErrBadSample) {
			t.Errorf("Observe(%v) = %v, want ErrBadSample", w, err)
		}
	}
	for _, id := range []string{"", "a:b", "with space"} {
		if err := m.Observe(id, t10.Add(time.Second), 10); !errors.Is(err, ErrInvalid) {
			t.Errorf("Observe(rig %q) = %v, want ErrInvalid", id, err)
		}
	}
	// The bad samples lost nothing: the next good one integrates from t10.
	if err := m.Observe("rig1", t10.Add(36*time.Second), 1000); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(context.Background(), t10.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := hourMilliWh(t, s, "rig1", t10)[""]; got != 10_000 {
		t.Errorf("got %d mWh, want 10000", got)
	}
}

func TestMeterRigMovedMidHour(t *testing.T) {
	clk := testsupport.NewClock(t10)
	s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{Now: clk.Now})
	ctx := context.Background()
	mustCustomer(t, s, "alice")
	mustCustomer(t, s, "bob")
	if err := s.AssignRigs(ctx, "alice", "rig1"); err != nil {
		t.Fatal(err)
	}
	m := s.Meter()
	for d := time.Duration(0); d <= time.Hour; d += 10 * time.Second {
		if d == 15*time.Minute+10*time.Second {
			clk.Set(t10.Add(15*time.Minute + 5*time.Second))
			if err := s.AssignRigs(ctx, "bob", "rig1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Observe("rig1", t10.Add(d), 1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Flush(ctx, t10.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// 905 s and 2695 s at 1 kW.
	got := hourMilliWh(t, s, "rig1", t10)
	if got["alice"] != 251_388 || got["bob"] != 748_611 {
		t.Errorf("split = %v, want alice 251388 bob 748611", got)
	}
	recs, err := s.Outbox()
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]int64{}
	for _, r := range recs {
		if r.Kind == KindMeterEvent {
			sent[r.Identifier] = r.ValueWh
		}
	}
	want := map[string]int64{"energy:rig1:2026-11-29T10:alice": 251, "energy:rig1:2026-11-29T10:bob": 748}
	if len(sent) != len(want) || sent["energy:rig1:2026-11-29T10:alice"] != 251 || sent["energy:rig1:2026-11-29T10:bob"] != 748 {
		t.Errorf("meter events = %v, want %v", sent, want)
	}
	a, _ := s.GetCustomer("alice")
	b, _ := s.GetCustomer("bob")
	if len(a.Rigs) != 0 || len(b.Rigs) != 1 {
		t.Errorf("rigs: alice %v bob %v", a.Rigs, b.Rigs)
	}
}

func TestMeterSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	ctx := context.Background()
	db := openDB(t, path)
	s := newTestService(t, db, Config{Now: testsupport.NewClock(t10.Add(-time.Hour)).Now})
	mustCustomer(t, s, "alice")
	if err := s.AssignRigs(ctx, "alice", "rig1"); err != nil {
		t.Fatal(err)
	}
	for d := time.Duration(0); d <= 30*time.Minute; d += 10 * time.Second {
		if err := s.Meter().Observe("rig1", t10.Add(d), 2000); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Meter().Flush(ctx, t10.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Samples after the flush are lost by the "crash" below.
	_ = s.Meter().Observe("rig1", t10.Add(30*time.Minute+10*time.Second), 2000)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = newTestService(t, openDB(t, path), Config{Now: testsupport.NewClock(t10.Add(31 * time.Minute)).Now})
	for d := 30*time.Minute + 20*time.Second; d <= time.Hour; d += 10 * time.Second {
		if err := s.Meter().Observe("rig1", t10.Add(d), 2000); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Meter().Flush(ctx, t10.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := hourMilliWh(t, s, "rig1", t10)["alice"]; got != 2_000_000 {
		t.Errorf("hour after restart = %d mWh, want 2000000", got)
	}
}

func TestMeterSilentRigHourClosesAfterItEnds(t *testing.T) {
	clk := testsupport.NewClock(t10)
	s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{Now: clk.Now})
	ctx := context.Background()
	mustCustomer(t, s, "alice")
	if err := s.AssignRigs(ctx, "alice", "rig1"); err != nil {
		t.Fatal(err)
	}
	m := s.Meter()
	for d := time.Duration(0); d <= 20*time.Minute; d += 10 * time.Second {
		clk.Set(t10.Add(d))
		if err := m.Observe("rig1", t10.Add(d), 3600); err != nil {
			t.Fatal(err)
		}
	}
	// Silent for the rest of the hour: the hour stays open, since the rig
	// may still come back within it, until MaxGap+LateMargin after its end.
	for _, at := range []time.Duration{24 * time.Minute, time.Hour, time.Hour + 2*time.Minute} {
		if err := m.Flush(ctx, t10.Add(at)); err != nil {
			t.Fatal(err)
		}
		if recs, _ := s.Outbox(); countKind(recs, KindMeterEvent) != 0 {
			t.Fatalf("hour closed at +%v while the rig could still report for it", at)
		}
	}
	if err := m.Flush(ctx, t10.Add(time.Hour+3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	recs, _ := s.Outbox()
	if countKind(recs, KindMeterEvent) != 1 || recs[len(recs)-1].ValueWh != 1200 {
		t.Fatalf("silent rig's hour not closed with 1200 Wh: %+v", recs)
	}
}

func countKind(recs []Record, k Kind) int {
	n := 0
	for _, r := range recs {
		if r.Kind == k {
			n++
		}
	}
	return n
}

// A month of 10 s samples: hourly Wh sent to Stripe must add up to the exact
// integral, with no drift from rounding each hour.
func TestMeterNoDriftOverAMonth(t *testing.T) {
	if testing.Short() {
		t.Skip("month-long integration")
	}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	s := newTestService(t, openDB(t, filepath.Join(t.TempDir(), "b.db")), Config{Now: testsupport.NewClock(start.Add(-time.Hour)).Now})
	ctx := context.Background()
	mustCustomer(t, s, "alice")
	if err := s.AssignRigs(ctx, "alice", "rig1"); err != nil {
		t.Fatal(err)
	}
	m := s.Meter()
	start = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(30 * 24 * time.Hour)
	for at := start; !at.After(end); at = at.Add(10 * time.Second) {
		if err := m.Observe("rig1", at, 1234.567); err != nil {
			t.Fatal(err)
		}
		if at.Sub(start)%(24*time.Hour) == 0 {
			if err := m.Flush(ctx, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.Flush(ctx, end); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage(UsageQuery{Customer: "alice", From: start, To: end})
	if err != nil {
		t.Fatal(err)
	}
	// 1234.567 W × 720 h = 888 888.24 Wh.
	if u.TotalMilliWh != 888_888_240 {
		t.Errorf("total = %d mWh, want 888888240", u.TotalMilliWh)
	}
	recs, _ := s.Outbox()
	var wh int64
	for _, r := range recs {
		wh += r.ValueWh
	}
	if countKind(recs, KindMeterEvent) != 720 || wh != 888_888 {
		t.Errorf("%d meter events summing %d Wh, want 720 and 888888", countKind(recs, KindMeterEvent), wh)
	}
}

func BenchmarkObserve(b *testing.B) {
	s := newTestService(b, openDB(b, filepath.Join(b.TempDir(), "b.db")), Config{})
	m := s.Meter()
	rigs := []string{"rig0", "rig1", "rig2", "rig3", "rig4", "rig5", "rig6", "rig7"}
	at := t10
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(rigs) == 0 {
			at = at.Add(10 * time.Second)
		}
		if err := m.Observe(rigs[i%len(rigs)], at, 1500+float64(i%100)); err != nil {
			b.Fatal(err)
		}
	}
}
