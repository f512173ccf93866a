package agentd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/quarryfleet/quarry/agent/oc"
	"github.com/quarryfleet/quarry/agent/watchdog"
	"github.com/quarryfleet/quarry/pkg/ocprofile"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// OCCommandFile holds the last profile file the controller sent, in the
// data dir, so a restarted agent re-applies it. An empty file records
// that the controller cleared the overclock; it then wins over the
// oc_profiles setting.
const OCCommandFile = "oc-commanded.yaml"

// noCards is the backend of a rig whose GPUs cannot be overclocked.
type noCards struct{}

func (noCards) Cards(context.Context) ([]oc.Card, error) { return nil, nil }

func (h *Hardware) openOC(o hardwareOpts) error {
	if o.noOC {
		// Read-only: show what a running agent applied, change nothing.
		a, err := oc.NewApplier(noCards{}, h.dataDir, h.log)
		if err != nil {
			h.log.Warn("applied overclock unknown", "err", err)
			return nil
		}
		h.applier = a
		return nil
	}
	if err := os.MkdirAll(h.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	b := o.backend
	if b == nil {
		nb, err := oc.OpenSystem()
		if err != nil {
			h.ocErr = err
			h.log.Info("overclocking unavailable on this rig", "reason", err)
			b = noCards{}
		} else {
			b = nb
			h.closers = append(h.closers, nb.Close)
		}
	}
	a, err := oc.NewApplier(b, h.dataDir, h.log)
	if err != nil {
		_ = h.closeAll()
		return err
	}
	h.backend, h.applier = b, a
	return nil
}

// PowerLimiter lowers a hot card's power limit step by step for the
// watchdog; nil when this rig cannot set power limits.
func (h *Hardware) PowerLimiter() watchdog.PowerLimiter {
	if h == nil || h.backend == nil || h.ocErr != nil {
		return nil
	}
	return oc.NewPowerStepper(h.backend, 0.1)
}

// Attach registers the overclock command on a.
func (h *Hardware) Attach(a *Agent) {
	a.Handle(quarryv1.CommandKind_COMMAND_KIND_SET_OVERCLOCK, h.SetOverclock)
}

// StartOverclock applies the profile file in force at start: the one the
// controller last sent, else the oc_profiles setting, else none. Cards a
// crashed run left overclocked and no longer targeted go back to defaults.
// A profile file that cannot be read or parsed is an error; one the cards
// refuse is logged and the agent runs at defaults.
func (h *Hardware) StartOverclock(ctx context.Context) error {
	if h.backend == nil {
		return nil
	}
	src, raw, err := h.startProfile()
	if err != nil {
		return err
	}
	f, err := parseProfiles(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if err := h.applier.Apply(ctx, f); err != nil {
		h.log.Error("overclock not applied; cards at defaults", "source", src, "err", err)
		if rerr := h.applier.Restore(ctx); rerr != nil {
			h.log.Error("restore overclock defaults", "err", rerr)
		}
		return nil
	}
	if len(f.Profiles) > 0 {
		h.log.Info("overclock profiles applied", "source", src)
	}
	return nil
}

func (h *Hardware) startProfile() (src string, raw []byte, err error) {
	cmdFile := filepath.Join(h.dataDir, OCCommandFile)
	raw, err = os.ReadFile(cmdFile)
	switch {
	case err == nil:
		return cmdFile, raw, nil
	case !errors.Is(err, os.ErrNotExist):
		return cmdFile, nil, fmt.Errorf("read overclock profile: %w", err)
	case h.ocFile == "":
		return "no profile", nil, nil
	}
	raw, err = os.ReadFile(h.ocFile)
	if err != nil {
		return h.ocFile, nil, fmt.Errorf("oc_profiles: %w", err)
	}
	return h.ocFile, raw, nil
}

func parseProfiles(raw []byte) (*ocprofile.File, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return &ocprofile.File{}, nil
	}
	return ocprofile.Parse(bytes.NewReader(raw))
}

// SetOverclock runs COMMAND_KIND_SET_OVERCLOCK. The payload is a profile
// file (see package oc); an empty payload removes every profile and puts
// the cards back to their defaults. A value outside a card's limits
// refuses the whole file and changes nothing.
func (h *Hardware) SetOverclock(ctx context.Context, payload []byte) ([]byte, error) {
	if h.backend == nil {
		return nil, errors.New("overclocking is not enabled in this agent")
	}
	f, err := parseProfiles(payload)
	if err != nil {
		return nil, fmt.Errorf("invalid profile file: %w", err)
	}
	if len(f.Profiles) > 0 && h.ocErr != nil {
		return nil, fmt.Errorf("this rig cannot overclock: %w", h.ocErr)
	}
	if err := h.applier.Apply(ctx, f); err != nil {
		if errors.Is(err, oc.ErrOutOfRange) {
			return nil, fmt.Errorf("refused, nothing changed: %w", err)
		}
		return nil, err
	}
	if err := writeAtomic(filepath.Join(h.dataDir, OCCommandFile), payload); err != nil {
		return nil, fmt.Errorf("applied, but not recorded for the next start: %w", err)
	}
	return []byte(h.ocSummary(ctx)), nil
}

// ocSummary says which profile each card now runs, e.g.
// "h100-eco on GPU 0,1; defaults on GPU 2".
func (h *Hardware) ocSummary(ctx context.Context) string {
	cards, err := h.backend.Cards(ctx)
	if err != nil {
		return "applied"
	}
	if len(cards) == 0 {
		return "no GPU to overclock"
	}
	by := map[string][]string{}
	for _, c := range cards {
		info := c.Info()
		name := "defaults"
		if a := h.applier.Applied(info.UUID); a != nil {
			name = a.Profile
		}
		by[name] = append(by[name], fmt.Sprint(info.Index))
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s on GPU %s", n, strings.Join(by[n], ",")))
	}
	return strings.Join(parts, "; ")
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
