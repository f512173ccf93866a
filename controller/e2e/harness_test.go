package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
	"google.golang.org/protobuf/proto"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "quarry-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bins builds the binaries once per test run.
func bins(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+"/",
			"github.com/quarryfleet/quarry/agent/cmd/quarry-agent",
			"github.com/quarryfleet/quarry/controller/cmd/quarry-controller",
			"github.com/quarryfleet/quarry/controller/cmd/quarryctl",
			"github.com/quarryfleet/quarry/controller/cmd/quarry-sim")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// localPorts is shared by every test in this binary: the controllers,
// agents and gossip nodes they start all bind in this one host's port
// space, so a port handed to one must never be handed to another.
var localPorts = testsupport.NewPorts()

// freePort is a loopback address for a process the test starts.
func freePort(t *testing.T) string {
	t.Helper()
	return localPorts.Addr(t, "127.0.0.1")
}

type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func start(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(filepath.Join(bins(t), name), args...)
	cmd.Dir = dir
	p := &proc{t: t, name: name, cmd: cmd, log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	cmd.Stdout = lockedWriter{p.mu, p.log}
	cmd.Stderr = lockedWriter{p.mu, p.log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("%s exited %d after SIGTERM:\n%s", p.name, code, p.output())
	}
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, what, timeout, cond)
}

type controller struct {
	*proc
	dir, grpc, http string
}

func startController(t *testing.T, dir, grpcAddr, httpAddr string, extra ...string) *controller {
	t.Helper()
	args := append([]string{"-grpc-addr", grpcAddr, "-http-addr", httpAddr, "-report-interval", "1s"}, extra...)
	p := start(t, dir, "quarry-controller", args...)
	c := &controller{proc: p, dir: dir, grpc: grpcAddr, http: httpAddr}
	eventually(t, "controller ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return c
}

// ctl runs quarryctl against the controller using the local credentials.
func (c *controller) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"--controller", c.grpc, "--data-dir", filepath.Join(c.dir, "quarry-data"), "--config", filepath.Join(c.dir, "none.yaml")}, args...)
	cmd := exec.Command(filepath.Join(bins(t), "quarryctl"), full...)
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type rigJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Online   bool   `json:"online"`
	LastSeq  string `json:"lastSeq"`
	Reports  string `json:"reports"`
	SeqGaps  string `json:"seqGaps"`
	Revoked  bool   `json:"revoked"`
	Hostname string `json:"hostname"`
}

func (c *controller) rigs(t *testing.T) []rigJSON {
	t.Helper()
	out, err := c.ctl(t, "rigs", "list", "-o", "json")
	if err != nil {
		t.Fatalf("rigs list: %v\n%s", err, out)
	}
	var resp struct {
		Rigs []rigJSON `json:"rigs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("rigs list json: %v\n%s", err, out)
	}
	return resp.Rigs
}

func (c *controller) newToken(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.ctl(t, append([]string{"token", "create"}, args...)...)
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	return strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
}

func startAgent(t *testing.T, dir, controllerAddr, token string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"-controller", controllerAddr, "-data-dir", filepath.Join(dir, "agent-data"), "-token-file", "", "-report-interval", "100ms"}, extra...)
	if token != "" {
		args = append(args, "-token", token)
	}
	return start(t, dir, "quarry-agent", args...)
}

// agentCounts reads a stopped agent's database: how many reports it made
// and how many are still waiting for an acknowledgement.
func agentCounts(t *testing.T, dir string) (made uint64, buffered int) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "agent-data", "agent.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		made = store.ParseU64(tx.Bucket([]byte("meta")).Get([]byte("next_seq"))) - 1
		buffered = tx.Bucket([]byte("reports")).Stats().KeyN
		return nil
	})
	return made, buffered
}

// firstBufferedSeq reads a stopped agent's database for the lowest
// sequence number still waiting for an acknowledgement (0 when none).
func firstBufferedSeq(t *testing.T, dir string) uint64 {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "agent-data", "agent.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var first uint64
	_ = db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket([]byte("reports")).Cursor().First(); k != nil {
			first = store.ParseU64(k)
		}
		return nil
	})
	return first
}

// checkNothingLost compares a stopped agent's own account with what the
// controller committed for its rig. A clean stop may leave the last few
// reports buffered (made after the stream closed, or acknowledged too late
// to record); they stay durable for the next start. What matters is that
// every report is either committed exactly once or still buffered, with
// the buffer continuing where the controller's sequence ends.
func checkNothingLost(t *testing.T, who, agentDir string, r rigJSON) {
	t.Helper()
	made, buffered := agentCounts(t, agentDir)
	last, reports, gaps := u(r.LastSeq), u(r.Reports), u(r.SeqGaps)
	if reports != last || gaps != 0 {
		t.Errorf("%s: controller has reports %d, last_seq %d, gaps %d: lost or duplicated reports", who, reports, last, gaps)
	}
	if last > made {
		t.Errorf("%s: controller committed seq %d but the agent made only %d", who, last, made)
	}
	if buffered == 0 {
		if last != made {
			t.Errorf("%s: agent made %d reports and buffers none, controller has only %d", who, made, last)
		}
		return
	}
	// A report made while the agent stops is expected; a backlog is not.
	if buffered > 3 {
		t.Errorf("%s: agent stopped with %d reports unacknowledged", who, buffered)
	}
	if first := firstBufferedSeq(t, agentDir); first > last+1 {
		t.Errorf("%s: controller ends at seq %d but the agent's buffer starts at %d: reports %d..%d lost", who, last, first, last+1, first-1)
	}
}

// linkDownBuffered is the largest buffered count the agent logged while
// its controller link was down.
func linkDownBuffered(p *proc) int {
	most := 0
	for line := range strings.SplitSeq(p.output(), "\n") {
		if !strings.Contains(line, "controller link down") {
			continue
		}
		_, after, ok := strings.Cut(line, " buffered=")
		if !ok {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(after, "%d", &n); err == nil && n > most {
			most = n
		}
	}
	return most
}

// lastSeqOnDisk reads a stopped controller's database for the last
// committed sequence number of the rig named name.
func lastSeqOnDisk(t *testing.T, dir, name string) uint64 {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "quarry-data", "quarry.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seq uint64
	found := false
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("rigs")).ForEach(func(_, v []byte) error {
			r := &quarryv1.Rig{}
			if proto.Unmarshal(v, r) == nil && r.Name == name {
				seq, found = r.LastSeq, true
			}
			return nil
		})
	})
	if !found {
		t.Fatalf("rig %q not in the controller's database", name)
	}
	return seq
}
