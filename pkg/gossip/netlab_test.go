package gossip

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quarryfleet/quarry/pkg/testsupport"
)

// netLab is a private network of namespaces: a hub namespace with bridges
// br0 and br1, and one namespace per node joined to br0 by a veth pair,
// addressed 10.77.0.(i+1)/24. Moving a node's hub port to br1 cuts it off
// from br0 while letting the cut-off group still reach each other.
type netLab struct {
	t         testing.TB
	prefix    string
	hub       string
	nodes     []string
	procs     []*labProc
	warned    bool
	destroyed bool
}

var labSeq atomic.Int32

var staleLab = regexp.MustCompile(`^qg(\d+)x\d+-`)

func requireNetns(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		testsupport.Missing(t, "root on Linux for network namespaces", "run the tests as root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testsupport.Missing(t, tool, "apt-get install iproute2")
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		testsupport.Missing(t, fmt.Sprintf("a usable ip netns (%v: %s)", err, out), "run as root on a kernel with network namespaces")
	}
}

// sweepStaleLabs removes namespaces left by a test process that died
// before its cleanup ran.
func sweepStaleLabs() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := staleLab.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// newNetLab builds the lab. Every node's egress drops lossPct of packets
// and, where the kernel has sch_netem, delays them by delay. Without netem
// (some container kernels) loss falls back to an iptables statistic rule and
// the delay is left out, which the test log says.
func newNetLab(t testing.TB, n int, lossPct float64, delay time.Duration) *netLab {
	t.Helper()
	requireNetns(t)
	sweepStaleLabs()
	l := &netLab{t: t, prefix: fmt.Sprintf("qg%dx%d", os.Getpid(), labSeq.Add(1))}
	l.hub = l.prefix + "-hub"
	t.Cleanup(l.destroy)
	l.ip("netns", "add", l.hub)
	l.ip("-n", l.hub, "link", "set", "lo", "up")
	for _, br := range []string{"br0", "br1"} {
		l.ip("-n", l.hub, "link", "add", br, "type", "bridge")
		l.ip("-n", l.hub, "link", "set", br, "up")
	}
	for i := range n {
		ns := fmt.Sprintf("%s-%d", l.prefix, i)
		l.ip("netns", "add", ns)
		l.nodes = append(l.nodes, ns)
		port := fmt.Sprintf("v%d", i)
		l.ip("-n", l.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip("-n", l.hub, "link", "set", port, "master", "br0", "up")
		l.ip("-n", ns, "addr", "add", l.addr(i)+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
		if lossPct > 0 || delay > 0 {
			l.impair(ns, lossPct, delay)
		}
	}
	return l
}

func (l *netLab) impair(ns string, lossPct float64, delay time.Duration) {
	l.t.Helper()
	netem := []string{"netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
		"loss", fmt.Sprintf("%g%%", lossPct), "delay", fmt.Sprintf("%dms", delay.Milliseconds())}
	out, err := exec.Command("ip", netem...).CombinedOutput()
	if err == nil {
		return
	}
	if !strings.Contains(string(out), "qdisc kind is unknown") {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(netem, " "), err, out)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		testsupport.Missing(l.t, "iptables (this kernel lacks sch_netem)", "apt-get install iptables")
	}
	if !l.warned {
		l.warned = true
		l.t.Logf("kernel lacks sch_netem: emulating %g%% loss with iptables statistic, no added delay", lossPct)
	}
	if lossPct > 0 {
		l.run("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-o", "eth0", "-m", "statistic",
			"--mode", "random", "--probability", fmt.Sprintf("%g", lossPct/100), "-j", "DROP")
	}
}

// dropped sums packets dropped by the iptables loss rules (0 with netem).
func (l *netLab) dropped() int {
	total := 0
	for _, ns := range l.nodes {
		out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-L", "OUTPUT", "-v", "-x", "-n").Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) > 2 && f[2] == "DROP" {
				n, _ := strconv.Atoi(f[0])
				total += n
			}
		}
	}
	return total
}

func (l *netLab) addr(i int) string { return fmt.Sprintf("10.77.0.%d", i+1) }

func (l *netLab) ip(args ...string) { l.t.Helper(); l.run("ip", args...) }

func (l *netLab) run(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// cut moves nodes onto the isolated bridge; heal moves them back.
func (l *netLab) cut(nodes ...int) { l.setBridge("br1", nodes) }

func (l *netLab) heal(nodes ...int) { l.setBridge("br0", nodes) }

func (l *netLab) setBridge(br string, nodes []int) {
	l.t.Helper()
	for _, i := range nodes {
		l.ip("-n", l.hub, "link", "set", fmt.Sprintf("v%d", i), "master", br)
	}
}

func (l *netLab) destroy() {
	if l.destroyed {
		return
	}
	l.destroyed = true
	for _, p := range l.procs {
		p.stop()
	}
	for _, ns := range append(l.nodes, l.hub) {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			l.t.Logf("cleanup: ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

// labProc is a gossipnode child running in one namespace.
type labProc struct {
	name   string
	cmd    *exec.Cmd
	stderr *strings.Builder
	done   chan struct{}

	mu     sync.Mutex
	lines  []nodeLine
	status map[string]string // member -> last event
}

type nodeLine struct {
	Event  string `json:"ev"`
	Member string `json:"member"`
	Addr   string `json:"addr"`
	At     int64  `json:"at"`
}

// startNodes runs a gossipnode in every namespace, all joining node 0.
func (l *netLab) startNodes(bin, key string, extra ...string) {
	l.t.Helper()
	for i, ns := range l.nodes {
		args := []string{"netns", "exec", ns, bin,
			"-name", nodeName("n", i), "-bind", l.addr(i), "-key", key,
			"-join", l.addr(0) + ":7946"}
		args = append(args, extra...)
		p := &labProc{name: nodeName("n", i), cmd: exec.Command("ip", args...), stderr: &strings.Builder{},
			done: make(chan struct{}), status: map[string]string{}}
		p.cmd.Stderr = p.stderr
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			l.t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			l.t.Fatal(err)
		}
		l.procs = append(l.procs, p)
		go p.read(bufio.NewScanner(out))
	}
}

func (p *labProc) read(sc *bufio.Scanner) {
	defer close(p.done)
	for sc.Scan() {
		var ln nodeLine
		if json.Unmarshal(sc.Bytes(), &ln) != nil {
			continue
		}
		p.mu.Lock()
		p.lines = append(p.lines, ln)
		if ln.Member != "" {
			p.status[ln.Member] = ln.Event
		}
		p.mu.Unlock()
	}
}

func (p *labProc) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
		_ = p.cmd.Wait()
	}
}

// seesAlive reports whether p's latest view of every named member is alive
// (joined or updated since any failure or leave).
func (p *labProc) seesAlive(members ...string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range members {
		if s := p.status[m]; s != "join" && s != "update" {
			return false
		}
	}
	return true
}

func (p *labProc) seesFailed(member string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status[member] == "failed"
}

// failures lists every "failed" event p reported.
func (p *labProc) failures() []nodeLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []nodeLine
	for _, ln := range p.lines {
		if ln.Event == "failed" {
			out = append(out, ln)
		}
	}
	return out
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// gossipnodeBinary builds internal/gossipnode once per test process.
func gossipnodeBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gossipnode")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "gossipnode")
		gobin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go toolchain needed to build gossipnode: %w", err)
			return
		}
		out, err := exec.Command(gobin, "build", "-o", builtBin, "./internal/gossipnode").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build gossipnode: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}
