package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/web"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	t     *testing.T
	db    *store.DB
	fleet *fleet.Fleet
	web   *web.Server
	srv   *httptest.Server
	seq   map[string]uint64
}

func newEnv(t *testing.T, opts web.Options) *env {
	t.Helper()
	db := testsupport.OpenStore(t, filepath.Join(t.TempDir(), "quarry.db"), fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Fleet = f
	if opts.UpdateInterval == 0 {
		opts.UpdateInterval = 20 * time.Millisecond
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	w := web.New(opts)
	f.AddObserver(w)
	mux := http.NewServeMux()
	w.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		w.Close()
		srv.Close()
		f.Close()
		db.Close()
	})
	return &env{t: t, db: db, fleet: f, web: w, srv: srv, seq: map[string]uint64{}}
}

// fixture loads a report from testdata.
func fixture(t *testing.T, name string) *quarryv1.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	r := &quarryv1.Report{}
	if err := protojson.Unmarshal(b, r); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// rig enrolls a rig and, when online, attaches a session as a connected
// agent would.
func (e *env) rig(id, name string, online bool) {
	e.t.Helper()
	if err := e.fleet.RegisterRig(id, name, name+".local"); err != nil {
		e.t.Fatal(err)
	}
	if online {
		s, err := e.fleet.Attach(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { e.fleet.Detach(s) })
	}
}

// report commits r for a rig and waits for the commit.
func (e *env) report(id string, r *quarryv1.Report) {
	e.t.Helper()
	e.seq[id]++
	r.Seq = e.seq[id]
	if r.TimeUnixNano == 0 {
		r.TimeUnixNano = time.Now().UnixNano()
	}
	done := make(chan struct{})
	if err := e.fleet.Ingest(context.Background(), id, r, func(uint64) { close(done) }); err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		e.t.Fatal("report not committed")
	}
}

func (e *env) token(name, role string) string {
	e.t.Helper()
	tok, err := e.fleet.CreateAdminToken(name, role)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// client is a browser stand-in with a cookie jar.
type client struct {
	e    *env
	http *http.Client
	csrf string
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, http: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (e *env) login(role string) *client {
	e.t.Helper()
	c := e.client()
	code, body := c.do("POST", "/api/login", `{"token":"`+e.token(role+"-user", role)+`"}`)
	if code != 200 {
		e.t.Fatalf("login as %s: %d %s", role, code, body)
	}
	var s struct{ CSRF string }
	_ = json.Unmarshal([]byte(body), &s)
	c.csrf = s.CSRF
	return c
}

func (c *client) do(method, path, body string) (int, string) {
	c.e.t.Helper()
	code, b, _ := c.doHeader(method, path, body, true)
	return code, b
}

func (c *client) doHeader(method, path, body string, withCSRF bool) (int, string, http.Header) {
	c.e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.e.srv.URL+path, rd)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if withCSRF && c.csrf != "" {
		req.Header.Set("X-Quarry-CSRF", c.csrf)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (c *client) getJSON(path string, v any) {
	c.e.t.Helper()
	code, body := c.do("GET", path, "")
	if code != 200 {
		c.e.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		c.e.t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}
