package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quarryfleet/quarry/pkg/minerapi/internal/recorded"
)

// cues is the misbehaviour in effect; it is rebuilt from flags plus the
// control file on every read.
type cues struct {
	scale    float64
	noshares bool
	hot      float64
	garbage  bool
	hang     bool
	warming  bool // hashrates are null, as in a miner's first seconds
}

type miner struct {
	api      string
	token    string
	exitCode int
	stderr   io.Writer

	mu      sync.Mutex
	base    cues // from flags
	file    cues // flags plus control file
	sigDrop bool // SIGUSR1 toggle
	shares  uint64
	started time.Time
}

func (m *miner) cues() cues {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.file
	if m.sigDrop {
		c.scale *= 0.1
	}
	return c
}

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("fakeminer", flag.ContinueOnError)
	fl.SetOutput(stderr)
	api := fl.String("api", "xmrig", "API to serve: xmrig|trex|lolminer|lolminer-new|gminer|cgminer|bmminer|antminer-l3plus|antminer-s17|innosilicon-a9|bosminer|xmrig2|wildrig|lolminer-041|phoenix|ttminer|ccminer|cpuminer|srbminer|srbminer-multi|rigel|nbminer|nanominer|miniz|whatsminer")
	listen := fl.String("listen", "127.0.0.1:0", "listen address")
	portFile := fl.String("port-file", "", "write the bound address to this file")
	token := fl.String("token", "", "require this Bearer token on HTTP APIs")
	control := fl.String("control", "", "control file re-read every 100ms")
	scale := fl.Float64("hashrate", 1, "hashrate scale")
	noshares := fl.Bool("noshares", false, "share counters stop growing")
	hot := fl.Float64("hot", 0, "first GPU temperature (0 = as recorded)")
	garbage := fl.Bool("garbage", false, "answer garbage")
	hang := fl.Bool("hang", false, "never answer")
	crashAfter := fl.Duration("crash-after", 0, "crash after this long")
	exitCode := fl.Int("exit-code", 3, "exit status of a crash")
	ignoreTerm := fl.Bool("ignore-sigterm", false, "ignore SIGTERM and SIGINT")
	logEvery := fl.Duration("log-interval", time.Second, "status line interval")
	startDelay := fl.Duration("startup-delay", 0, "wait before listening")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if _, ok := apis[*api]; !ok {
		fmt.Fprintf(stderr, "fakeminer: unknown -api %q\n", *api)
		return 2
	}
	if *logEvery <= 0 {
		*logEvery = time.Second
	}

	m := &miner{
		api: *api, token: *token, exitCode: *exitCode, stderr: stderr, started: time.Now(),
		base: cues{scale: *scale, noshares: *noshares, hot: *hot, garbage: *garbage, hang: *hang},
	}
	m.file = m.base

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	fmt.Fprintf(stdout, "fakeminer %s starting (pid %d)\n", *api, os.Getpid())
	if *startDelay > 0 {
		time.Sleep(*startDelay)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "fakeminer: listen: %v\n", err)
		return 1
	}
	defer ln.Close()
	addr := ln.Addr().String()
	fmt.Fprintf(stdout, "fakeminer %s API listening on %s\n", *api, addr)
	if *portFile != "" {
		if err := writeAtomic(*portFile, []byte(addr)); err != nil {
			fmt.Fprintf(stderr, "fakeminer: port file: %v\n", err)
			return 1
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.serve(ctx, ln)

	var crash <-chan time.Time
	if *crashAfter > 0 {
		crash = time.After(*crashAfter)
	}
	var poll <-chan time.Time
	if *control != "" {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		poll = t.C
		m.readControl(*control)
	}
	logT := time.NewTicker(*logEvery)
	defer logT.Stop()

	for {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				m.mu.Lock()
				m.sigDrop = !m.sigDrop
				fmt.Fprintf(stderr, "fakeminer: SIGUSR1: hashrate drop %v\n", m.sigDrop)
				m.mu.Unlock()
			case syscall.SIGUSR2:
				fmt.Fprintf(stderr, "fakeminer: SIGUSR2: simulated crash\n")
				return *exitCode
			default:
				if *ignoreTerm {
					fmt.Fprintf(stderr, "fakeminer: ignoring %v\n", s)
					continue
				}
				fmt.Fprintf(stdout, "fakeminer: %v received, shutting down\n", s)
				return 0
			}
		case <-crash:
			fmt.Fprintf(stderr, "fakeminer: simulated crash after %v\n", *crashAfter)
			return *exitCode
		case <-poll:
			if code, exit := m.readControl(*control); exit {
				return code
			}
		case <-logT.C:
			c := m.cues()
			m.mu.Lock()
			if !c.noshares && !c.hang {
				m.shares++
			}
			shares := m.shares
			m.mu.Unlock()
			if c.hang {
				continue
			}
			fmt.Fprintf(stdout, "%s fakeminer %s: speed x%.2f, accepted +%d, uptime %ds\n",
				time.Now().UTC().Format(time.RFC3339), *api, c.scale, shares, int(time.Since(m.started).Seconds()))
		}
	}
}

// readControl applies the control file; it returns (code, true) when a cue
// says to exit.
func (m *miner) readControl(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(m.stderr, "fakeminer: control file: %v\n", err)
		return 0, false
	}
	c := m.base
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		arg := func() (float64, bool) {
			if len(f) < 2 {
				return 0, false
			}
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
		switch f[0] {
		case "crash":
			fmt.Fprintf(m.stderr, "fakeminer: control: simulated crash\n")
			return m.exitCode, true
		case "exit":
			v, _ := arg()
			fmt.Fprintf(m.stderr, "fakeminer: control: exit %d\n", int(v))
			return int(v), true
		case "hang":
			c.hang = true
		case "garbage":
			c.garbage = true
		case "warming":
			c.warming = true
		case "noshares":
			c.noshares = true
		case "hashrate":
			if v, ok := arg(); ok && v >= 0 {
				c.scale = v
			}
		case "hot":
			if v, ok := arg(); ok {
				c.hot = v
			}
		default:
			fmt.Fprintf(m.stderr, "fakeminer: control: unknown cue %q\n", f[0])
		}
	}
	m.mu.Lock()
	if c != m.file {
		fmt.Fprintf(m.stderr, "fakeminer: control: now %+v\n", c)
	}
	m.file = c
	m.mu.Unlock()
	return 0, false
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".port-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// garbageReply is what a miner with a corrupted API buffer might send.
var garbageReply = []byte("\x1b[31mGPU0 HW error\x00\xff\xfe{{\"hashrate\":[nan,}]]\n")

// apiSpec says what one miner serves and which fields carry its hashrates,
// share counters and temperatures.
type apiSpec struct {
	tcp      bool
	raw      bool              // raw TCP: any request gets the "" route's payload, no NUL
	text     bool              // ccminer text API: "cmd" or "cmd|" selects the route
	routes   map[string]string // HTTP path or cgminer command -> payload
	rate     func(parent, key string) bool
	accepted func(key string) bool
	temp     func(key string) bool
}

func keys(ks ...string) func(string) bool {
	set := map[string]bool{}
	for _, k := range ks {
		set[k] = true
	}
	return func(k string) bool { return set[k] }
}

var cgRateRe = regexp.MustCompile(`^([KMGT]HS ([0-9]+[smh]|av)|chain_rate\d+|total_rate)$`)

var apis = map[string]apiSpec{
	"xmrig": {
		routes: map[string]string{"/2/summary": recorded.XmrigSummary, "/1/summary": recorded.XmrigSummary,
			"/api.json": recorded.XmrigSummary, "/2/backends": recorded.XmrigBackends},
		rate: func(parent, key string) bool {
			return key == "hashrate" || (parent == "hashrate" && (key == "total" || key == "highest"))
		},
		accepted: keys("accepted", "shares_good", "shares_total", "hashes_total"),
		temp:     keys("temperature"),
	},
	"trex": {
		routes: map[string]string{"/summary": recorded.TrexSummary},
		rate: func(_, key string) bool {
			return keys("hashrate", "hashrate_minute", "hashrate_hour", "hashrate_day", "hashrate_instant")(key)
		},
		accepted: keys("accepted_count"),
		temp:     keys("temperature"),
	},
	"lolminer": {
		routes:   map[string]string{"/summary": recorded.Lolminer1x, "/": recorded.Lolminer1x},
		rate:     func(_, key string) bool { return key == "Performance_Summary" || key == "Performance" },
		accepted: keys("Accepted", "Submitted", "Session_Accepted", "Session_Submitted"),
		temp:     keys("Temp (deg C)"),
	},
	"lolminer-new": {
		routes:   map[string]string{"/summary": recorded.LolminerNew, "/": recorded.LolminerNew},
		rate:     func(_, key string) bool { return key == "Total_Performance" || key == "Worker_Performance" },
		accepted: keys("Total_Accepted", "Worker_Accepted"),
		temp:     keys("Core_Temp"),
	},
	"gminer": {
		routes:   map[string]string{"/stat": recorded.GminerStat},
		rate:     func(_, key string) bool { return key == "speed" || key == "pool_speed" },
		accepted: keys("accepted_shares", "total_accepted_shares"),
		temp:     keys("temperature"),
	},
	"cgminer": {
		tcp:      true,
		routes:   map[string]string{"summary": recorded.CGMinerSummary, "devs": recorded.CGMinerDevs, "pools": recorded.CGMinerPools},
		rate:     func(_, key string) bool { return cgRateRe.MatchString(key) },
		accepted: keys("Accepted"),
		temp:     keys("Temperature"),
	},
	"xmrig2": {
		routes: map[string]string{"/": recorded.Xmrig2Summary},
		rate: func(parent, key string) bool {
			return parent == "hashrate" && (key == "total" || key == "threads" || key == "highest")
		},
		accepted: keys("shares_good", "shares_total"),
		temp:     keys("temp"),
	},
	"wildrig": {
		routes: map[string]string{"/": recorded.WildRigSummary},
		rate: func(parent, key string) bool {
			return parent == "hashrate" && (key == "total" || key == "threads" || key == "highest")
		},
		accepted: keys("shares_good", "shares_total"),
		temp:     keys("temp"),
	},
	"lolminer-041": {
		tcp: true, raw: true,
		routes: map[string]string{"": recorded.Lolminer041},
		rate: func(_, key string) bool {
			return strings.HasPrefix(key, "TotalSpeed(") || strings.HasPrefix(key, "Speed(")
		},
		accepted: keys(),
		temp:     keys(),
	},
	"ccminer": {
		tcp: true, text: true,
		routes: map[string]string{"summary": recorded.CCMinerSummary, "pool": recorded.CCMinerPool,
			"hwinfo": recorded.CCMinerHWInfo},
	},
	"cpuminer": {
		tcp: true, text: true,
		routes: map[string]string{"summary": recorded.CPUMinerSummary, "threads": recorded.CPUMinerThreads},
	},
	"whatsminer": {
		tcp: true,
		routes: map[string]string{"summary": recorded.WhatsminerSummary, "pools": recorded.WhatsminerPools,
			"stats": recorded.WhatsminerBadCmd},
		rate:     func(_, key string) bool { return cgRateRe.MatchString(key) },
		accepted: keys("Accepted"),
		temp:     keys("Temperature"),
	},
	"srbminer": {
		routes: map[string]string{"/": recorded.SRBMinerMulti},
		rate: func(parent, key string) bool {
			return strings.HasPrefix(key, "hashrate_total") || parent == "gpu_hashrate"
		},
		accepted: keys("accepted", "total"),
		temp:     keys("temperature"),
	},
	"srbminer-multi": {
		routes: map[string]string{"/": recorded.SRBMinerMulti363},
		rate: func(parent, _ string) bool {
			return parent == "hashrate" || parent == "gpu" || parent == "cpu"
		},
		accepted: keys("accepted", "total"),
		temp:     keys("temperature"),
	},
	"rigel": {
		routes:   map[string]string{"/": recorded.Rigel},
		rate:     func(parent, _ string) bool { return parent == "hashrate" || parent == "pool_hashrate" },
		accepted: keys("accepted"),
		temp:     keys("core_temperature"),
	},
	"nbminer": {
		routes: map[string]string{"/api/v1/status": recorded.NBMinerStatus},
		rate: func(_, key string) bool {
			return strings.HasPrefix(key, "hashrate") || strings.HasPrefix(key, "total_hashrate")
		},
		accepted: keys("accepted_shares"),
		temp:     keys("temperature"),
	},
	"nanominer": {
		routes:   map[string]string{"/stats": recorded.NanominerStats},
		rate:     func(_, key string) bool { return key == "Hashrate" },
		accepted: keys("Accepted"),
		temp:     keys("Temperature"),
	},
	"miniz": {
		tcp: true, raw: true,
		routes:   map[string]string{"": recorded.MiniZGetstat},
		rate:     func(_, key string) bool { return key == "speed_sps" },
		accepted: keys("accepted_shares"),
		temp:     keys("temperature"),
	},
	"phoenix": {
		tcp: true, raw: true,
		routes:   map[string]string{"": recorded.PhoenixGetstat1},
		rate:     func(string, string) bool { return false }, // rates are inside ";" strings
		accepted: keys(),
		temp:     keys(),
	},
	"ttminer": {
		tcp: true, raw: true,
		routes:   map[string]string{"": recorded.TTMinerGetstat1},
		rate:     func(string, string) bool { return false },
		accepted: keys(),
		temp:     keys(),
	},
	"antminer-l3plus": {
		tcp:      true,
		routes:   map[string]string{"stats": recorded.AntminerL3PlusStats, "pools": recorded.AntminerL3PlusPools},
		rate:     func(_, key string) bool { return cgRateRe.MatchString(key) },
		accepted: keys("Accepted"),
		temp:     func(k string) bool { return strings.HasPrefix(k, "temp2_") },
	},
	"antminer-s17": {
		tcp:      true,
		routes:   map[string]string{"stats": recorded.AntminerS17Stats, "pools": recorded.AntminerS17Pools},
		rate:     func(_, key string) bool { return cgRateRe.MatchString(key) },
		accepted: keys("Accepted"),
		temp:     func(k string) bool { return strings.HasPrefix(k, "temp2_") },
	},
	"innosilicon-a9": {
		tcp:      true,
		routes:   map[string]string{"stats": recorded.InnosiliconA9Stats, "pools": recorded.InnosiliconA9Pools},
		rate:     func(_, key string) bool { return cgRateRe.MatchString(key) },
		accepted: keys("Accepted"),
		temp:     keys("Temp"),
	},
	"bosminer": {
		tcp: true,
		routes: map[string]string{"summary": recorded.BOSminerSummary, "pools": recorded.BOSminerPools,
			"version": recorded.BOSminerVersion, "temps": recorded.BOSminerTemps, "fans": recorded.BOSminerFans},
		rate:     func(_, key string) bool { return cgRateRe.MatchString(key) },
		accepted: keys("Accepted"),
		temp:     keys("Board"),
	},
	"bmminer": {
		tcp:      true,
		routes:   map[string]string{"summary": recorded.BMMinerSummary, "pools": recorded.BMMinerPools, "stats": recorded.BMMinerStats},
		rate:     func(_, key string) bool { return cgRateRe.MatchString(key) },
		accepted: keys("Accepted"),
		temp:     func(k string) bool { return strings.HasPrefix(k, "temp2_") },
	},
}

// reply renders the payload for route with the cues in effect.
func (m *miner) reply(route string) ([]byte, bool) {
	spec := apis[m.api]
	name, ok := spec.routes[route]
	if !ok {
		return nil, false
	}
	c := m.cues()
	if c.garbage {
		return garbageReply, true
	}
	raw := recorded.MustGet(name)
	m.mu.Lock()
	shares := m.shares
	m.mu.Unlock()
	// The .txt captures keep Antminer's missing comma between the STATS
	// objects; the fake serves them with it.
	bmStats := strings.HasSuffix(name, ".txt")
	if bmStats {
		raw = bytes.ReplaceAll(raw, []byte("}{"), []byte("},{"))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		// Fixed embedded data; serving it unchanged keeps the fake useful
		// and the tests that parse it will point at the file.
		fmt.Fprintf(m.stderr, "fakeminer: recorded payload %s: %v\n", name, err)
		return recorded.MustGet(name), true
	}
	mu := mutator{spec: spec, c: c, shares: shares}
	doc = mu.walk("", doc)
	if bmStats {
		return brokenStats(doc), true
	}
	out, _ := json.Marshal(doc)
	return out, true
}

// brokenStats re-creates the Antminer firmware bug: no comma between the
// STATS objects.
func brokenStats(doc any) []byte {
	obj, _ := doc.(map[string]any)
	var b bytes.Buffer
	st, _ := json.Marshal(obj["STATUS"])
	b.WriteString(`{"STATUS":`)
	b.Write(st)
	b.WriteString(`,"STATS":[`)
	arr, _ := obj["STATS"].([]any)
	for _, el := range arr {
		e, _ := json.Marshal(el)
		b.Write(e)
	}
	b.WriteString(`],"id":1}`)
	return b.Bytes()
}

type mutator struct {
	spec    apiSpec
	c       cues
	shares  uint64
	hotDone bool
}

func (mu *mutator) walk(parent string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		ks := make([]string, 0, len(x))
		for k := range x {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			x[k] = mu.field(parent, k, x[k])
		}
		return x
	case []any:
		for i := range x {
			x[i] = mu.walk(parent, x[i])
		}
		return x
	}
	return v
}

func (mu *mutator) field(parent, key string, v any) any {
	switch v.(type) {
	case map[string]any:
		return mu.walk(key, v)
	case []any:
		arr := v.([]any)
		if len(arr) > 0 {
			if _, nested := arr[0].(map[string]any); nested {
				return mu.walk(key, v)
			}
		}
	}
	switch {
	case mu.spec.rate(parent, key) && mu.c.warming:
		return nullScalars(v)
	case mu.spec.rate(parent, key):
		return mapScalars(v, func(f float64) float64 { return f * mu.c.scale })
	case mu.spec.accepted(key):
		return mapScalars(v, func(f float64) float64 { return f + float64(mu.shares) })
	case mu.c.hot > 0 && !mu.hotDone && mu.spec.temp(key):
		return mapScalars(v, func(f float64) float64 {
			if mu.hotDone || f <= 0 {
				return f
			}
			mu.hotDone = true
			return mu.c.hot
		})
	}
	return v
}

// nullScalars replaces a number, a numeric string or each of an array of
// them with null: a reading the miner does not have yet.
func nullScalars(v any) any {
	switch x := v.(type) {
	case json.Number, string:
		return nil
	case []any:
		for i := range x {
			x[i] = nullScalars(x[i])
		}
		return x
	}
	return v
}

// mapScalars applies fn to a number, a numeric string or an array of them,
// keeping each value's JSON type.
func mapScalars(v any, fn func(float64) float64) any {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return v
		}
		r := fn(f)
		if _, err := x.Int64(); err == nil && r == float64(int64(r)) {
			return json.Number(strconv.FormatInt(int64(r), 10))
		}
		return json.Number(strconv.FormatFloat(r, 'f', -1, 64))
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return v
		}
		return strconv.FormatFloat(fn(f), 'f', 2, 64)
	case []any:
		for i := range x {
			x[i] = mapScalars(x[i], fn)
		}
		return x
	}
	return v
}

func (m *miner) serve(ctx context.Context, ln net.Listener) {
	if apis[m.api].text {
		m.serveText(ln)
		return
	}
	if apis[m.api].raw {
		m.serveRaw(ln)
		return
	}
	if apis[m.api].tcp {
		m.serveCGMiner(ctx, ln)
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(m.handleHTTP), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	_ = srv.Serve(ln)
}

func (m *miner) handleHTTP(w http.ResponseWriter, r *http.Request) {
	if m.cues().hang {
		<-r.Context().Done()
		return
	}
	if m.token != "" {
		auth := r.Header.Get("Authorization")
		switch {
		case auth == "":
			http.Error(w, `{"status":401,"error":"Unauthorized"}`, http.StatusUnauthorized)
			return
		case auth != "Bearer "+m.token:
			http.Error(w, `{"status":403,"error":"Forbidden"}`, http.StatusForbidden)
			return
		}
	}
	body, ok := m.reply(r.URL.Path)
	if !ok {
		http.Error(w, `{"status":404,"error":"Not Found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// serveText answers like ccminer: the request is a command name, maybe
// followed by "|"; the reply is the recorded text with its rates scaled by
// the hashrate cue, and the connection closes.
func (m *miner) serveText(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if m.cues().hang {
				_, _ = io.Copy(io.Discard, conn)
				return
			}
			buf := make([]byte, 512)
			n, _ := conn.Read(buf)
			cmd, _, _ := strings.Cut(strings.TrimSpace(string(buf[:n])), "|")
			name, ok := apis[m.api].routes[cmd]
			c := m.cues()
			switch {
			case c.garbage:
				_, _ = conn.Write(garbageReply)
			case ok:
				_, _ = conn.Write(scaleText(recorded.MustGet(name), c.scale))
			}
		}()
	}
}

// textRate matches the rate fields of the ccminer text API.
var textRate = regexp.MustCompile(`(^|;|\|)(KHS|HS|kH/s|H/s)=([0-9.]+)`)

func scaleText(b []byte, scale float64) []byte {
	return textRate.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := textRate.FindSubmatch(m)
		v, err := strconv.ParseFloat(string(sub[3]), 64)
		if err != nil {
			return m
		}
		return []byte(string(sub[1]) + string(sub[2]) + "=" + strconv.FormatFloat(v*scale, 'f', -1, 64))
	})
}

// serveRaw answers like lolMiner 0.x: whatever the client sends, the
// reply is the JSON document, and the connection closes.
func (m *miner) serveRaw(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if m.cues().hang {
				_, _ = io.Copy(io.Discard, conn)
				return
			}
			buf := make([]byte, 512)
			_, _ = conn.Read(buf)
			body, _ := m.reply("")
			_, _ = conn.Write(body)
		}()
	}
}

func (m *miner) serveCGMiner(ctx context.Context, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go m.handleCG(ctx, conn)
	}
}

// handleCG answers one cgminer API request: JSON {"command":"x"} or plain
// "x|param"; the reply ends with NUL and the connection closes.
func (m *miner) handleCG(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf []byte
	chunk := make([]byte, 1024)
	for len(buf) < 64<<10 {
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		t := bytes.TrimSpace(buf)
		if len(t) > 0 && (t[0] != '{' || json.Valid(t)) {
			break
		}
		if err != nil {
			return
		}
	}
	if m.cues().hang {
		// Hold the socket open and silent until the client gives up.
		_ = conn.SetReadDeadline(time.Time{})
		done := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, conn); close(done) }()
		select {
		case <-ctx.Done():
		case <-done:
		}
		return
	}
	cmd := ""
	t := bytes.TrimSpace(buf)
	if len(t) > 0 && t[0] == '{' {
		var req struct {
			Command string `json:"command"`
		}
		_ = json.Unmarshal(t, &req)
		cmd = req.Command
	} else {
		cmd, _, _ = strings.Cut(string(t), "|")
	}
	body, ok := m.reply(cmd)
	if !ok {
		body = []byte(fmt.Sprintf(`{"STATUS":[{"STATUS":"E","When":%d,"Code":14,"Msg":"Invalid command","Description":"fakeminer"}],"id":1}`, time.Now().Unix()))
	}
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write(append(body, 0))
}
