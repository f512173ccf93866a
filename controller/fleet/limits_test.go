package fleet

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/flightsheet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestCheckLimits(t *testing.T) {
	long := strings.Repeat("x", MaxFieldBytes+1)
	gpus := func(n int) []*quarryv1.GPUStats {
		out := make([]*quarryv1.GPUStats, n)
		for i := range out {
			out[i] = &quarryv1.GPUStats{Index: uint32(i), BusId: "0000:01:00.0"}
		}
		return out
	}
	cases := []struct {
		name string
		msg  proto.Message
		want string // "" for accepted
	}{
		{"ordinary report", &quarryv1.Report{Seq: 1, Gpus: gpus(8), Events: []*quarryv1.Event{{Kind: "k", Message: strings.Repeat("m", 900)}}}, ""},
		{"long bus id", &quarryv1.Report{Gpus: []*quarryv1.GPUStats{{BusId: long}}}, "Report.gpus[0].bus_id"},
		{"long model", &quarryv1.Report{Gpus: []*quarryv1.GPUStats{{Name: long}}}, "name"},
		{"long miner version", &quarryv1.Report{Miners: []*quarryv1.MinerStats{{Version: long}}}, "version"},
		{"too many GPUs", &quarryv1.Report{Gpus: gpus(65)}, "65 entries"},
		{"too many miners", &quarryv1.Report{Miners: make([]*quarryv1.MinerStats, 33)}, "miners has 33"},
		{"too many events", &quarryv1.Report{Events: make([]*quarryv1.Event, 65)}, "events has 65"},
		{"long event message", &quarryv1.Report{Events: []*quarryv1.Event{{Message: strings.Repeat("m", MaxTextBytes+1)}}}, "message"},
		{"long event field", &quarryv1.Report{Events: []*quarryv1.Event{{Fields: map[string]string{"k": long}}}}, "fields[k]"},
		{"long hostname", &quarryv1.Hello{Hostname: long}, "Hello.hostname"},
		{"long tag key", &quarryv1.Hello{Inventory: &quarryv1.Inventory{Tags: map[string]string{long: "v"}}}, "tags key"},
		{"too many tags", &quarryv1.Hello{Inventory: &quarryv1.Inventory{Tags: manyTags(33)}}, "tags has 33"},
		{"large command output", &quarryv1.CommandResult{Output: make([]byte, MaxCommandOutput+1)}, "output"},
		{"command output at the limit", &quarryv1.CommandResult{Output: make([]byte, MaxCommandOutput)}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckLimits(c.msg)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an ErrTooLarge naming %q", err, c.want)
			}
		})
	}
}

func manyTags(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprint("k", i)] = "v"
	}
	return m
}

func TestTruncate(t *testing.T) {
	for _, n := range []int{0, 10, 255, 256, 3 << 20} {
		s := strings.Repeat("é", n) // two bytes a rune: cuts must land on a boundary
		got := Truncate(s, 256)
		if len(got) > 256 || !strings.HasPrefix(s+"…", strings.Split(got, "…")[0]) {
			t.Fatalf("Truncate(%d bytes) = %d bytes %q", len(s), len(got), got)
		}
		if len(s) > 256 && !strings.Contains(got, fmt.Sprintf("[%d bytes cut]", len(s))) {
			t.Fatalf("no marker: %q", got)
		}
		if len(s) <= 256 && got != s {
			t.Fatalf("short string changed")
		}
	}
}

// Audit entries are capped per field and kept within the count and age
// limits, and pages walk back through every kept entry exactly once.
func TestAuditBoundedAndPaged(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{AuditMaxEntries: 50, AuditMaxAge: time.Hour, Now: func() time.Time { return now }})
	defer db.Close()
	defer f.Close()
	if err := f.Audit(&quarryv1.AuditEntry{Who: "old", Action: "a"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour) // the first entry is now past the age limit
	huge := strings.Repeat("h", 3<<20)
	for i := range 120 {
		now = now.Add(time.Second)
		if err := f.Audit(&quarryv1.AuditEntry{Who: fmt.Sprint("w", i), Action: "enroll", Target: huge}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := f.AuditLog(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 50 || all[0].Who != "w70" || all[49].Who != "w119" {
		t.Fatalf("kept %d entries, %s..%s; want the newest 50", len(all), all[0].Who, all[len(all)-1].Who)
	}
	if n := len(all[0].Target); n > maxAuditField {
		t.Fatalf("target stored with %d bytes", n)
	}
	var paged []*quarryv1.AuditEntry
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := f.AuditPage(time.Time{}, 7, token)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 7 || pages > 10 {
			t.Fatalf("page of %d after %d pages", len(page), pages)
		}
		paged = append(page, paged...)
		if next == "" {
			break
		}
		token = next
	}
	if len(paged) != 50 {
		t.Fatalf("paged through %d entries, want 50", len(paged))
	}
	for i := range paged {
		if paged[i].Who != all[i].Who {
			t.Fatalf("entry %d: paged %s, want %s", i, paged[i].Who, all[i].Who)
		}
	}
	if _, _, err := f.AuditPage(time.Time{}, 7, "zz"); !errors.Is(err, ErrBadPageToken) {
		t.Fatalf("bad token: %v", err)
	}
	// A second open counts what is there and keeps the limit.
	f.Close()
	f2, err := Open(db, Options{AuditMaxEntries: 50, AuditMaxAge: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	for range 5 {
		_ = f2.Audit(&quarryv1.AuditEntry{Who: "after"})
	}
	if all, _ := f2.AuditLog(time.Time{}, 0); len(all) != 50 {
		t.Fatalf("after reopen: %d entries", len(all))
	}
}

// Pages cover every rig once, in order, and stay within the byte bound
// even when rigs are large.
func TestRigsPage(t *testing.T) {
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	defer db.Close()
	defer f.Close()
	const n = 1500
	big := make([]*quarryv1.GPUStats, 64)
	for i := range big {
		big[i] = &quarryv1.GPUStats{Name: strings.Repeat("g", MaxFieldBytes), BusId: strings.Repeat("b", MaxFieldBytes), Uuid: strings.Repeat("u", MaxFieldBytes)}
	}
	f.mu.Lock()
	for i := range n {
		id := fmt.Sprintf("rig-%04d", i)
		r := &quarryv1.Rig{Id: id, Name: fmt.Sprintf("name-%04d", n-i)}
		if i%10 == 0 {
			r.Gpus = big // about 50 KB each
		}
		f.rigs[id] = r
	}
	f.mu.Unlock()
	seen := map[string]bool{}
	last := ""
	token := ""
	pages := 0
	for {
		page, next, err := f.RigsPage(0, token)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		size := 0
		for _, r := range page {
			if seen[r.Id] || r.Name <= last {
				t.Fatalf("rig %s (%s) out of order or repeated after %s", r.Id, r.Name, last)
			}
			seen[r.Id], last = true, r.Name
			size += proto.Size(r)
		}
		if len(page) > DefaultRigPage || size > maxRigPageBytes {
			t.Fatalf("page of %d rigs, %d bytes", len(page), size)
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(seen) != n || pages < 4 {
		t.Fatalf("saw %d rigs in %d pages", len(seen), pages)
	}
	if _, _, err := f.RigsPage(0, "!!"); !errors.Is(err, ErrBadPageToken) {
		t.Fatalf("bad token: %v", err)
	}
}

// What a rig says about itself (Hello tags) never moves it into a
// selection; operator labels do.
func TestSelectorsUseLabelsNotReportedTags(t *testing.T) {
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	defer db.Close()
	defer f.Close()
	if err := f.RegisterRig("r1", "one", "h"); err != nil {
		t.Fatal(err)
	}
	if err := f.SetHello("r1", &quarryv1.Hello{Hostname: "h", Inventory: &quarryv1.Inventory{Tags: map[string]string{"site": "cheap"}}}); err != nil {
		t.Fatal(err)
	}
	sel, err := flightsheet.ParseSelector("tag=site=cheap")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := f.Rig("r1")
	if r.Tags["site"] != "cheap" || len(r.Labels) != 0 || sel.Matches(SelectorRig(r)) {
		t.Fatalf("reported tags %v labels %v; selector matched: %v", r.Tags, r.Labels, sel.Matches(SelectorRig(r)))
	}
	if r, err = f.SetLabels("r1", map[string]string{"site": "cheap"}, nil); err != nil || !sel.Matches(SelectorRig(r)) {
		t.Fatalf("after label: %v, match %v", err, sel.Matches(SelectorRig(r)))
	}
	for _, bad := range []map[string]string{{"": "v"}, {"a b": "v"}, {"k": strings.Repeat("v", MaxFieldBytes+1)}, {"k": "a\x1b[31m"}} {
		if _, err := f.SetLabels("r1", bad, nil); !errors.Is(err, ErrBadLabel) {
			t.Fatalf("label %q accepted: %v", bad, err)
		}
	}
	if _, err := f.SetLabels("r1", manyTags(MaxLabels+1), nil); !errors.Is(err, ErrBadLabel) {
		t.Fatalf("too many labels: %v", err)
	}
	if r, err = f.SetLabels("r1", nil, []string{"site"}); err != nil || sel.Matches(SelectorRig(r)) || len(r.Labels) != 0 {
		t.Fatalf("after remove: %v %v", err, r.Labels)
	}
}

type timeObserver struct{ got chan int64 }

func (o timeObserver) ObserveReport(_ string, r *quarryv1.Report) { o.got <- r.TimeUnixNano }

// A report dated in the future beyond the allowed skew counts as received
// now; one within the skew keeps its time.
func TestFutureReportTimeClamped(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{MaxClockSkew: 5 * time.Minute, Now: func() time.Time { return now }})
	defer db.Close()
	defer f.Close()
	obs := timeObserver{got: make(chan int64, 4)}
	f.AddObserver(obs)
	if err := f.RegisterRig("r1", "one", "h"); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ sent, want time.Time }{
		{now.Add(365 * 24 * time.Hour), now},
		{now.Add(4 * time.Minute), now.Add(4 * time.Minute)},
		{time.Time{}, now},
		{now.Add(-time.Hour), now.Add(-time.Hour)}, // buffered while the controller was away
	}
	for i, c := range cases {
		rep := &quarryv1.Report{Seq: uint64(i + 1)}
		if !c.sent.IsZero() {
			rep.TimeUnixNano = c.sent.UnixNano()
		}
		if err := f.Ingest(t.Context(), "r1", rep, nil); err != nil {
			t.Fatal(err)
		}
		if got := <-obs.got; got != c.want.UnixNano() {
			t.Fatalf("report %d sent at %v observed at %v, want %v", i+1, c.sent, time.Unix(0, got), c.want)
		}
	}
}

// Rigs enrolling with the same hostname get distinct names.
func TestEnrolledNamesAreUnique(t *testing.T) {
	f, db := openFleet(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	defer db.Close()
	defer f.Close()
	caHash := "sha256:" + strings.Repeat("ab", 32)
	tok, _, err := f.CreateToken(caHash, time.Hour, 4, "", "t")
	if err != nil {
		t.Fatal(err)
	}
	named, _, err := f.CreateToken(caHash, time.Hour, 1, "h", "t")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tk := range []string{tok, tok, named, tok} {
		_, name, err := f.Redeem(tk, caHash, "h")
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if fmt.Sprint(names) != "[h h-2 h-3 h-4]" {
		t.Fatalf("names %v", names)
	}
	for _, n := range names {
		if _, err := f.Resolve(n); err != nil {
			t.Fatalf("resolve %s: %v", n, err)
		}
	}
}

// A huge audit field is redacted and cut without redacting all of it, and
// its marker still says how large it was.
func TestRedactedFieldBounded(t *testing.T) {
	huge := "password=hunter2 " + strings.Repeat("x", 3<<20)
	got := redactedField(huge, maxAuditDetail)
	if len(got) > maxAuditDetail || strings.Contains(got, "hunter2") || !strings.HasSuffix(got, fmt.Sprintf("…[%d bytes cut]", len(huge))) {
		t.Fatalf("redactedField = %q (%d bytes)", got[:min(len(got), 80)], len(got))
	}
	if got := redactedField("password=hunter2", maxAuditField); strings.Contains(got, "hunter2") || strings.Contains(got, "cut") {
		t.Fatalf("short field: %q", got)
	}
}

// The error names the whole path to the field, built as it unwinds.
func TestCheckLimitsNamesThePath(t *testing.T) {
	r := &quarryv1.Report{Gpus: []*quarryv1.GPUStats{{}, {}, {BusId: strings.Repeat("b", MaxFieldBytes+1)}}}
	want := "Report.gpus[2].bus_id is 257 bytes, the limit is 256: over the size limit"
	if err := CheckLimits(r); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	h := &quarryv1.Hello{Inventory: &quarryv1.Inventory{Tags: map[string]string{"k": strings.Repeat("v", MaxFieldBytes+1)}}}
	want = "Hello.inventory.tags[k] is 257 bytes, the limit is 256: over the size limit"
	if err := CheckLimits(h); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// BenchmarkCheckLimits checks a six-GPU report such as a rig sends every
// few seconds; a report that passes should cost no allocations for paths.
func BenchmarkCheckLimits(b *testing.B) {
	f := func(v float64) *float64 { return &v }
	r := &quarryv1.Report{Seq: 1, Host: &quarryv1.HostStats{CpuPercent: 3, Load1: 0.3}}
	ms := &quarryv1.MinerStats{Miner: "lolminer", Version: "1.82", Algorithm: "etchash", Coin: "etc", Pool: "stratum+tcp://etc.example:1010", State: "running"}
	for i := range 6 {
		r.Gpus = append(r.Gpus, &quarryv1.GPUStats{Index: uint32(i), Vendor: "nvidia", Name: "NVIDIA GeForce RTX 3070", BusId: "0000:01:00.0",
			Uuid: "GPU-0000", TemperatureC: f(60), PowerW: f(120), FanPercent: []float64{55}})
		ms.Gpus = append(ms.Gpus, &quarryv1.MinerGPU{BusId: "0000:01:00.0", Hashrate: 61e6})
	}
	r.Miners = []*quarryv1.MinerStats{ms}
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckLimits(r); err != nil {
			b.Fatal(err)
		}
	}
}
