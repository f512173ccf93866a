//go:build linux && cgo

package oc

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/quarryfleet/quarry/pkg/ocprofile"
	"github.com/quarryfleet/quarry/pkg/telemetry/nvidia/nvmltest"
)

func h100Rig(t *testing.T) (*NVMLBackend, []*nvmltest.State) {
	t.Helper()
	rec, err := nvmltest.Load("h100_sxm5")
	if err != nil {
		t.Fatal(err)
	}
	srv, states := nvmltest.DGXH100(rec)
	b, err := NewNVMLBackend(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, states
}

func loadProfiles(t *testing.T) *ocprofile.File {
	t.Helper()
	fh, err := os.Open("../../pkg/ocprofile/testdata/profiles.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f, err := ocprofile.Parse(fh)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestApplyTargetsAndRestore(t *testing.T) {
	ctx := context.Background()
	b, states := h100Rig(t)
	dir := t.TempDir()
	a, err := NewApplier(b, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, loadProfiles(t)); err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		s := st.Snapshot()
		switch i {
		case 2: // bus 0000:3a:00.0 takes the more specific profile
			if s.PowerLimitMW != 300000 || s.MemLocked != [2]uint32{1593, 2619} || s.GPULocked != [2]uint32{} {
				t.Errorf("gpu 2: %+v", s)
			}
		default:
			if s.PowerLimitMW != 450000 || s.GPULocked != [2]uint32{1200, 1755} || s.MemLocked != [2]uint32{} {
				t.Errorf("gpu %d: %+v", i, s)
			}
		}
	}
	uuid2 := b.mustUUID(t, 2)
	if got := a.Applied(uuid2); got == nil || got.Profile != "h100-slot2" || *got.PowerLimitW != 300 {
		t.Errorf("Applied(gpu2) = %+v", got)
	}
	var rec []Applied
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil || json.Unmarshal(raw, &rec) != nil || len(rec) != 8 {
		t.Fatalf("state file: %v %s", err, raw)
	}

	// A new agent process picks up the record and, on clean stop, resets
	// every card to its defaults.
	a2, err := NewApplier(b, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Applied(uuid2) == nil {
		t.Fatal("record not reloaded")
	}
	if err := a2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		s := st.Snapshot()
		if s.PowerLimitMW != 700000 || s.GPULocked != [2]uint32{} || s.MemLocked != [2]uint32{} {
			t.Errorf("gpu %d not restored: %+v", i, s)
		}
	}
	if a2.Applied(uuid2) != nil {
		t.Error("still reported after restore")
	}
}

func (b *NVMLBackend) mustUUID(t *testing.T, i int) string {
	cards, err := b.Cards(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cards[i].Info().UUID
}

func TestProfileRemovedRestoresOnlyThatCard(t *testing.T) {
	ctx := context.Background()
	b, states := h100Rig(t)
	a, _ := NewApplier(b, t.TempDir(), nil)
	f := loadProfiles(t)
	if err := a.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Profiles = f.Profiles[:1] // drop the slot-2 profile
	if err := a.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	s := states[2].Snapshot()
	if s.PowerLimitMW != 450000 || s.MemLocked != [2]uint32{} || s.GPULocked != [2]uint32{1200, 1755} {
		t.Errorf("gpu 2 after its profile went: %+v", s)
	}
	// Unchanged cards are not touched again.
	if n := len(states[0].Snapshot().Calls); n != 2 {
		t.Errorf("gpu 0 saw %d calls, want 2: %v", n, states[0].Snapshot().Calls)
	}
}

func TestOutOfRangeRefusedNotClamped(t *testing.T) {
	tests := []struct {
		name string
		p    ocprofile.Profile
	}{
		{"power above max", ocprofile.Profile{Name: "hot", Match: ocprofile.Match{Index: []int{3}}, PowerLimitW: ptr(701)}},
		{"power below min", ocprofile.Profile{Name: "cold", Match: ocprofile.Match{Index: []int{3}}, PowerLimitW: ptr(150)}},
		{"clock above max", ocprofile.Profile{Name: "fast", Match: ocprofile.Match{Index: []int{3}}, GPUClockMHz: &ocprofile.Range{Min: 1000, Max: 2100}}},
		{"fans on a fanless card", ocprofile.Profile{Name: "fan", Match: ocprofile.Match{Index: []int{3}}, FanPercent: ptr(80)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, states := h100Rig(t)
			dir := t.TempDir()
			a, _ := NewApplier(b, dir, nil)
			ok := ocprofile.Profile{Name: "fine", Match: ocprofile.Match{Index: []int{0}}, PowerLimitW: ptr(500)}
			err := a.Apply(context.Background(), &ocprofile.File{Profiles: []ocprofile.Profile{ok, tt.p}})
			if !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("err = %v, want ErrOutOfRange", err)
			}
			for i, st := range states {
				if c := st.Snapshot().Calls; len(c) != 0 {
					t.Errorf("gpu %d touched despite refusal: %v", i, c)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, StateFile)); !os.IsNotExist(err) {
				t.Errorf("state written for a refused file: %v", err)
			}
		})
	}
}

func TestFansAppliedAndRestored(t *testing.T) {
	rec, err := nvmltest.Load("rtx3090")
	if err != nil {
		t.Fatal(err)
	}
	srv := dgxa100.New()
	srv.Devices = srv.Devices[:1]
	st := nvmltest.Replay(srv.Devices[0].(*server.Device), rec)
	b, err := NewNVMLBackend(srv)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewApplier(b, t.TempDir(), nil)
	f := &ocprofile.File{Profiles: []ocprofile.Profile{{Name: "quiet", Match: ocprofile.Match{Index: []int{0}}, FanPercent: ptr(70), PowerLimitW: ptr(280)}}}
	if err := a.Apply(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if s := st.Snapshot(); !slices.Equal(s.FanPercent, []int{70, 70}) || s.PowerLimitMW != 280000 {
		t.Fatalf("applied: %+v", s)
	}
	if err := a.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Restore goes to the card's default limit (350 W), not the 300 W it
	// happened to run at before.
	if s := st.Snapshot(); !slices.Equal(s.FanPercent, []int{-1, -1}) || s.PowerLimitMW != 350000 {
		t.Fatalf("restored: %+v", s)
	}
}

func TestCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := h100Rig(t)
	if _, err := NewApplier(b, dir, nil); err == nil {
		t.Fatal("corrupt record accepted")
	}
}

func ptr(v int) *int { return &v }
