package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/quarryfleet/quarry/controller/cluster"
	"github.com/quarryfleet/quarry/controller/metrics"
	"github.com/quarryfleet/quarry/controller/web"
)

// WebConfig is the dashboard and metrics section.
type WebConfig struct {
	Dashboard    bool          `yaml:"dashboard" flag:"web-dashboard" help:"serve the dashboard at / on http_addr"`
	Metrics      bool          `yaml:"metrics" flag:"web-metrics" help:"serve Prometheus metrics at /metrics on http_addr"`
	SessionTTL   time.Duration `yaml:"session_ttl" help:"how long a dashboard sign-in lasts"`
	SecureCookie bool          `yaml:"secure_cookie" help:"mark the dashboard session cookie Secure (set when served over HTTPS through a proxy)"`
	// MetricsAddr and MetricsTokenFile keep the fleet's figures from
	// anyone who can reach the dashboard port.
	MetricsAddr       string        `yaml:"metrics_addr" help:"serve /metrics on this host:port instead of http_addr (e.g. an address only Prometheus reaches)"`
	MetricsTokenFile  string        `yaml:"metrics_token_file" help:"file holding a bearer token that /metrics requires (Prometheus: authorization.credentials_file); empty: no token"`
	LoginFailures     int           `yaml:"login_failures" help:"failed dashboard sign-ins one address may make per minute before getting 429"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" help:"HTTP servers: longest time to read a request's headers"`
	ReadTimeout       time.Duration `yaml:"read_timeout" help:"HTTP servers: longest time to read a whole request"`
	WriteTimeout      time.Duration `yaml:"write_timeout" help:"HTTP servers: longest time to write a response (the dashboard's live stream extends it per update; /metrics is allowed 5 minutes)"`
	IdleTimeout       time.Duration `yaml:"idle_timeout" help:"HTTP servers: how long an idle keep-alive connection is kept"`
}

// DefaultWebConfig serves both the dashboard and the metrics.
func DefaultWebConfig() WebConfig {
	return WebConfig{Dashboard: true, Metrics: true, SessionTTL: 12 * time.Hour, LoginFailures: 5,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
}

func (w WebConfig) validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{"web.read_header_timeout": w.ReadHeaderTimeout, "web.read_timeout": w.ReadTimeout, "web.write_timeout": w.WriteTimeout, "web.idle_timeout": w.IdleTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", name, d))
		}
	}
	if w.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(w.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("web.metrics_addr: %q is not host:port: %w", w.MetricsAddr, err))
		}
	}
	if w.LoginFailures < 1 {
		errs = append(errs, fmt.Errorf("web.login_failures: must be at least 1, got %d", w.LoginFailures))
	}
	return errors.Join(errs...)
}

// httpServer applies the configured timeouts.
func (w WebConfig) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: w.ReadHeaderTimeout, ReadTimeout: w.ReadTimeout, WriteTimeout: w.WriteTimeout, IdleTimeout: w.IdleTimeout}
}

// metricsHandler wraps h with the bearer-token check when a token file is
// set. The file is read once, at start.
func (c *Controller) metricsHandler(h http.Handler) (http.Handler, error) {
	if c.cfg.Web.MetricsTokenFile == "" {
		return h, nil
	}
	b, err := os.ReadFile(c.cfg.Web.MetricsTokenFile)
	if err != nil {
		return nil, fmt.Errorf("web.metrics_token_file: %w", err)
	}
	want := []byte("Bearer " + strings.TrimSpace(string(b)))
	if len(want) < len("Bearer ")+16 {
		return nil, fmt.Errorf("web.metrics_token_file: %s holds a token shorter than 16 characters", c.cfg.Web.MetricsTokenFile)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="quarry metrics"`)
			http.Error(w, "metrics need the bearer token from web.metrics_token_file", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

// scrapeWriteTimeout replaces web.write_timeout for /metrics. A scrape of
// a large fleet is long (10,000 six-GPU rigs: about 80 MB of text and
// several seconds to build), and cutting it off at the dashboard's write
// timeout hands Prometheus a truncated body; the scraper's own
// scrape_timeout bounds it from the other side.
const scrapeWriteTimeout = 5 * time.Minute

func longScrape(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(scrapeWriteTimeout))
		h.ServeHTTP(w, r)
	})
}

// setupWeb mounts /metrics (on its own listener when web.metrics_addr is
// set) and the dashboard on the HTTP mux.
func (c *Controller) setupWeb() error {
	if c.cfg.Web.Metrics {
		opts := metrics.Options{Runtime: true, Log: c.log.With("component", "metrics")}
		if c.group != nil {
			opts.Health = append(opts.Health, cluster.Collector{Node: c.group})
		}
		c.metrics = metrics.New(c.fleet, opts)
		h, err := c.metricsHandler(c.metrics.Handler())
		if err != nil {
			return err
		}
		h = longScrape(h)
		health, err := c.metricsHandler(c.metrics.HealthHandler())
		if err != nil {
			return err
		}
		if c.cfg.Web.MetricsAddr == "" {
			c.mux.Handle("GET /metrics", h)
			c.mux.Handle("GET /metrics/controller", health)
		} else {
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", h)
			mux.Handle("GET /metrics/controller", health)
			if c.metricsLis, err = net.Listen("tcp", c.cfg.Web.MetricsAddr); err != nil {
				return fmt.Errorf("web.metrics_addr: %w", err)
			}
			c.metricsSrv = c.cfg.Web.httpServer(mux)
		}
	}
	if c.cfg.Web.Dashboard {
		c.web = web.New(web.Options{Fleet: c.fleet, RPC: c.gateway, Log: c.log.With("component", "web"), SessionTTL: c.cfg.Web.SessionTTL, SecureCookie: c.cfg.Web.SecureCookie, LoginFailures: c.cfg.Web.LoginFailures})
		c.fleet.AddObserver(c.web)
		c.web.Mount(c.mux)
		if c.figures != nil {
			c.web.SetFigures(c.figures)
		}
		if c.notify != nil {
			c.web.SetAlerts(alertsView{c.notify.n})
		}
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
	return nil
}

// Metrics is the Prometheus exporter (nil when disabled); other packages
// set its profit and outbox-depth callbacks.
func (c *Controller) Metrics() *metrics.Exporter { return c.metrics }

// Web is the dashboard (nil when disabled); other packages set its
// profit, switch-history and billing providers.
func (c *Controller) Web() *web.Server { return c.web }

// MetricsAddr is the bound address of the separate metrics listener, ""
// when /metrics is served on http_addr.
func (c *Controller) MetricsAddr() string {
	if c.metricsLis == nil {
		return ""
	}
	return c.metricsLis.Addr().String()
}
