package minerapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi"
	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

func endpointOf(t testing.TB, addr string) minerapi.Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return minerapi.Endpoint{Host: host, Port: p}
}

func TestHTTPBadReplies(t *testing.T) {
	huge := bytes.Repeat([]byte(" "), 2<<20)
	summary := recorded.MustGet(recorded.TrexSummary)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []error
		notWant error
	}{
		{"garbage", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>nginx</html>")) },
			[]error{minerapi.ErrBadReply}, minerapi.ErrUnreachable},
		{"empty", func(w http.ResponseWriter, _ *http.Request) {},
			[]error{minerapi.ErrUnreachable}, minerapi.ErrBadReply},
		{"truncated", func(w http.ResponseWriter, _ *http.Request) { w.Write(summary[:len(summary)/2]) },
			[]error{minerapi.ErrBadReply}, nil},
		{"huge", func(w http.ResponseWriter, _ *http.Request) { w.Write(huge) },
			[]error{minerapi.ErrTooLarge, minerapi.ErrBadReply}, minerapi.ErrUnreachable},
		{"slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, []error{minerapi.ErrUnreachable, context.DeadlineExceeded}, minerapi.ErrBadReply},
		{"server error", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", 500) },
			[]error{minerapi.ErrBadReply}, nil},
		{"json but not trex", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"hello":"world"}`)) },
			[]error{minerapi.ErrBadReply}, minerapi.ErrNoHashrate},
		{"wrong types", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"hashrate":true,"version":"1"}`)) },
			[]error{minerapi.ErrBadReply}, nil},
		{"negative hashrate", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"hashrate":-5,"version":"1"}`)) },
			[]error{minerapi.ErrBadReply}, nil},
		{"no hashrate", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"version":"0.26.8","algorithm":"kawpow"}`))
		},
			[]error{minerapi.ErrNoHashrate}, minerapi.ErrUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			c := minerapi.NewClient(minerapi.WithTimeout(200*time.Millisecond), minerapi.WithMaxBytes(1<<20))
			st, err := newAdapter(t, "trex", minerapi.Options{Client: c}).Stats(context.Background(), endpointOf(t, srv.Listener.Addr().String()))
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want %v", err, w)
				}
			}
			if tc.notWant != nil && errors.Is(err, tc.notWant) {
				t.Errorf("err = %v, must not be %v", err, tc.notWant)
			}
			if errors.Is(err, minerapi.ErrNoHashrate) && (st.Version != "0.26.8" || st.TotalHashrate != 0) {
				t.Errorf("partial stats = %+v, want version kept and no made-up hashrate", st)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := endpointOf(t, ln.Addr().String())
	ln.Close()
	for _, name := range []string{"xmrig", "trex", "lolminer", "gminer", "cgminer", "bmminer"} {
		_, err := newAdapter(t, name, minerapi.Options{}).Stats(context.Background(), ep)
		if !errors.Is(err, minerapi.ErrUnreachable) || errors.Is(err, minerapi.ErrBadReply) {
			t.Errorf("%s: err = %v, want unreachable (not bad reply)", name, err)
		}
	}
}

// tcpServer answers every connection with handle; it stops with the test.
func tcpServer(t *testing.T, handle func(net.Conn)) minerapi.Endpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 512)
				_, _ = c.Read(buf)
				go func() { <-done; c.Close() }()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	return endpointOf(t, ln.Addr().String())
}

func TestCGMinerBadReplies(t *testing.T) {
	tests := []struct {
		name   string
		handle func(net.Conn)
		want   error
	}{
		{"garbage", func(c net.Conn) { c.Write([]byte("STATUS=S,When=1|garbage\x00")) }, minerapi.ErrBadReply},
		{"empty close", func(c net.Conn) {}, minerapi.ErrUnreachable},
		{"only NUL", func(c net.Conn) { c.Write([]byte{0}) }, minerapi.ErrUnreachable},
		{"truncated", func(c net.Conn) { c.Write(recorded.MustGet(recorded.CGMinerSummary)[:100]) }, minerapi.ErrBadReply},
		{"huge", func(c net.Conn) {
			chunk := bytes.Repeat([]byte("{"), 64<<10)
			for range 40 {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}, minerapi.ErrTooLarge},
		{"slow", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }, context.DeadlineExceeded},
		{"error status", func(c net.Conn) {
			c.Write([]byte(`{"STATUS":[{"STATUS":"E","When":1,"Code":45,"Msg":"Access denied to 'summary' command","Description":"cgminer 4.10.0"}],"id":1}` + "\x00"))
		}, minerapi.ErrBadReply},
		{"no summary", func(c net.Conn) { c.Write([]byte(`{"STATUS":[{"STATUS":"S"}],"id":1}` + "\x00")) }, minerapi.ErrBadReply},
		{"nul but socket left open", func(c net.Conn) {
			c.Write(append(recorded.MustGet(recorded.CGMinerSummary), 0))
			_, _ = io.Copy(io.Discard, c)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := tcpServer(t, tc.handle)
			// A small limit keeps the oversized case well inside the
			// deadline on a loaded machine.
			c := minerapi.NewClient(minerapi.WithTimeout(300*time.Millisecond), minerapi.WithMaxBytes(64<<10))
			st, err := newAdapter(t, "cgminer", minerapi.Options{Client: c}).Stats(context.Background(), ep)
			if tc.want == nil {
				if err != nil || st.TotalHashrate == 0 {
					t.Fatalf("Stats = %+v, %v; want a reading", st, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// A miner that answered is never "unreachable"; one that did
			// not answer is never a bad reply.
			answered := errors.Is(err, minerapi.ErrBadReply)
			if answered == errors.Is(err, minerapi.ErrUnreachable) {
				t.Fatalf("err = %v is both or neither of unreachable and bad reply", err)
			}
			if tc.name == "error status" && !strings.Contains(err.Error(), "Access denied") {
				t.Errorf("err = %v, want the miner's message", err)
			}
		})
	}
}
