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

func TestSettingsCarryGossipJoin(t *testing.T) {
	if got := (&AgentServer{}).settings(nil).GetGossipJoin(); got != nil {
		t.Errorf("without gossip, settings carry join %q", got)
	}
	s := &AgentServer{Enrollment: Enrollment{GossipJoin: func() []string { return []string{"127.0.0.1:7946"} }}}
	if got := s.settings(nil).GetGossipJoin(); !slices.Equal(got, []string{"127.0.0.1:7946"}) {
		t.Errorf("settings carry join %q", got)
	}
}
