package gossip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/serf/serf"
)

// FleetEvent is a verified, fresh, first-seen event selected for this node.
type FleetEvent struct {
	Envelope
}

// EventHandler acts on fleet events. Like MemberHandler it runs on the event
// loop and must return quickly.
type EventHandler interface {
	HandleEvent(FleetEvent)
}

// EventHandlerFunc adapts a function to EventHandler.
type EventHandlerFunc func(FleetEvent)

func (f EventHandlerFunc) HandleEvent(e FleetEvent) { f(e) }

// QueryRequest is a verified query addressed to this node.
type QueryRequest struct {
	Envelope
	// From is the querying node's name.
	From string
}

// QueryResponder answers one query name. It runs in its own goroutine with a
// context that ends at the query deadline; the answer must fit in 1 KiB.
type QueryResponder interface {
	RespondQuery(ctx context.Context, q QueryRequest) ([]byte, error)
}

// QueryResponderFunc adapts a function to QueryResponder.
type QueryResponderFunc func(ctx context.Context, q QueryRequest) ([]byte, error)

func (f QueryResponderFunc) RespondQuery(ctx context.Context, q QueryRequest) ([]byte, error) {
	return f(ctx, q)
}

// HandleEvents registers h for fleet events of kind; an empty kind receives
// every kind.
func (n *Node) HandleEvents(kind string, h EventHandler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.eventHandlers[kind] = append(n.eventHandlers[kind], h)
}

// HandleQuery registers the responder for query name, replacing any other.
func (n *Node) HandleQuery(name string, r QueryResponder) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.responders[name] = r
}

// ErrNoSigningKey is returned by Broadcast and Query on nodes without
// Config.SigningKey: only the controller may command the fleet.
var ErrNoSigningKey = errors.New("gossip: no signing key configured")

// Broadcast signs and gossips a fleet event to members matching selector
// and returns its id. Delivery is best effort: serf floods it to every
// member within a few gossip rounds; members that are down miss it.
func (n *Node) Broadcast(ctx context.Context, kind, selector string, body []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("gossip: broadcast %s: %w", kind, err)
	}
	if n.cfg.SigningKey == nil {
		return "", ErrNoSigningKey
	}
	if n.serf == nil {
		return "", ErrNotStarted
	}
	e, err := newEnvelope(time.Now(), kind, selector, body)
	if err != nil {
		return "", fmt.Errorf("gossip: broadcast: %w", err)
	}
	if err := n.serf.UserEvent(userEventName, e.marshal(purposeEvent, n.cfg.SigningKey), false); err != nil {
		return "", fmt.Errorf("gossip: broadcast %s: %w", kind, err)
	}
	return e.IDString(), nil
}

// accept runs every check an incoming envelope must pass and counts the
// outcome. It returns nil and a reason when the envelope must be ignored.
func (n *Node) accept(payload []byte, p purpose) (*Envelope, error) {
	e, err := unmarshalEnvelope(payload, p, n.cfg.TrustedKeys)
	switch {
	case errors.Is(err, ErrUnsigned):
		n.stats.unsigned.Add(1)
		return nil, err
	case errors.Is(err, ErrBadSignature):
		n.stats.badSignature.Add(1)
		return nil, err
	case err != nil:
		n.stats.malformed.Add(1)
		return nil, err
	}
	now := time.Now()
	if age := now.Sub(e.IssuedAt); age > n.cfg.EventWindow || -age > n.cfg.ClockSkew {
		n.stats.stale.Add(1)
		return nil, fmt.Errorf("%w: issued %s ago", ErrStale, age.Round(time.Millisecond))
	}
	sel, err := ParseSelector(e.Selector)
	if err != nil {
		n.stats.malformed.Add(1)
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	n.replayMu.Lock()
	fresh := n.replay.add(e.ID, e.IssuedAt.Add(n.cfg.EventWindow+n.cfg.ClockSkew), now)
	n.replayMu.Unlock()
	if !fresh {
		n.stats.replayed.Add(1)
		return nil, ErrReplayed
	}
	local := n.serf.LocalMember()
	if !sel.Match(local.Name, local.Tags) {
		n.stats.notSelected.Add(1)
		return nil, ErrNotSelected
	}
	return e, nil
}

func (n *Node) handleUserEvent(ue serf.UserEvent) {
	if ue.Name != userEventName {
		n.log.Debug("ignoring foreign user event", "name", ue.Name)
		return
	}
	e, err := n.accept(ue.Payload, purposeEvent)
	if err != nil {
		n.logRefusal("event", err)
		return
	}
	n.stats.eventsAccepted.Add(1)
	n.mu.RLock()
	hs := slices.Concat(n.eventHandlers[e.Kind], n.eventHandlers[""])
	n.mu.RUnlock()
	n.log.Info("fleet event", "id", e.IDString(), "kind", e.Kind, "handlers", len(hs))
	for _, h := range hs {
		h.HandleEvent(FleetEvent{Envelope: *e})
	}
}

func (n *Node) logRefusal(what string, err error) {
	if errors.Is(err, ErrNotSelected) {
		return
	}
	// Serf re-gossips each message a few times; seeing a replay of one we
	// accepted is expected, so only real anomalies are warnings.
	if errors.Is(err, ErrReplayed) {
		n.log.Debug("ignoring "+what, "reason", err)
		return
	}
	n.log.Warn("ignoring "+what, "reason", err)
}

func (n *Node) handleQuery(q *serf.Query) {
	name, ok := strings.CutPrefix(q.Name, queryPrefix)
	if !ok {
		return
	}
	n.mu.RLock()
	r := n.responders[name]
	n.mu.RUnlock()
	if r == nil {
		return
	}
	e, err := n.accept(q.Payload, purposeQuery)
	if err != nil {
		n.logRefusal("query", err)
		return
	}
	if e.Kind != name {
		n.stats.malformed.Add(1)
		n.log.Warn("ignoring query", "reason", "signed name differs from serf query name", "signed", e.Kind, "name", name)
		return
	}
	req := QueryRequest{Envelope: *e, From: q.SourceNode()}
	ctx, cancel := context.WithDeadline(n.ctx, q.Deadline())
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		body, err := r.RespondQuery(ctx, req)
		resp := encodeAnswer(body, err)
		if n.cfg.Identity != nil {
			sig, serr := signWith(n.cfg.Identity, answerMessage(e.ID, n.cfg.NodeName, resp))
			if serr != nil {
				n.log.Warn("sign query answer", "err", serr)
			} else {
				resp = signAnswer(sig, resp)
			}
		}
		if err := q.Respond(resp); err != nil {
			// Most likely too large; tell the querier rather than go silent.
			if err2 := q.Respond(encodeAnswer(nil, fmt.Errorf("answer not sent: %w", err))); err2 != nil {
				n.log.Warn("query answer failed", "query", name, "err", err)
			}
			return
		}
		n.stats.queriesAnswered.Add(1)
	}()
}

// Answer is one member's reply to a query.
type Answer struct {
	From    string
	Payload []byte
	// Err is the responder's error message, empty on success.
	Err string
	// QueryID and Signature let VerifyAnswer check that From's rig key
	// signed the answer; Signature is empty for unsigned answers.
	QueryID   [16]byte
	Signature []byte
	signed    []byte
}

const (
	answerOK     byte = 0
	answerErr    byte = 1
	answerSigned byte = 0xA5 // then sig length, sig, then an OK or Err answer
)

func signAnswer(sig, inner []byte) []byte {
	out := append([]byte{answerSigned, byte(len(sig))}, sig...)
	return append(out, inner...)
}

func encodeAnswer(body []byte, err error) []byte {
	if err != nil {
		return append([]byte{answerErr}, err.Error()...)
	}
	return append([]byte{answerOK}, body...)
}

func decodeAnswer(from string, id [16]byte, p []byte) Answer {
	var sig []byte
	if len(p) >= 2 && p[0] == answerSigned {
		l := int(p[1])
		if len(p) < 2+l {
			return Answer{From: from, QueryID: id, Err: "malformed signed answer"}
		}
		sig, p = p[2:2+l], p[2+l:]
	}
	a := decodePlainAnswer(from, p)
	a.QueryID, a.Signature, a.signed = id, sig, p
	return a
}

func decodePlainAnswer(from string, p []byte) Answer {
	if len(p) == 0 {
		return Answer{From: from, Err: "empty answer"}
	}
	if p[0] == answerErr {
		return Answer{From: from, Err: string(p[1:])}
	}
	return Answer{From: from, Payload: p[1:]}
}

// QuerySpec describes a fleet query.
type QuerySpec struct {
	Name     string
	Selector string
	Body     []byte
	// Timeout defaults to serf's query timeout for the cluster size.
	Timeout time.Duration
}

// QueryResult streams answers as they arrive.
type QueryResult struct {
	answers  chan Answer
	done     chan struct{}
	expected []string
	missing  []string
}

// Answers yields answers as they arrive; it is closed when every expected
// member has answered, at the timeout, or when the query's context ends.
func (r *QueryResult) Answers() <-chan Answer { return r.answers }

// Expected lists the alive members matching the selector when the query
// was sent.
func (r *QueryResult) Expected() []string { return slices.Clone(r.expected) }

// Missing lists expected members that did not answer. It blocks until
// Answers is closed.
func (r *QueryResult) Missing() []string {
	<-r.done
	return slices.Clone(r.missing)
}

// Query signs and sends a query to members matching selector.
func (n *Node) Query(ctx context.Context, name, selector string, timeout time.Duration) (*QueryResult, error) {
	return n.QueryWith(ctx, QuerySpec{Name: name, Selector: selector, Timeout: timeout})
}

// QueryWith is Query with a body.
func (n *Node) QueryWith(ctx context.Context, spec QuerySpec) (*QueryResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gossip: query %s: %w", spec.Name, err)
	}
	if n.cfg.SigningKey == nil {
		return nil, ErrNoSigningKey
	}
	if n.serf == nil {
		return nil, ErrNotStarted
	}
	sel, err := ParseSelector(spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("gossip: query: %w", err)
	}
	e, err := newEnvelope(time.Now(), spec.Name, spec.Selector, spec.Body)
	if err != nil {
		return nil, fmt.Errorf("gossip: query: %w", err)
	}
	n.mu.RLock()
	_, selfAnswers := n.responders[spec.Name]
	n.mu.RUnlock()
	var expected []string
	for _, m := range n.serf.Members() {
		if m.Status != serf.StatusAlive || !sel.Match(m.Name, m.Tags) {
			continue
		}
		if m.Name == n.cfg.NodeName && !selfAnswers {
			continue
		}
		expected = append(expected, m.Name)
	}
	params := n.serf.DefaultQueryParams()
	if spec.Timeout > 0 {
		params.Timeout = spec.Timeout
	}
	resp, err := n.serf.Query(queryPrefix+spec.Name, e.marshal(purposeQuery, n.cfg.SigningKey), params)
	if err != nil {
		return nil, fmt.Errorf("gossip: query %s: %w", spec.Name, err)
	}
	res := &QueryResult{
		answers:  make(chan Answer, len(expected)+1),
		done:     make(chan struct{}),
		expected: expected,
	}
	n.wg.Add(1)
	go n.collect(ctx, resp, res, e.ID)
	return res, nil
}

func (n *Node) collect(ctx context.Context, resp *serf.QueryResponse, res *QueryResult, id [16]byte) {
	defer n.wg.Done()
	defer close(res.done)
	defer close(res.answers)
	defer resp.Close()
	pending := make(map[string]bool, len(res.expected))
	for _, name := range res.expected {
		pending[name] = true
	}
	finish := func() {
		for _, name := range res.expected {
			if pending[name] {
				res.missing = append(res.missing, name)
			}
		}
	}
	ch := resp.ResponseCh()
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				finish()
				return
			}
			a := decodeAnswer(r.From, id, r.Payload)
			select {
			case res.answers <- a:
			case <-ctx.Done():
				finish()
				return
			case <-n.stopped:
				finish()
				return
			}
			delete(pending, r.From)
			if len(pending) == 0 && len(res.expected) > 0 {
				return
			}
		case <-ctx.Done():
			finish()
			return
		case <-n.stopped:
			finish()
			return
		}
	}
}
