package flightsheet

import (
	"strings"
	"testing"
)

// Every adapter's generated flags are refused in extra_args, from the
// launch code's own list, naming where to set them instead.
func TestExtraArgsFollowTheLaunchList(t *testing.T) {
	tests := []struct {
		miner, arg string
		field      string // "" = accepted
	}{
		{"xmrig", "--http-port", "api"},
		{"xmrig", "--http-access-token=abc", "api"},
		{"xmrig", "-ohost:3333", "pools"},
		{"xmrig", "--background", "foreground"},
		{"xmrig", "--randomx-1gb-pages", ""},
		{"trex", "--api-bind-http", "api"},
		{"lolminer", "--algo", "algorithm"},
		{"gminer", "--devices", "devices"},
		{"phoenixminer", "-cdmport", "api"},
		{"nbminer", "-o1", "pools"},
		{"srbminer", "--config-file", "pools"},
		{"srbminer", "-o", "pools"},
		{"srbminer", "--api-rig-shutdown-url=off", "api"},
		{"srbminer", "--gpu-intensity", ""},
		{"rigel", "--api-bind", "api"},
		{"rigel", "-ostratum+tcp://a:1", "pools"},
		{"rigel", "--no-watchdog", "foreground"},
		{"rigel", "--kernel", ""},
		{"ccminer", "--intensity=21", ""},
		{"custom", "--anything", ""},
		{"xmrig", "not-a-flag", ""},
	}
	for _, tc := range tests {
		err := checkExtraArg(tc.miner, tc.arg)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s %q: %v, want accepted", tc.miner, tc.arg, err)
		case tc.field != "" && (err == nil || !strings.Contains(err.Error(), fieldFor[tc.field])):
			t.Errorf("%s %q: err = %v, want a refusal naming %q", tc.miner, tc.arg, err, fieldFor[tc.field])
		}
	}
}
