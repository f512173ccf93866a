package notify

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is the controller's notify section: which alert rules run, with
// what thresholds, and where their messages go. Secrets (the webhook
// signing secret, the SMTP password) are only ever named by file.
type Config struct {
	Interval     time.Duration `yaml:"interval" help:"how often the alert rules are evaluated"`
	HoldDown     time.Duration `yaml:"hold_down" help:"how long an alert's condition must stay clear before it resolves (damps flapping)"`
	MaxBackoff   time.Duration `yaml:"max_backoff" help:"longest wait between two delivery attempts of one message"`
	GiveUpAfter  time.Duration `yaml:"give_up_after" help:"a message still undelivered this long after it was queued is dropped (and shown as dropped)"`
	KeepResolved int           `yaml:"keep_resolved" help:"how many resolved alerts are kept for the alert list"`
	BatchAbove   int           `yaml:"batch_above" help:"when more messages than this are due on a channel at once, they go as batches of up to 100 in one message each; 0: always one by one"`
	Rules        Rules         `yaml:"rules"`
	Webhooks     []Webhook     `yaml:"webhooks" help:"HTTP(S) endpoints sent every message as signed JSON: a list of {url, secret_file}"`
	SMTP         SMTP          `yaml:"smtp"`
}

// Rules switches each alert rule on or off and sets its threshold.
type Rules struct {
	Offline     OfflineRule   `yaml:"offline"`
	GPUHot      GPUHotRule    `yaml:"gpu_hot"`
	GPULost     Toggle        `yaml:"gpu_lost" help:"alert when a rig reports a GPU lost"`
	MinerDown   Toggle        `yaml:"miner_down" help:"alert when a miner is crashed or its stats API does not answer"`
	CrashLoop   CrashLoopRule `yaml:"crash_loop"`
	HashrateLow HashrateRule  `yaml:"hashrate_low"`
	BillingDue  Toggle        `yaml:"billing_past_due" help:"alert when a hosting customer is past due"`
	MarketStale Toggle        `yaml:"market_stale" help:"alert when profit switching pauses on stale market data"`
}

// Toggle is a rule with no threshold.
type Toggle struct {
	Enabled bool `yaml:"enabled" help:"evaluate this rule"`
}

// OfflineRule fires for a rig without a live stream for After.
type OfflineRule struct {
	Enabled bool          `yaml:"enabled" help:"alert when a rig has no live connection"`
	After   time.Duration `yaml:"after" help:"how long a rig must be offline (counted from its last report, or from the controller's start) before the alert fires"`
}

// GPUHotRule fires for a GPU at or above TempC.
type GPUHotRule struct {
	Enabled bool    `yaml:"enabled" help:"alert when a GPU runs hot"`
	TempC   float64 `yaml:"temp_c" help:"GPU temperature in degrees C at which the alert fires"`
}

// CrashLoopRule fires for a rig whose miner exited on its own Crashes
// times within Window.
type CrashLoopRule struct {
	Enabled bool          `yaml:"enabled" help:"alert when a rig's miner keeps exiting on its own"`
	Crashes int           `yaml:"crashes" help:"exits within window that make a crash loop"`
	Window  time.Duration `yaml:"window" help:"the window exits are counted in"`
}

// HashrateRule fires for a running miner below Percent of the hashrate
// the controller expects of the rig on that algorithm.
type HashrateRule struct {
	Enabled bool    `yaml:"enabled" help:"alert when a running miner is below the hashrate the controller has learned for the rig on that algorithm"`
	Percent float64 `yaml:"percent" help:"alert below this percentage of the expected hashrate"`
}

// Webhook is one HTTP(S) endpoint that receives every message as JSON,
// signed with the secret in SecretFile.
type Webhook struct {
	URL        string `yaml:"url"`
	SecretFile string `yaml:"secret_file"`
}

// SMTP is the mail relay messages go through; mail is off while Addr is
// empty.
type SMTP struct {
	Addr         string   `yaml:"addr" help:"mail relay host:port; empty: no mail"`
	From         string   `yaml:"from" help:"sender address"`
	To           []string `yaml:"to" help:"recipient addresses"`
	Username     string   `yaml:"username" help:"AUTH PLAIN user; empty: no authentication"`
	PasswordFile string   `yaml:"password_file" help:"file holding the AUTH PLAIN password"`
	StartTLS     bool     `yaml:"starttls" help:"refuse a relay that does not offer STARTTLS; false is allowed only for a relay on loopback"`
}

// DefaultHotC is the GPU temperature the hot rule fires at by default.
const DefaultHotC = 85

// DefaultConfig has every rule on and no channels: alerts show in the
// dashboard and quarryctl, and nothing is sent anywhere.
func DefaultConfig() Config {
	return Config{
		Interval: 15 * time.Second, HoldDown: 2 * time.Minute, MaxBackoff: 5 * time.Minute,
		GiveUpAfter: 24 * time.Hour, KeepResolved: 200, BatchAbove: 5,
		Rules: Rules{
			Offline:     OfflineRule{Enabled: true, After: time.Minute},
			GPUHot:      GPUHotRule{Enabled: true, TempC: DefaultHotC},
			GPULost:     Toggle{Enabled: true},
			MinerDown:   Toggle{Enabled: true},
			CrashLoop:   CrashLoopRule{Enabled: true, Crashes: 3, Window: 15 * time.Minute},
			HashrateLow: HashrateRule{Enabled: true, Percent: 70},
			BillingDue:  Toggle{Enabled: true},
			MarketStale: Toggle{Enabled: true},
		},
		SMTP: SMTP{StartTLS: true},
	}
}

// Limits on what a configuration may name.
const (
	maxWebhooks   = 16
	maxRecipients = 32
	maxSecret     = 4096
	minSecret     = 16
)

// Validate names every bad setting.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("notify."+format, a...)) }
	if c.Interval < 10*time.Millisecond {
		bad("interval: %s is below the 10ms minimum", c.Interval)
	}
	if c.HoldDown < 0 {
		bad("hold_down: %s is negative", c.HoldDown)
	}
	if c.MaxBackoff < 10*time.Millisecond {
		bad("max_backoff: %s is below the 10ms minimum", c.MaxBackoff)
	}
	if c.GiveUpAfter < time.Second {
		bad("give_up_after: %s is below the 1s minimum", c.GiveUpAfter)
	}
	if c.BatchAbove < 0 {
		bad("batch_above: %d is negative", c.BatchAbove)
	}
	if c.KeepResolved < 0 || c.KeepResolved > 10000 {
		bad("keep_resolved: %d is outside 0..10000", c.KeepResolved)
	}
	r := c.Rules
	if r.Offline.Enabled && r.Offline.After < 0 {
		bad("rules.offline.after: %s is negative", r.Offline.After)
	}
	if r.GPUHot.Enabled && (r.GPUHot.TempC < 30 || r.GPUHot.TempC > 130) {
		bad("rules.gpu_hot.temp_c: %g is outside 30..130", r.GPUHot.TempC)
	}
	if r.CrashLoop.Enabled && (r.CrashLoop.Crashes < 2 || r.CrashLoop.Window <= 0) {
		bad("rules.crash_loop: crashes must be at least 2 and window positive, got %d in %s", r.CrashLoop.Crashes, r.CrashLoop.Window)
	}
	if r.HashrateLow.Enabled && (r.HashrateLow.Percent <= 0 || r.HashrateLow.Percent >= 100) {
		bad("rules.hashrate_low.percent: %g is outside (0, 100)", r.HashrateLow.Percent)
	}
	if len(c.Webhooks) > maxWebhooks {
		bad("webhooks: %d of them, at most %d", len(c.Webhooks), maxWebhooks)
	}
	for i, w := range c.Webhooks {
		if _, err := parseWebhookURL(w.URL); err != nil {
			bad("webhooks[%d].url: %v", i, err)
		}
		if w.SecretFile == "" {
			bad("webhooks[%d].secret_file: required (messages are signed)", i)
		}
	}
	if s := c.SMTP; s.Addr != "" {
		host, _, err := net.SplitHostPort(s.Addr)
		if err != nil {
			bad("smtp.addr: %q is not host:port", s.Addr)
		}
		if _, err := mail.ParseAddress(s.From); err != nil {
			bad("smtp.from: %q is not an address", s.From)
		}
		if len(s.To) == 0 || len(s.To) > maxRecipients {
			bad("smtp.to: needs 1..%d addresses, got %d", maxRecipients, len(s.To))
		}
		for _, to := range s.To {
			if _, err := mail.ParseAddress(to); err != nil {
				bad("smtp.to: %q is not an address", to)
			}
		}
		if (s.Username == "") != (s.PasswordFile == "") {
			bad("smtp: username and password_file go together")
		}
		if !s.StartTLS && err == nil && !isLoopback(host) {
			bad("smtp.starttls: may be false only for a relay on loopback, not %q", host)
		}
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseWebhookURL accepts http and https addresses with a host and no
// user information (credentials belong in the secret file).
func parseWebhookURL(s string) (*url.URL, error) {
	if len(s) > 2048 {
		return nil, errors.New("longer than 2048 bytes")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q: must be https or http", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("has no host")
	}
	if u.User != nil {
		return nil, errors.New("must not carry a user or password")
	}
	return u, nil
}

// readSecret reads a secret file: trimmed, bounded, never empty.
func readSecret(setting, path string, minLen int) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("notify.%s: %w", setting, err)
	}
	if fi.Size() > maxSecret {
		return nil, fmt.Errorf("notify.%s: %s is larger than %d bytes", setting, path, maxSecret)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("notify.%s: %w", setting, err)
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) < minLen {
		return nil, fmt.Errorf("notify.%s: %s holds fewer than %d characters", setting, path, minLen)
	}
	return b, nil
}
