package server

import (
	"time"

	"github.com/quarryfleet/quarry/controller/metrics"
	"github.com/quarryfleet/quarry/controller/web"
)

// WebConfig is the dashboard and metrics section.
type WebConfig struct {
	Dashboard    bool          `yaml:"dashboard" flag:"web-dashboard" help:"serve the dashboard at / on http_addr"`
	Metrics      bool          `yaml:"metrics" flag:"web-metrics" help:"serve Prometheus metrics at /metrics on http_addr"`
	SessionTTL   time.Duration `yaml:"session_ttl" help:"how long a dashboard sign-in lasts"`
	SecureCookie bool          `yaml:"secure_cookie" help:"mark the dashboard session cookie Secure (set when served over HTTPS through a proxy)"`
}

// DefaultWebConfig serves both the dashboard and the metrics.
func DefaultWebConfig() WebConfig {
	return WebConfig{Dashboard: true, Metrics: true, SessionTTL: 12 * time.Hour}
}

// setupWeb mounts /metrics and the dashboard on the HTTP mux.
func (c *Controller) setupWeb() {
	if c.cfg.Web.Metrics {
		c.metrics = metrics.New(c.fleet, metrics.Options{Runtime: true, Log: c.log.With("component", "metrics")})
		c.mux.Handle("GET /metrics", c.metrics.Handler())
	}
	if c.cfg.Web.Dashboard {
		c.web = web.New(web.Options{Fleet: c.fleet, Log: c.log.With("component", "web"), SessionTTL: c.cfg.Web.SessionTTL, SecureCookie: c.cfg.Web.SecureCookie})
		c.fleet.AddObserver(c.web)
		c.web.Mount(c.mux)
	}
	if c.profit != nil {
		v := &switcherView{sw: c.profit.sw}
		if c.web != nil {
			c.web.SetProfit(v)
			c.web.SetSwitches(v)
		}
		if c.metrics != nil {
			c.metrics.SetProfit(v.USDPerDay)
		}
	}
}

// Metrics is the Prometheus exporter (nil when disabled); other packages
// set its profit and outbox-depth callbacks.
func (c *Controller) Metrics() *metrics.Exporter { return c.metrics }

// Web is the dashboard (nil when disabled); other packages set its
// profit, switch-history and billing providers.
func (c *Controller) Web() *web.Server { return c.web }
