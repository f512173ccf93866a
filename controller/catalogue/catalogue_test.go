package catalogue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerarchive/archivetest"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func openStore(t *testing.T, opts Options) *Store {
	t.Helper()
	dir := t.TempDir()
	db := testsupport.OpenStore(t, filepath.Join(dir, "q.db"), fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	opts.DataDir = dir
	s, err := Open(db, f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAddURL(t *testing.T) {
	archive := archivetest.TarGz(archivetest.Member{Name: "xmrig", Body: []byte("program"), Mode: 0o755})
	mux := http.NewServeMux()
	mux.HandleFunc("/x.tar.gz", func(w http.ResponseWriter, _ *http.Request) { w.Write(archive) })
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, _ *http.Request) {
		for range 4 {
			w.Write(archive) // no Content-Length: the cap holds on the body itself
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/to-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.invalid/x.tar.gz", http.StatusFound)
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) })
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	s := openStore(t, Options{HTTPClient: srv.Client(), MaxArchive: int64(len(archive)) * 2})

	m, err := s.AddURL(context.Background(), &quarryv1.AddMinerHeader{Name: "xmrig", Version: "1", Url: srv.URL + "/x.tar.gz"}, "ann")
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(archive)
	if m.Sha256 != hex.EncodeToString(want[:]) || m.Source != srv.URL+"/x.tar.gz" || m.AddedBy != "ann" || m.Binary != "xmrig" {
		t.Errorf("added %+v", m)
	}
	for _, c := range []struct{ url, want string }{
		{"http://" + strings.TrimPrefix(srv.URL, "https://") + "/x.tar.gz", "only https"},
		{srv.URL + "/to-http", "not https"},
		{srv.URL + "/chunked", "larger than"},
		{srv.URL + "/gone", "404"},
		{"https://user:pw@" + strings.TrimPrefix(srv.URL, "https://") + "/x.tar.gz", "credentials"},
	} {
		_, err := s.AddURL(context.Background(), &quarryv1.AddMinerHeader{Name: "xmrig", Version: "2", Url: c.url}, "ann")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.url, err, c.want)
		}
	}
	if ms, _ := s.List(""); len(ms) != 1 {
		t.Errorf("refusals stored something: %v", ms)
	}
}

func TestResolve(t *testing.T) {
	s := openStore(t, Options{})
	archive := archivetest.Zip(archivetest.Member{Name: "dir/xmrig", Body: []byte("program"), Mode: 0o755})
	if _, err := s.Add(&quarryv1.AddMinerHeader{Name: "xmrig", Version: "6.26.0"}, bytes.NewReader(archive), "ann"); err != nil {
		t.Fatal(err)
	}
	fs := &flightsheet.FlightSheet{Name: "s", Miner: flightsheet.Miner{Name: "xmrig", Version: "6.26.0"}}
	if err := s.Resolve(fs); err != nil {
		t.Fatal(err)
	}
	prog := sha256.Sum256([]byte("program"))
	if fs.Miner.SHA256 != hex.EncodeToString(prog[:]) || fs.Miner.Archive == nil || fs.Miner.Archive.Binary != "dir/xmrig" || fs.Miner.Archive.Size != int64(len(archive)) {
		t.Errorf("resolved %+v %+v", fs.Miner, fs.Miner.Archive)
	}
	fs = &flightsheet.FlightSheet{Name: "s", Miner: flightsheet.Miner{Name: "xmrig", Version: "6.27.0"}}
	if err := s.Resolve(fs); err == nil || !strings.Contains(err.Error(), "it has 6.26.0") {
		t.Errorf("unknown version: %v", err)
	}
	// A sheet with a path is not the catalogue's business.
	y := []byte("name: p\ncoin: X\nalgorithm: a\nminer: {name: xmrig, path: /m/x, sha256: " + strings.Repeat("a", 64) + "}\npools: [{url: 'stratum+tcp://a:1', user: w}]\n")
	if out, err := s.ResolveYAML(y); err != nil || !bytes.Equal(out, y) {
		t.Errorf("path sheet changed: %v\n%s", err, out)
	}
	if _, err := s.Add(&quarryv1.AddMinerHeader{Name: "xmrig-mo", Version: "1"}, bytes.NewReader(archive), "ann"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a name with '-': %v", err)
	}
}
