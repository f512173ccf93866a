package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/fleet/fleetbench"
	"github.com/quarryfleet/quarry/controller/web"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// The rig table's search and filters run on the server: the answer holds
// one page of the matching rigs and says how many match, while the tiles
// still count the whole fleet.
func TestOverviewFilters(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.rig("id-alpha", "alpha-01", true)
	e.rig("id-beta", "beta-02", true)
	e.rig("id-gamma", "gamma-03", false)
	e.rig("id-delta", "alpha-04", false)
	e.report("id-alpha", &quarryv1.Report{Miners: []*quarryv1.MinerStats{{Miner: "t-rex", Algorithm: "kawpow", Hashrate: 5e7, State: "running"}}})
	e.report("id-beta", &quarryv1.Report{Miners: []*quarryv1.MinerStats{{Miner: "xmrig", Algorithm: "rx/0", Hashrate: 9e3, State: "running"}},
		Gpus: []*quarryv1.GPUStats{{Index: 0, Name: "NVIDIA GeForce RTX 3070"}}})
	if _, err := e.fleet.SetLabels("id-beta", map[string]string{"site": "eu"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fleet.SetLabels("id-gamma", map[string]string{"site": "us"}, nil); err != nil {
		t.Fatal(err)
	}
	c := e.login("viewer")
	for _, tt := range []struct {
		query   string
		want    string // names of the rows, in order
		matched int
	}{
		{"", "alpha-01,alpha-04,beta-02,gamma-03", 4},
		{"q=ALPHA", "alpha-01,alpha-04", 2},
		{"q=id-g", "gamma-03", 1}, // the start of an id
		{"q=nothing", "", 0},
		{"selector=tag%3Dsite%3Deu", "beta-02", 1},
		{"selector=tag%3Dsite", "beta-02,gamma-03", 2},
		{"selector=gpu%3DRTX+3070", "beta-02", 1},
		{"selector=name%3Dalpha-*", "alpha-01,alpha-04", 2},
		{"status=online", "alpha-01,beta-02", 2},
		{"status=offline", "alpha-04,gamma-03", 2},
		{"status=alerts", "alpha-04,gamma-03", 2}, // offline rigs raise an alert
		{"algorithm=kawpow", "alpha-01", 1},
		{"q=alpha&status=online", "alpha-01", 1},
		{"q=a&sort=name&dir=desc&limit=2", "gamma-03,beta-02", 4},
		{"q=a&limit=2&offset=2", "beta-02,gamma-03", 4}, // every name holds an "a"
	} {
		t.Run(tt.query, func(t *testing.T) {
			var ov web.Overview
			c.getJSON("/api/overview?"+tt.query, &ov)
			var names []string
			for _, r := range ov.Rigs {
				names = append(names, r.Name)
			}
			if got := strings.Join(names, ","); got != tt.want {
				t.Errorf("rows %q, want %q", got, tt.want)
			}
			if ov.Matched != tt.matched {
				t.Errorf("matched %d, want %d", ov.Matched, tt.matched)
			}
			if ov.Total != 4 || ov.Online != 2 || ov.AlertCount != 2 {
				t.Errorf("tiles total/online/alerts %d/%d/%d: the filter must not narrow them", ov.Total, ov.Online, ov.AlertCount)
			}
		})
	}
	for _, bad := range []string{"selector=name%3D%5B", "selector=colour%3Dred", "status=sleeping", "q=" + strings.Repeat("x", 300)} {
		for _, path := range []string{"/api/overview?", "/api/stream?"} {
			if code, body := c.do("GET", path+bad, ""); code != http.StatusBadRequest {
				t.Errorf("GET %s%s: %d %s, want 400", path, bad, code, body)
			}
		}
	}
}

// BenchmarkOverviewFiltered10k serves the filtered rig table of a real
// 10,000-rig fleet (bbolt store, every rig with a six-GPU report, one in
// ten labelled site=eu) over HTTP with a signed-in session: one page of
// 50 matching rows per answer, whatever the fleet's size.
func BenchmarkOverviewFiltered10k(b *testing.B) {
	const n = 10_000
	path := filepath.Join(b.TempDir(), "quarry.db")
	if err := fleetbench.Build(context.Background(), path, n); err != nil {
		b.Fatal(err)
	}
	db := testsupport.OpenStore(b, path, fleet.Buckets...)
	db.Bolt().NoSync = true
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < n; i += 10 {
		if _, err := f.SetLabels(fmt.Sprintf("%032x", i+1), map[string]string{"site": "eu"}, nil); err != nil {
			b.Fatal(err)
		}
	}
	tok, err := f.CreateAdminToken("bench", fleet.RoleViewer)
	if err != nil {
		b.Fatal(err)
	}
	w := web.New(web.Options{Fleet: f})
	defer w.Close()
	mux := http.NewServeMux()
	w.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err := hc.Post(srv.URL+"/api/login", "application/json", strings.NewReader(`{"token":"`+tok+`"}`))
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("login: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, bc := range []struct {
		name, query string
		matched     int
	}{
		{"Unfiltered", "", n},
		{"Search", "q=" + url.QueryEscape("bench-00123"), 10},
		{"Label", "selector=" + url.QueryEscape("tag=site=eu"), n / 10},
		{"LabelAndAlgorithm", "selector=" + url.QueryEscape("tag=site=eu") + "&algorithm=kawpow&sort=hashrate&dir=desc", n / 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var size int
			var ov web.Overview
			for b.Loop() {
				resp, err := hc.Get(srv.URL + "/api/overview?limit=50&" + bc.query)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%d %s", resp.StatusCode, body)
				}
				size = len(body)
				ov = web.Overview{}
				if err := json.Unmarshal(body, &ov); err != nil {
					b.Fatal(err)
				}
			}
			if ov.Matched != bc.matched || len(ov.Rigs) != min(50, bc.matched) || ov.Total != n {
				b.Fatalf("matched %d rows %d total %d; want %d, %d, %d", ov.Matched, len(ov.Rigs), ov.Total, bc.matched, min(50, bc.matched), n)
			}
			b.ReportMetric(float64(size), "bytes/resp")
			b.ReportMetric(float64(len(ov.Rigs)), "rows/resp")
		})
	}
}
