package fleet

import (
	"slices"
	"testing"
	"time"
)

func TestSettingsCarryControllers(t *testing.T) {
	single := &AgentServer{ReportInterval: 10 * time.Second}
	if got := single.settings(nil).GetControllers(); got != nil {
		t.Errorf("single controller sends %q, want none", got)
	}
	group := &AgentServer{ReportInterval: 10 * time.Second, Controllers: func() []string { return []string{"ctl-1:7443", "ctl-2:7443"} }}
	s := group.settings([]string{"k"})
	if !slices.Equal(s.GetControllers(), []string{"ctl-1:7443", "ctl-2:7443"}) || s.ReportIntervalSeconds != 10 || !slices.Equal(s.GossipKeys, []string{"k"}) {
		t.Errorf("settings = %v", s)
	}
}
