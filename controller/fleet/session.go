package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// ErrReplaced ends a session when the same rig connects again.
var ErrReplaced = errors.New("replaced by a newer connection from the same rig")

// Session is one connected agent stream as the fleet sees it. The API layer
// reads Commands and AckNotify and writes to the wire; the fleet writes
// into them.
type Session struct {
	RigID  string
	ctx    context.Context
	cancel context.CancelCauseFunc

	commands  chan *quarryv1.Command
	ackNotify chan struct{}
	acked     atomic.Uint64
}

// Context is done when the session must end; context.Cause says why.
func (s *Session) Context() context.Context { return s.ctx }

// Commands delivers commands to send to the agent.
func (s *Session) Commands() <-chan *quarryv1.Command { return s.commands }

// AckNotify fires when AckedUpTo has advanced.
func (s *Session) AckNotify() <-chan struct{} { return s.ackNotify }

// AckedUpTo is the highest committed sequence number to acknowledge.
func (s *Session) AckedUpTo() uint64 { return s.acked.Load() }

// Ack records that seq is committed. Acks only move forward.
func (s *Session) Ack(seq uint64) {
	for {
		cur := s.acked.Load()
		if seq <= cur {
			break
		}
		if s.acked.CompareAndSwap(cur, seq) {
			break
		}
	}
	select {
	case s.ackNotify <- struct{}{}:
	default:
	}
}

// Attach registers a connected rig. A previous session of the same rig is
// ended, since a rig has exactly one live stream.
func (f *Fleet) Attach(ctx context.Context, rigID string) (*Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rigs[rigID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownRig, rigID)
	}
	if f.revoked[rigID] {
		return nil, ErrRevoked
	}
	if old := f.sessions[rigID]; old != nil {
		old.cancel(ErrReplaced)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	s := &Session{
		RigID:     rigID,
		ctx:       sctx,
		cancel:    cancel,
		commands:  make(chan *quarryv1.Command, 256),
		ackNotify: make(chan struct{}, 1),
	}
	s.acked.Store(r.LastSeq)
	f.sessions[rigID] = s
	return s, nil
}

// Detach removes a session when its stream ends.
func (f *Fleet) Detach(s *Session) {
	f.mu.Lock()
	if f.sessions[s.RigID] == s {
		delete(f.sessions, s.RigID)
	}
	f.mu.Unlock()
	s.cancel(context.Canceled)
}

// Connected is the number of live agent streams.
func (f *Fleet) Connected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// Online reports whether a rig has a live stream.
func (f *Fleet) Online(rigID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.sessions[rigID]
	return ok
}

// SetHello stores what the agent said about itself on connect: hostname,
// version and tags, all informational. The rig's name and labels are the
// controller's and never change here. It writes only when something
// changed, so a fleet reconnecting at once does not cost a disk sync per
// rig.
func (f *Fleet) SetHello(rigID string, h *quarryv1.Hello) error {
	tags := h.GetInventory().GetTags()
	installed := h.GetInventory().GetInstalledMiners()
	f.mu.Lock()
	r, ok := f.rigs[rigID]
	changed := ok && ((h.Hostname != "" && r.Hostname != h.Hostname) || r.Version != h.Version ||
		(len(tags) > 0 && !maps.Equal(r.Tags, tags)) ||
		!slices.EqualFunc(r.InstalledMiners, installed, func(a, b *quarryv1.InstalledMiner) bool { return proto.Equal(a, b) }))
	f.mu.Unlock()
	if !changed {
		return nil
	}
	return f.UpdateRig(rigID, func(r *quarryv1.Rig) {
		if h.Hostname != "" {
			r.Hostname = h.Hostname
		}
		r.Version = h.Version
		if len(tags) > 0 {
			r.Tags = tags
		}
		r.InstalledMiners = installed
	})
}

// Revoke refuses a rig's certificate from now on and ends its stream at once.
func (f *Fleet) Revoke(rigID string) error {
	if err := f.db.Update(func(tx *store.Tx) error {
		return tx.Bucket([]byte(bucketRevoked)).Put([]byte(rigID), []byte(f.opts.Now().UTC().Format(time.RFC3339)))
	}); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	f.mu.Lock()
	f.revoked[rigID] = true
	s := f.sessions[rigID]
	f.mu.Unlock()
	if s != nil {
		s.cancel(ErrRevoked)
	}
	return nil
}

// Revoked reports whether a rig has been revoked.
func (f *Fleet) Revoked(rigID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revoked[rigID]
}

// ErrShutdown ends sessions when the controller stops.
var ErrShutdown = errors.New("controller is shutting down")

// EndSessions ends every live stream, for shutdown.
func (f *Fleet) EndSessions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		s.cancel(ErrShutdown)
	}
}
