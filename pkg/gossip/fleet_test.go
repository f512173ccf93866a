package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func TestSelector(t *testing.T) {
	tags := Tags{Role: RoleAgent, RigID: "rig-03", GPUModel: "RTX 3080", GPUCount: 6, GRPC: "ready"}.Map()
	tests := []struct {
		sel  string
		want bool
	}{
		{"", true},
		{"*", true},
		{"role=agent", true},
		{"role=controller", false},
		{"name=rig-0[1-4]", true},
		{"name=rig-1*", false},
		{"gpu_model=RTX 30*, grpc=ready", true},
		{"gpu_model=RTX 30*,grpc!=ready", false},
		{"site=", true}, // missing tag matches empty
		{"site!=", false},
		{"gpus=6", true},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			s, err := ParseSelector(tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Match("rig-03", tags); got != tt.want {
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"role", "=agent", "name=[", "a=b,,c=d"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("ParseSelector(%q) accepted", bad)
		}
	}
}

func TestEnvelopeChecks(t *testing.T) {
	keys := newTestKeys(t)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	e, err := newEnvelope(now, "pause", "role=agent", []byte(`{"reason":"price"}`))
	if err != nil {
		t.Fatal(err)
	}
	good := e.marshal(purposeEvent, keys.priv)
	trusted := []ed25519.PublicKey{keys.pub}

	got, err := unmarshalEnvelope(good, purposeEvent, trusted)
	if err != nil {
		t.Fatalf("good envelope: %v", err)
	}
	if got.ID != e.ID || got.Kind != "pause" || got.Selector != "role=agent" || !bytes.Equal(got.Body, e.Body) || !got.IssuedAt.Equal(time.Unix(0, now.UnixNano())) {
		t.Fatalf("round trip = %+v, want %+v", got, e)
	}

	tampered := bytes.Clone(good)
	tampered[len(tampered)-70] ^= 1 // inside the body
	tests := []struct {
		name    string
		data    []byte
		purpose purpose
		want    error
	}{
		{"unsigned", e.marshal(purposeEvent, nil), purposeEvent, ErrUnsigned},
		{"other key", e.marshal(purposeEvent, otherPriv), purposeEvent, ErrBadSignature},
		{"tampered", tampered, purposeEvent, ErrBadSignature},
		{"event used as query", good, purposeQuery, ErrMalformed},
		{"truncated", good[:20], purposeEvent, ErrMalformed},
		{"trailing junk", append(bytes.Clone(good), 1, 2), purposeEvent, ErrMalformed},
		{"empty", nil, purposeEvent, ErrMalformed},
		{"foreign", []byte("deploy v2"), purposeEvent, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := unmarshalEnvelope(tt.data, tt.purpose, trusted); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := newEnvelope(now, "", "", nil); err == nil {
		t.Error("empty kind accepted")
	}
	if _, err := newEnvelope(now, "pause", "name=[", nil); err == nil {
		t.Error("bad selector accepted")
	}
}

func FuzzUnmarshalEnvelope(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	e, _ := newEnvelope(time.Unix(1700000000, 0), "pause", "role=agent", []byte("x"))
	f.Add(e.marshal(purposeEvent, priv))
	f.Add(e.marshal(purposeQuery, nil))
	f.Add([]byte("QG1\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := unmarshalEnvelope(data, purposeEvent, []ed25519.PublicKey{pub})
		if err == nil && got == nil {
			t.Fatal("nil envelope without error")
		}
	})
}

func TestReplayCacheBounded(t *testing.T) {
	now := time.Now()
	c := newReplayCache(3)
	id := func(i byte) [16]byte { return [16]byte{i} }
	for i := byte(1); i <= 3; i++ {
		if !c.add(id(i), now.Add(time.Minute), now) {
			t.Fatalf("fresh id %d refused", i)
		}
	}
	if c.add(id(2), now.Add(time.Minute), now) {
		t.Fatal("replayed id accepted")
	}
	c.add(id(4), now.Add(time.Minute), now) // evicts the oldest
	if c.len() != 3 {
		t.Fatalf("cache holds %d, want 3", c.len())
	}
	// Expired entries go before the cache is full.
	later := now.Add(2 * time.Minute)
	c.add(id(5), later.Add(time.Minute), later)
	if c.len() != 1 {
		t.Fatalf("after expiry cache holds %d, want 1", c.len())
	}
}

// fleet is a controller plus agents, all joined.
type fleet struct {
	keys       testKeys
	controller *testNode
	agents     []*testNode
}

func startFleet(t *testing.T, agents int) *fleet {
	t.Helper()
	f := &fleet{keys: newTestKeys(t)}
	f.controller = startNode(t, "ctl", f.keys, func(c *Config) {
		c.SigningKey = f.keys.priv
		c.Tags = Tags{Role: RoleController, Version: "0.1.0"}
	})
	all := []*testNode{f.controller}
	for i := range agents {
		a := startNode(t, nodeName("rig", i), f.keys, nil)
		f.agents = append(f.agents, a)
		all = append(all, a)
	}
	joinAll(t, all...)
	return f
}

func TestFleetEvents(t *testing.T) {
	f := startFleet(t, 3)
	ctx := context.Background()
	rig0, rig1 := f.agents[0], f.agents[1]

	id, err := f.controller.Broadcast(ctx, "pause", "name=rig-01", []byte("price drop"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "rig-01 handles the pause", func() bool { return len(rig1.rec.fleetEvents()) == 1 })
	got := rig1.rec.fleetEvents()[0]
	if got.IDString() != id || got.Kind != "pause" || string(got.Body) != "price drop" {
		t.Fatalf("rig-01 got %+v", got)
	}
	waitFor(t, 5*time.Second, "rig-00 counts the event as not selected", func() bool { return rig0.Stats().NotSelected == 1 })
	if n := len(rig0.rec.fleetEvents()); n != 0 {
		t.Fatalf("unselected rig-00 handled %d events", n)
	}

	// Agents cannot command the fleet.
	if _, err := rig0.Broadcast(ctx, "resume", "", nil); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("agent broadcast = %v, want ErrNoSigningKey", err)
	}

	// Forged events injected straight into serf by a gossip key holder.
	_, rogue, _ := ed25519.GenerateKey(nil)
	inject := func(payload []byte) {
		t.Helper()
		if err := rig0.serf.UserEvent(userEventName, payload, false); err != nil {
			t.Fatal(err)
		}
	}
	fresh := func(when time.Time) *Envelope {
		e, err := newEnvelope(when, "pause", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	inject(fresh(time.Now()).marshal(purposeEvent, nil))
	inject(fresh(time.Now()).marshal(purposeEvent, rogue))
	inject(fresh(time.Now().Add(-3*time.Minute)).marshal(purposeEvent, f.keys.priv))
	inject(fresh(time.Now().Add(time.Hour)).marshal(purposeEvent, f.keys.priv))
	replayed := fresh(time.Now())
	inject(replayed.marshal(purposeEvent, f.keys.priv)) // accepted once
	waitFor(t, 5*time.Second, "rig-02 accepts the genuine copy", func() bool {
		return len(f.agents[2].rec.fleetEvents()) == 1
	})
	inject(replayed.marshal(purposeEvent, f.keys.priv)) // same id again
	want := Stats{EventsAccepted: 1, Unsigned: 1, BadSignature: 1, Stale: 2, Replayed: 1}
	// Gossip carries the six copies in no particular order; each is counted
	// exactly once, so once the counts match every copy has been handled
	// and a wrongly accepted one would already show.
	testsupport.Poll(t, "rig-02 counts every forgery", 30*time.Second, func() (bool, string) {
		all := f.agents[2].Stats()
		// Only the event verdicts matter here; membership counters such as
		// refuted suspicions move with the machine's load.
		s := Stats{EventsAccepted: all.EventsAccepted, Unsigned: all.Unsigned, BadSignature: all.BadSignature, Stale: all.Stale, Replayed: all.Replayed, Malformed: all.Malformed}
		return s == want, fmt.Sprintf("stats %+v, want %+v", s, want)
	})
	if evs := f.agents[2].rec.fleetEvents(); len(evs) != 1 || evs[0].ID != replayed.ID {
		t.Fatalf("rig-02 handled %d events, want only the genuine one", len(evs))
	}
}

func TestFleetEventReachesEveryone(t *testing.T) {
	f := startFleet(t, 4)
	id, err := f.controller.Broadcast(context.Background(), "resume", "role=agent", []byte("go"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "every agent handles the event", func() bool {
		for _, a := range f.agents {
			if evs := a.rec.fleetEvents(); len(evs) != 1 || evs[0].IDString() != id {
				return false
			}
		}
		return true
	})
	// The controller itself does not match role=agent.
	if n := len(f.controller.rec.fleetEvents()); n != 0 {
		t.Fatalf("controller handled %d of its own agent events", n)
	}
}

func TestQueryAnsweredWithOneSilent(t *testing.T) {
	f := startFleet(t, 4)
	for i, a := range f.agents[:3] {
		temp := 60 + i
		a.HandleQuery("temps", QueryResponderFunc(func(ctx context.Context, q QueryRequest) ([]byte, error) {
			if q.From != "ctl" {
				return nil, fmt.Errorf("unexpected querier %s", q.From)
			}
			return fmt.Appendf(nil, "%d", temp), nil
		}))
	}
	f.agents[2].HandleQuery("hashrate", QueryResponderFunc(func(context.Context, QueryRequest) ([]byte, error) {
		return nil, errors.New("miner api down")
	}))
	// rig-03 registers nothing: it is the member that does not answer.

	ctx := context.Background()
	// The query waits its whole timeout for the silent member, so the
	// timeout is also how long a loaded machine has to deliver the
	// others' answers.
	res, err := f.controller.Query(ctx, "temps", "role=agent", 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	for a := range res.Answers() {
		if a.Err != "" {
			t.Errorf("%s: %s", a.From, a.Err)
		}
		from = append(from, a.From+"="+string(a.Payload))
	}
	sort.Strings(from)
	if want := []string{"rig-00=60", "rig-01=61", "rig-02=62"}; !slices.Equal(from, want) {
		t.Fatalf("answers %v, want %v", from, want)
	}
	if got := res.Missing(); !slices.Equal(got, []string{"rig-03"}) {
		t.Fatalf("missing %v, want [rig-03]", got)
	}

	res, err = f.controller.Query(ctx, "hashrate", "name=rig-02", 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	answers := collectAnswers(res)
	if len(answers) != 1 || answers[0].Err != "miner api down" || len(res.Missing()) != 0 {
		t.Fatalf("hashrate answers %+v missing %v", answers, res.Missing())
	}
}

func TestQueryOnlyFromController(t *testing.T) {
	f := startFleet(t, 2)
	f.agents[0].HandleQuery("version", QueryResponderFunc(func(context.Context, QueryRequest) ([]byte, error) {
		return []byte("0.1.0"), nil
	}))
	ctx := context.Background()
	if _, err := f.agents[1].Query(ctx, "version", "", time.Second); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("agent query = %v, want ErrNoSigningKey", err)
	}
	// A gossip member with its own signing key gets no answers.
	_, rogueKey, _ := ed25519.GenerateKey(nil)
	rogue := startNode(t, "rogue", f.keys, func(c *Config) { c.SigningKey = rogueKey })
	if _, err := rogue.Join(ctx, f.controller.Addr().String()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "rig-00 sees rogue", func() bool { return memberStatus(f.agents[0].Node, "rogue") == "alive" })
	res, err := rogue.Query(ctx, "version", "name=rig-00", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := collectAnswers(res); len(got) != 0 {
		t.Fatalf("rogue query answered: %+v", got)
	}
	if !slices.Equal(res.Missing(), []string{"rig-00"}) {
		t.Fatalf("missing = %v", res.Missing())
	}
	if s := f.agents[0].Stats(); s.BadSignature != 1 || s.QueriesAnswered != 0 {
		t.Fatalf("rig-00 stats %+v, want one bad signature and no answers", s)
	}
	// The real controller is answered.
	res, err = f.controller.Query(ctx, "version", "name=rig-00", 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := collectAnswers(res); len(got) != 1 || string(got[0].Payload) != "0.1.0" {
		t.Fatalf("controller query answers %+v", got)
	}
}

func TestQueryContextCancel(t *testing.T) {
	f := startFleet(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	res, err := f.controller.Query(ctx, "temps", "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-res.done:
	case <-time.After(2 * time.Second):
		t.Fatal("query did not end when its context was cancelled")
	}
	if !slices.Equal(res.Missing(), []string{"rig-00"}) {
		t.Fatalf("missing = %v", res.Missing())
	}
}

func collectAnswers(r *QueryResult) []Answer {
	var out []Answer
	for a := range r.Answers() {
		out = append(out, a)
	}
	return out
}
