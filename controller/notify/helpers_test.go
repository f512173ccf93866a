package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/notify"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testSecret = "webhook-signing-secret-0123456789"

// receiver is a webhook endpoint that checks each message's signature and
// keeps the accepted ones; it answers 500 to the first failFirst.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	msgs      []notify.Message
	failFirst int
	requests  int
	badSig    int
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	r := &receiver{t: t, failFirst: failFirst}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		ts := req.Header.Get(notify.TimestampHeader)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if req.Header.Get(notify.SignatureHeader) != notify.Sign([]byte(testSecret), ts, body) {
			r.badSig++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.requests <= r.failFirst {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		var m notify.Message
		if err := json.Unmarshal(body, &m); err != nil {
			r.t.Errorf("webhook body %q: %v", body, err)
		}
		if req.Header.Get(notify.MessageIDHeader) != m.ID {
			r.t.Errorf("message id header %q, body id %q", req.Header.Get(notify.MessageIDHeader), m.ID)
		}
		r.msgs = append(r.msgs, m)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []notify.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Message(nil), r.msgs...)
}

func kinds(ms []notify.Message) string {
	s := ""
	for _, m := range ms {
		s += m.Kind + ":" + m.Key + " "
	}
	return s
}

// env is a real fleet on a real bbolt file with a notifier over it.
type env struct {
	t      *testing.T
	dir    string
	db     *store.DB
	fleet  *fleet.Fleet
	cfg    notify.Config
	opts   notify.Options
	n      *notify.Notifier
	cancel context.CancelFunc
	done   chan struct{}
	logs   *syncBuffer
	sess   map[string]*fleet.Session
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() notify.Config {
	cfg := notify.DefaultConfig()
	cfg.Interval = 20 * time.Millisecond
	cfg.HoldDown = 200 * time.Millisecond
	cfg.MaxBackoff = 200 * time.Millisecond
	cfg.Rules.Offline.After = 0
	return cfg
}

func newEnv(t *testing.T, cfg notify.Config) *env {
	t.Helper()
	dir := t.TempDir()
	db := testsupport.OpenStore(t, filepath.Join(dir, "quarry.db"), fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, db: db, fleet: f, cfg: cfg, logs: &syncBuffer{}, sess: map[string]*fleet.Session{}}
	e.opts = notify.Options{DB: db, Fleet: f, Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(func() {
		e.stop()
		for _, s := range e.sess {
			f.Detach(s)
		}
		f.Close()
	})
	return e
}

// secretFile writes a secret where the configuration can name it.
func (e *env) secretFile(name, secret string) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) webhook(url string) notify.Webhook {
	return notify.Webhook{URL: url, SecretFile: e.secretFile("hook.secret", testSecret)}
}

// open opens the notifier; start also runs it.
func (e *env) open() *notify.Notifier {
	e.t.Helper()
	n, err := notify.Open(e.cfg, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.n = n
	return n
}

func (e *env) start() {
	e.t.Helper()
	e.open()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		e.n.Run(ctx)
	}()
}

func (e *env) stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
		e.cancel = nil
	}
}

func (e *env) rig(id string, online bool) {
	e.t.Helper()
	if err := e.fleet.RegisterRig(id, "name-"+id, id+".local"); err != nil {
		e.t.Fatal(err)
	}
	e.setOnline(id, online)
}

func (e *env) setOnline(id string, online bool) {
	e.t.Helper()
	if s := e.sess[id]; s != nil && !online {
		e.fleet.Detach(s)
		delete(e.sess, id)
	}
	if online && e.sess[id] == nil {
		s, err := e.fleet.Attach(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		e.sess[id] = s
	}
}

// settled reports whether every message of every alert is final.
func settled(n *notify.Notifier) (bool, string) {
	for _, r := range append(n.Firing(), n.Resolved(1000)...) {
		for _, d := range r.Deliveries {
			if d.State != notify.DeliveryDelivered && d.State != notify.DeliveryDropped {
				return false, r.Key + " " + d.Channel + " " + d.Msg.Kind + " " + d.State + " attempts=" + strconv.Itoa(d.Attempts) + " " + d.LastError
			}
		}
	}
	return true, ""
}
