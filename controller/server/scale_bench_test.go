package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/controller/fleet/fleetbench"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// BenchmarkFleet100k measures the controller with a large fleet in its
// store (100,000 rigs unless QUARRY_BENCH_FLEET_RIGS says otherwise), each
// with a six-GPU latest report, built through the fleet package's own
// enrolment and ingest paths into a real bbolt file. Building takes a
// while, so it runs only under -bench.
//
//   - ColdStart: the real quarry-controller binary started on that data
//     dir, timed from exec to its first 200 from /healthz; its anonymous
//     and total resident memory then, also per rig beyond an empty
//     controller's.
//   - ListRigs: one default page, and a walk over every page, over mutual
//     TLS with a real gRPC server and an admin token.
//   - Overview: the dashboard's overview JSON (first page) over HTTP with a
//     signed-in session.
func BenchmarkFleet100k(b *testing.B) {
	n, err := fleetbench.Rigs()
	if err != nil {
		b.Fatal(err)
	}
	dataDir := b.TempDir()
	start := time.Now()
	if err := fleetbench.Build(context.Background(), filepath.Join(dataDir, DBFile), n); err != nil {
		b.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dataDir, DBFile)); err == nil {
		b.Logf("built %d rigs in %v (%d MiB)", n, time.Since(start).Round(time.Millisecond), st.Size()>>20)
	}

	b.Run("ColdStart", func(b *testing.B) {
		bin := controllerBinary(b)
		empty := b.TempDir()
		// The first start on a data dir creates its CA and credentials;
		// those are one-off, so each dir is started once before timing.
		startController(b, bin, empty)
		startController(b, bin, dataDir)
		base := startController(b, bin, empty)
		var last startFigures
		for b.Loop() {
			last = startController(b, bin, dataDir)
			// Only the last start is reported; each is logged so that a
			// run of several shows their spread.
			b.Logf("start: %d ms to serve (%d ms CPU), %.1f anon MiB, %.0f anon B/rig", last.ready.Milliseconds(),
				last.cpu.Milliseconds(), float64(last.rssAnon)/(1<<20), float64(last.rssAnon-base.rssAnon)/float64(n))
		}
		b.ReportMetric(float64(last.ready.Milliseconds()), "ms-to-serve")
		b.ReportMetric(float64(last.rssAnon)/(1<<20), "anon-MiB")
		b.ReportMetric(float64(last.vmRSS)/(1<<20), "rss-MiB")
		b.ReportMetric(float64(base.rssAnon)/(1<<20), "empty-anon-MiB")
		b.ReportMetric(float64(last.rssAnon-base.rssAnon)/float64(n), "anon-B/rig")
	})

	tc := startTestController(b, func(c *Config) {
		c.DataDir = dataDir
		c.Gossip.Enabled = false
		c.LocalToken = false
	})
	client := adminConn(b, tc, "")

	b.Run("ListRigsPage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.ListRigs(context.Background(), &quarryv1.ListRigsRequest{})
			if err != nil {
				b.Fatal(err)
			}
			if len(resp.Rigs) != min(n, fleet.DefaultRigPage) {
				b.Fatalf("page of %d rigs, want %d", len(resp.Rigs), min(n, fleet.DefaultRigPage))
			}
		}
	})
	b.Run("ListRigsWalk", func(b *testing.B) {
		b.ReportAllocs()
		var pages int
		for b.Loop() {
			got, token := 0, ""
			pages = 0
			for {
				resp, err := client.ListRigs(context.Background(), &quarryv1.ListRigsRequest{PageToken: token})
				if err != nil {
					b.Fatal(err)
				}
				got += len(resp.Rigs)
				pages++
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			if got != n {
				b.Fatalf("walked %d rigs, want %d", got, n)
			}
		}
		b.ReportMetric(float64(pages), "pages")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pages)/1e6, "ms/page")
	})

	b.Run("Overview", func(b *testing.B) {
		cookies := dashboardLogin(b, tc)
		b.ReportAllocs()
		var size int
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+tc.HTTPAddr()+"/api/overview", nil)
			for _, c := range cookies {
				req.AddCookie(c)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("overview: %d %v %.200s", resp.StatusCode, err, body)
			}
			size = len(body)
		}
		b.ReportMetric(float64(size), "bytes/resp")
	})
}

func dashboardLogin(b *testing.B, tc *testController) []*http.Cookie {
	b.Helper()
	tok, err := os.ReadFile(filepath.Join(tc.dir, AdminTokenFile))
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.Post("http://"+tc.HTTPAddr()+"/api/login", "application/json",
		strings.NewReader(`{"token":"`+strings.TrimSpace(string(tok))+`"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("login: %v %v", err, resp)
	}
	resp.Body.Close()
	return resp.Cookies()
}

// controllerBinary is quarry-controller built from this tree with the
// flags of `make build`. A binary already in bin/ may predate the code
// under test, so it is not used.
func controllerBinary(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "quarry-controller")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w", "-o", p, "../cmd/quarry-controller")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build quarry-controller: %v\n%s", err, out)
	}
	return p
}

type startFigures struct {
	ready time.Duration
	// cpu is the CPU time the process had used when it first served,
	// which a busy machine stretches less than the wall time.
	cpu            time.Duration
	rssAnon, vmRSS int64
}

// startController runs the controller binary on dataDir until its health
// check answers, reads its memory, and stops it.
func startController(b *testing.B, bin, dataDir string) startFigures {
	b.Helper()
	grpcAddr, httpAddr := freeAddr(b), freeAddr(b)
	cfg := filepath.Join(b.TempDir(), "controller.yaml")
	yaml := fmt.Sprintf("data_dir: %s\ngrpc_addr: %s\nhttp_addr: %s\nlocal_token: false\nlog_level: warn\ngossip:\n  enabled: false\n", dataDir, grpcAddr, httpAddr)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Stderr = os.Stderr
	b.StartTimer()
	started := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		// Stopping is not part of a start: the timer runs again after.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		b.StartTimer()
	}()
	client := &http.Client{Timeout: time.Second}
	deadline := started.Add(2 * time.Minute)
	for {
		resp, err := client.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("controller on %s not healthy after 2 minutes: %v", dataDir, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	fig := startFigures{ready: time.Since(started)}
	b.StopTimer()
	fig.rssAnon, fig.vmRSS = procMemory(b, cmd.Process.Pid)
	fig.cpu = procCPU(b, cmd.Process.Pid)
	return fig
}

// procCPU reads the user and system time of a process from
// /proc/PID/stat, in the kernel's clock ticks of 1/100 s.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name in parentheses may hold spaces; fields after it
	// are numbered from the state, field 3, so utime and stime (14, 15)
	// are its 11th and 12th.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func freeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// procMemory reads RssAnon and VmRSS, in bytes, from /proc/PID/status.
func procMemory(b *testing.B, pid int) (anon, rss int64) {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "RssAnon":
			anon = kb << 10
		case "VmRSS":
			rss = kb << 10
		}
	}
	return anon, rss
}
