package miners

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/figures"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/store"
	"github.com/quarryfleet/quarry/pkg/testsupport"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	t    *testing.T
	path string
	db   *store.DB
	f    *fleet.Fleet
	figs *figures.Learner
	s    *Store
	srv  *MinerServer
}

// open starts a fleet and a store on the database at path (a fresh one
// when path is empty), with rigs already enrolled there kept.
func open(t *testing.T, path string) *env {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "quarry.db")
	}
	db := testsupport.OpenStore(t, path, fleet.Buckets...)
	f, err := fleet.Open(db, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	figs, err := figures.Open(db, figures.Options{Alpha: 0.1, Every: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.AddObserver(figs)
	s, err := Open(db, f, Options{Figures: figs, Every: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, path: path, db: db, f: f, figs: figs, s: s, srv: &MinerServer{S: s}}
	t.Cleanup(e.close)
	return e
}

// viaAudit runs call as the controller does a MinerService method: behind
// the audit interceptor, which writes the method's entry.
func (e *env) viaAudit(method string, call func(ctx context.Context) error) error {
	a := auth.Audit{Log: e.f, Actions: MinerAudit}
	ctx := auth.WithCaller(context.Background(), auth.Caller{Name: "test", Role: auth.RoleAdmin})
	_, err := a.UnaryInterceptor(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
		return nil, call(ctx)
	})
	return err
}

func (e *env) close() {
	if e.s == nil {
		return
	}
	e.f.Close()
	if err := e.s.Close(); err != nil {
		e.t.Errorf("Close: %v", err)
	}
	if err := e.figs.Close(); err != nil {
		e.t.Errorf("Close figures: %v", err)
	}
	e.db.Close()
	e.s = nil
}

func (e *env) rig(id, name string, tags map[string]string, gpus ...string) {
	e.t.Helper()
	if err := e.f.RegisterRig(id, name, name); err != nil {
		e.t.Fatal(err)
	}
	if err := e.f.UpdateRig(id, func(r *quarryv1.Rig) {
		r.Labels = tags
		for _, g := range gpus {
			r.Gpus = append(r.Gpus, &quarryv1.GPUStats{Name: g})
		}
	}); err != nil {
		e.t.Fatal(err)
	}
}

func sheet(name, algo string) string {
	return "name: " + name + "\ncoin: RVN\nalgorithm: " + algo + `
miner:
  name: trex
  path: /opt/miners/t-rex
  sha256: ` + strings.Repeat("ab", 32) + `
pools:
  - url: stratum+tcp://rvn.example.org:6060
    user: RWallet.rig
`
}

func code(err error) codes.Code { return status.Code(err) }

func TestPutSheetValidates(t *testing.T) {
	e := open(t, "")
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty"},
		{"unknown field", sheet("a", "kawpow") + "poools: []\n", "poools"},
		{"no sha256", strings.Replace(sheet("a", "kawpow"), "  sha256: "+strings.Repeat("ab", 32)+"\n", "", 1), "miner.sha256"},
		{"unknown miner", strings.Replace(sheet("a", "kawpow"), "name: trex", "name: nosuchminer", 1), "miner.name"},
		{"relative path", strings.Replace(sheet("a", "kawpow"), "/opt/miners/t-rex", "t-rex", 1), "miner.path"},
		{"scheme the miner cannot use", strings.Replace(sheet("a", "kawpow"), "stratum+tcp://rvn.example.org:6060", "daemon+http://127.0.0.1:8766", 1), "miner trex cannot use scheme"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.viaAudit(quarryv1.MinerService_PutFlightSheet_FullMethodName, func(ctx context.Context) error {
				_, err := e.srv.PutFlightSheet(ctx, &quarryv1.PutFlightSheetRequest{Yaml: []byte(tc.yaml)})
				return err
			})
			if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PutFlightSheet = %v, want InvalidArgument naming %s", err, tc.want)
			}
		})
	}
	var resp *quarryv1.PutFlightSheetResponse
	err := e.viaAudit(quarryv1.MinerService_PutFlightSheet_FullMethodName, func(ctx context.Context) (err error) {
		resp, err = e.srv.PutFlightSheet(ctx, &quarryv1.PutFlightSheetRequest{Yaml: []byte(sheet("rvn", "kawpow"))})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Sheet; r.Name != "rvn" || r.Algorithm != "kawpow" || r.Miner != "trex" || r.Pools != 1 {
		t.Errorf("stored %v", r)
	}
	list, _ := e.srv.ListFlightSheets(context.Background(), &quarryv1.ListFlightSheetsRequest{})
	if len(list.Sheets) != 1 || list.Sheets[0].Yaml != nil {
		t.Errorf("list = %v (YAML must be left out)", list.Sheets)
	}
	if err := e.viaAudit(quarryv1.MinerService_DeleteFlightSheet_FullMethodName, func(ctx context.Context) error {
		_, err := e.srv.DeleteFlightSheet(ctx, &quarryv1.DeleteFlightSheetRequest{Name: "rvn"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.GetFlightSheet(context.Background(), &quarryv1.GetFlightSheetRequest{Name: "rvn"}); code(err) != codes.NotFound {
		t.Errorf("get deleted = %v", err)
	}
	// Every change is audited, refusals with their reason.
	entries, _ := e.f.AuditLog(time.Time{}, 0)
	var actions []string
	for _, en := range entries {
		actions = append(actions, en.Action+" "+en.Target+" "+en.Result)
	}
	if got := strings.Join(actions, ","); strings.Count(got, "flightsheet put") != 7 || !strings.Contains(got, "flightsheet put rvn ok") ||
		!strings.Contains(got, "flightsheet delete rvn ok") || !strings.Contains(got, "error: ") {
		t.Errorf("audit actions %s", got)
	}
}

func TestApplyQueuesToMatchingRigs(t *testing.T) {
	e := open(t, "")
	e.rig("r1", "rig-01", map[string]string{"site": "reykjavik"}, "NVIDIA GeForce RTX 3070")
	e.rig("r2", "rig-02", map[string]string{"site": "oslo"}, "NVIDIA GeForce RTX 3070")
	e.rig("r3", "rig-03", map[string]string{"site": "reykjavik"}, "AMD Radeon RX 6800")
	e.rig("r4", "lab-01", nil, "NVIDIA GeForce RTX 3070")
	tests := []struct {
		selector string
		want     string
	}{
		{"name=rig-*,gpu=RTX 3070", "rig-01,rig-02"},
		{"tag=site=reykjavik", "rig-01,rig-03"},
		{"gpu=rx 6800", "rig-03"},
		{"", "lab-01,rig-01,rig-02,rig-03"},
		{"rig-02", "rig-02"}, // a bare word is one rig, by name or id
		{"r3", "rig-03"},
	}
	for _, tc := range tests {
		t.Run(tc.selector, func(t *testing.T) {
			resp, err := e.srv.ApplyFlightSheet(context.Background(), &quarryv1.ApplyFlightSheetRequest{Yaml: []byte(sheet("rvn", "kawpow")), Selector: tc.selector})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range resp.Rigs {
				names = append(names, r.RigName)
				rec, err := e.f.Command(r.CommandId)
				if err != nil {
					t.Fatal(err)
				}
				if rec.Command.Kind != quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET || string(rec.Command.Payload) != sheet("rvn", "kawpow") || rec.RigId != r.RigId {
					t.Errorf("command %v", rec)
				}
			}
			if got := strings.Join(names, ","); got != tc.want {
				t.Errorf("rigs %s, want %s", got, tc.want)
			}
		})
	}
	if _, err := e.srv.ApplyFlightSheet(context.Background(), &quarryv1.ApplyFlightSheetRequest{Name: "rvn", Selector: "name=nothing-*"}); code(err) != codes.FailedPrecondition {
		t.Errorf("no match = %v", err)
	}
	if _, err := e.srv.ApplyFlightSheet(context.Background(), &quarryv1.ApplyFlightSheetRequest{Name: "rvn", Selector: "name=["}); code(err) != codes.InvalidArgument {
		t.Errorf("bad selector = %v", err)
	}
	if _, err := e.srv.ApplyFlightSheet(context.Background(), &quarryv1.ApplyFlightSheetRequest{Name: "rvn", Selector: "vm"}); code(err) != codes.FailedPrecondition {
		t.Errorf("unknown rig name = %v", err)
	}
	if _, err := e.srv.ApplyFlightSheet(context.Background(), &quarryv1.ApplyFlightSheetRequest{Name: "rvn", Selector: "rig-*"}); code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "name=rig-*") {
		t.Errorf("bare pattern = %v", err)
	}
	if _, err := e.srv.ApplyFlightSheet(context.Background(), &quarryv1.ApplyFlightSheetRequest{Name: "missing"}); code(err) != codes.NotFound {
		t.Errorf("unknown sheet = %v", err)
	}
	if _, err := e.srv.GetRigLogs(context.Background(), &quarryv1.GetRigLogsRequest{Rig: "rig-01"}); code(err) != codes.FailedPrecondition {
		t.Errorf("logs of an offline rig = %v", err)
	}
}

func gpuPower(w float64) []*quarryv1.GPUStats { return []*quarryv1.GPUStats{{PowerW: &w}} }

func ingest(t *testing.T, f *fleet.Fleet, rig string, seq uint64, gpus []*quarryv1.GPUStats, miners ...*quarryv1.MinerStats) {
	t.Helper()
	acked := make(chan struct{})
	r := &quarryv1.Report{Seq: seq, TimeUnixNano: time.Now().UnixNano(), Gpus: gpus, Miners: miners}
	if err := f.Ingest(context.Background(), rig, r, func(uint64) { close(acked) }); err != nil {
		t.Fatal(err)
	}
	<-acked
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6*math.Max(1, math.Abs(b)) }

// A benchmark's result becomes the rig's figure; live reports of a running
// miner then refine it; an unreachable API or warming miner counts for
// nothing; and the figures survive a restart.
func TestBenchmarkThenLiveRefinement(t *testing.T) {
	e := open(t, "")
	e.rig("r1", "rig-01", nil)
	if _, err := e.srv.PutFlightSheet(context.Background(), &quarryv1.PutFlightSheetRequest{Yaml: []byte(sheet("rvn", "KawPow"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.RunBenchmark(context.Background(), &quarryv1.RunBenchmarkRequest{Rig: "rig-01", Algorithms: []string{"etchash"}}); code(err) != codes.InvalidArgument {
		t.Errorf("benchmark without a sheet = %v", err)
	}
	if _, err := e.srv.RunBenchmark(context.Background(), &quarryv1.RunBenchmarkRequest{Rig: "rig-01", Algorithms: []string{"kawpow"}, DurationSeconds: 7200}); code(err) != codes.InvalidArgument {
		t.Errorf("two-hour benchmark = %v", err)
	}
	resp, err := e.srv.RunBenchmark(context.Background(), &quarryv1.RunBenchmarkRequest{Rig: "rig-01", Algorithms: []string{"kawpow"}, DurationSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := e.f.Command(resp.CommandId)
	var p flightsheet.BenchmarkPayload
	if err := json.Unmarshal(rec.Command.Payload, &p); err != nil || p.DurationSeconds != 60 || len(p.Runs) != 1 || p.Runs[0].Algorithm != "kawpow" || p.Runs[0].Sheet != sheet("rvn", "KawPow") {
		t.Fatalf("payload %s: %v", rec.Command.Payload, err)
	}

	power := 230.0
	out, _ := json.Marshal([]flightsheet.BenchmarkResult{{Algorithm: "kawpow", Sheet: "rvn", HashrateHs: 50e6, PowerW: &power, Samples: 30}})
	if err := e.f.CompleteCommand("r1", &quarryv1.CommandResult{CommandId: resp.CommandId, Status: quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, Output: out}); err != nil {
		t.Fatal(err)
	}
	list, err := e.srv.ListBenchmarks(context.Background(), &quarryv1.ListBenchmarksRequest{Rig: "rig-01"})
	if err != nil || len(list.Benchmarks) != 1 {
		t.Fatalf("ListBenchmarks = %v, %v", list, err)
	}
	if b := list.Benchmarks[0]; b.Source != figures.SourceBenchmark || b.Hashrate != 50e6 || b.PowerW != 230 || b.Samples != 30 {
		t.Errorf("benchmark figure %v", b)
	}

	ingest(t, e.f, "r1", 1, gpuPower(250), &quarryv1.MinerStats{Algorithm: "kawpow", State: "running", Hashrate: 60e6})
	ingest(t, e.f, "r1", 2, gpuPower(999), &quarryv1.MinerStats{Algorithm: "kawpow", State: "api-unreachable", Error: "refused"})
	ingest(t, e.f, "r1", 3, nil, &quarryv1.MinerStats{Algorithm: "kawpow", State: quarryv1.MinerWarming})
	b := e.figs.Figures("r1")["kawpow"]
	if b.Source != figures.SourceLive || !near(b.HashrateHs, 51e6) || !near(b.PowerW, 232) || b.Samples != 31 {
		t.Errorf("after one live reading %+v, want 51 MH/s and 232 W", b)
	}
	// A new algorithm starts from its first live reading.
	ingest(t, e.f, "r1", 4, nil, &quarryv1.MinerStats{Algorithm: "Etchash", State: "running", Hashrate: 30e6})
	if b := e.figs.Figures("r1")["etchash"]; b.HashrateHs != 30e6 || b.PowerW != 0 || b.Source != figures.SourceLive {
		t.Errorf("first live etchash %+v", b)
	}

	path := e.path
	e.close()
	e2 := open(t, path)
	got := e2.figs.Figures("r1")
	if len(got) != 2 || !near(got["kawpow"].HashrateHs, 51e6) || got["etchash"].HashrateHs != 30e6 {
		t.Errorf("after reopen %+v", got)
	}
	if n := len(e2.s.pending); n != 0 {
		t.Errorf("%d benchmark commands still tracked", n)
	}
}

func TestEventsAndRolesCoverService(t *testing.T) {
	e := open(t, "")
	e.rig("r1", "rig-01", nil)
	ev := &quarryv1.Event{TimeUnixNano: 1, Kind: "miner_exited", Message: "miner exited 3"}
	ingest(t, e.f, "r1", 1, nil)
	acked := make(chan struct{})
	if err := e.f.Ingest(context.Background(), "r1", &quarryv1.Report{Seq: 2, Events: []*quarryv1.Event{ev, ev}}, func(uint64) { close(acked) }); err != nil {
		t.Fatal(err)
	}
	<-acked
	resp, err := e.srv.ListEvents(context.Background(), &quarryv1.ListEventsRequest{Rig: "rig-01", Limit: 1})
	if err != nil || len(resp.Events) != 1 || resp.Events[0].Kind != "miner_exited" {
		t.Errorf("ListEvents = %v, %v", resp, err)
	}
	if _, err := e.srv.ListEvents(context.Background(), &quarryv1.ListEventsRequest{Rig: "nope"}); code(err) != codes.NotFound {
		t.Errorf("unknown rig = %v", err)
	}
	for _, m := range quarryv1.MinerService_ServiceDesc.Methods {
		full := "/" + quarryv1.MinerService_ServiceDesc.ServiceName + "/" + m.MethodName
		if _, ok := MinerRoles[full]; !ok {
			t.Errorf("%s has no role", full)
		}
	}
}
