package billing

import (
	"errors"
	"fmt"
	"time"

	"github.com/quarryfleet/quarry/pkg/store"
)

// PastDuePolicy decides what happens to the rigs of a customer who is not
// paying. The zero value only notifies.
type PastDuePolicy struct {
	// StopSwitching freezes profit switching for a past-due customer's rigs.
	StopSwitching bool
	// StopMiningAfter stops the rigs once the customer has been past due (or
	// canceled) this long; zero never stops them.
	StopMiningAfter time.Duration
}

// Action is what the controller should do with a customer's rigs.
type Action int

// Actions, in increasing severity.
const (
	ActionNone Action = iota
	ActionNotify
	ActionStopSwitching
	ActionStopMining
)

func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionNotify:
		return "notify"
	case ActionStopSwitching:
		return "stop-switching"
	case ActionStopMining:
		return "stop-mining"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// PolicyAction tells the controller what to do with a customer's rigs at
// now. An active customer needs nothing; a past-due one is notified, and
// per policy loses switching and then, after the grace period, mining. A
// canceled customer is treated as past due since the cancellation.
func (s *Service) PolicyAction(customer string, now time.Time) (Action, error) {
	c, err := s.GetCustomer(customer)
	if err != nil {
		return ActionNone, err
	}
	return s.cfg.PastDue.action(c, now), nil
}

func (p PastDuePolicy) action(c Customer, now time.Time) Action {
	if c.Status == StatusActive {
		return ActionNone
	}
	since := c.PastDueSince
	if c.Status == StatusCanceled || since.IsZero() {
		since = time.Unix(c.StatusAsOf, 0)
	}
	if p.StopMiningAfter > 0 && now.Sub(since) >= p.StopMiningAfter {
		return ActionStopMining
	}
	if p.StopSwitching {
		return ActionStopSwitching
	}
	return ActionNotify
}

// RigAction is PolicyAction for the customer a rig is assigned to; a rig
// with no customer gets ActionNone.
func (s *Service) RigAction(rig string, now time.Time) (Action, string, error) {
	var owner rigOwner
	err := s.db.View(func(tx *store.Tx) error {
		return getJSON(tx.Bucket(bucketRigs), []byte(rig), &owner)
	})
	if errors.Is(err, ErrNotFound) || owner.Customer == "" {
		return ActionNone, "", nil
	}
	if err != nil {
		return ActionNone, "", err
	}
	a, err := s.PolicyAction(owner.Customer, now)
	return a, owner.Customer, err
}
