package gossip

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestSettingsValidateNamesTheSetting(t *testing.T) {
	good := Settings{BindAddr: "127.0.0.1", BindPort: 7946, Advertise: "10.0.0.5:7946", Join: []string{"10.0.0.1:7946"}, Profile: "tuned", EventMaxAge: time.Minute}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		mutate func(*Settings)
		want   string
	}{
		{func(s *Settings) { s.BindAddr = "localhost" }, "gossip.bind_addr"},
		{func(s *Settings) { s.BindPort = 70000 }, "gossip.bind_port"},
		{func(s *Settings) { s.Advertise = "host:1" }, "gossip.advertise"},
		{func(s *Settings) { s.Advertise = "10.0.0.5:0" }, "gossip.advertise"},
		{func(s *Settings) { s.Join = []string{"nohost"} }, "gossip.join"},
		{func(s *Settings) { s.Profile = "wan" }, "gossip.profile"},
		{func(s *Settings) { s.EventMaxAge = 0 }, "gossip.event_max_age"},
	}
	for _, c := range cases {
		s := good
		c.mutate(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming %s", s, err, c.want)
		}
	}
	if h, p, err := ParseAdvertise("10.1.2.3:8000"); err != nil || h != "10.1.2.3" || p != 8000 {
		t.Fatalf("ParseAdvertise: %s %d %v", h, p, err)
	}
}

func TestCheckPortFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if err := CheckPortFree("127.0.0.1", port); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("taken port: %v", err)
	}
	if err := CheckPortFree("127.0.0.1", 0); err != nil {
		t.Fatalf("port 0: %v", err)
	}
}
