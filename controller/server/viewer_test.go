package server

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/redact"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Secrets planted in the fixture; none may reach a viewer or the audit log.
const (
	poolPassword = "poolpw-31415"
	apiToken     = "apitok-27182"
	urlPassword  = "urlpw-16180"
	envSecret    = "envsecret-14142"
)

var secretSheet = `name: secret-sheet
coin: XMR
algorithm: rx/0
miner:
  name: xmrig
  path: /var/lib/quarry/miners/xmrig
  sha256: 3b1f8c2e4a6d9f0b7c5e1a2d4f6b8c0e2a4c6e8f0a1b3c5d7e9f1a3b5c7d9e1f
  api:
    port: 18080
    token: ` + apiToken + `
pools:
  - url: stratum+tcp://wallet.rig01:` + urlPassword + `@pool.example:3333
    user: 44AFFwallet.rig01
    password: ` + poolPassword + `
`

// viewerFixture is a controller with a rig that answers every command
// with an error, a flight sheet full of secrets applied to it, a finished
// rig job with a secret environment, and a token per role.
type viewerFixture struct {
	tc     *testController
	rig    string
	cmdID  string
	jobID  string
	tokens map[string]string
}

type refuseHandler struct{}

func (refuseHandler) HandleCommand(context.Context, *quarryv1.Command) ([]byte, error) {
	return nil, status.Error(codes.Unimplemented, "not in this test")
}

func newViewerFixture(t *testing.T) *viewerFixture {
	t.Helper()
	tc := startTestController(t, func(c *Config) { c.Gossip.Enabled = false })
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	a.run(t, tc, refuseHandler{})
	rigID := a.id.RigID()
	eventually(t, "rig online", func() bool { return tc.Fleet().Online(rigID) })
	rig, err := tc.Fleet().Rig(rigID)
	if err != nil {
		t.Fatal(err)
	}
	f := &viewerFixture{tc: tc, rig: rig.Name, tokens: map[string]string{}}
	for _, role := range []string{fleet.RoleViewer, fleet.RoleOperator, fleet.RoleAdmin} {
		tok, err := tc.Fleet().CreateAdminToken("user-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[role] = tok
	}
	op := quarryv1.NewMinerServiceClient(adminConnRaw(t, tc, f.tokens[fleet.RoleOperator]))
	applied, err := op.ApplyFlightSheet(ctx(t), &quarryv1.ApplyFlightSheetRequest{Yaml: []byte(secretSheet), Selector: "name=" + rig.Name})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	f.cmdID = applied.Rigs[0].CommandId
	job := fmt.Sprintf("name: secret-env\ndir: /tmp\nbuild: [make]\nrule_packs: []\nwhere: agent:name=%s\nenv:\n  DEPLOY_KEY: %s\n", rig.Name, envSecret)
	f.jobID, err = tc.jobs.Start(ctx(t), []byte(job), auth.Caller{Name: "test", Role: fleet.RoleAdmin})
	if err != nil {
		t.Fatalf("job: %v", err)
	}
	// Everything the fixture set going must have settled, so that any
	// later write is the walk's doing.
	eventually(t, "commands answered and job finished", func() bool {
		c, err := tc.Fleet().Command(f.cmdID)
		if err != nil || c.Status != quarryv1.CommandStatus_COMMAND_STATUS_FAILED {
			return false
		}
		j, err := tc.jobs.Job(ctx(t), f.jobID)
		return err == nil && j.FinishedUnixNano != 0
	})
	return f
}

// TestViewerSeesNoSecrets reads every secret-bearing answer through real
// gRPC as each role: viewers get redactions, operators the real values.
func TestViewerSeesNoSecrets(t *testing.T) {
	f := newViewerFixture(t)
	secrets := []string{poolPassword, apiToken, urlPassword, envSecret}
	type read struct {
		name string
		call func(conn *grpc.ClientConn) (proto.Message, error)
		// operatorSees is the secret an operator must still get back, to
		// show the viewer's answer is redacted rather than empty.
		operatorSees string
		// marked: the viewer's answer shows where something was
		// redacted; payloads are dropped whole instead.
		marked bool
	}
	reads := []read{
		{"GetFlightSheet", func(c *grpc.ClientConn) (proto.Message, error) {
			return quarryv1.NewMinerServiceClient(c).GetFlightSheet(ctx(t), &quarryv1.GetFlightSheetRequest{Name: "secret-sheet"})
		}, poolPassword, true},
		{"ListFlightSheets", func(c *grpc.ClientConn) (proto.Message, error) {
			return quarryv1.NewMinerServiceClient(c).ListFlightSheets(ctx(t), &quarryv1.ListFlightSheetsRequest{})
		}, "", false},
		{"GetCommand", func(c *grpc.ClientConn) (proto.Message, error) {
			return quarryv1.NewFleetServiceClient(c).GetCommand(ctx(t), &quarryv1.GetCommandRequest{CommandId: f.cmdID})
		}, poolPassword, false},
		{"GetJob", func(c *grpc.ClientConn) (proto.Message, error) {
			return quarryv1.NewJobServiceClient(c).GetJob(ctx(t), &quarryv1.GetJobRequest{JobId: f.jobID})
		}, envSecret, true},
		{"ListJobs", func(c *grpc.ClientConn) (proto.Message, error) {
			return quarryv1.NewJobServiceClient(c).ListJobs(ctx(t), &quarryv1.ListJobsRequest{})
		}, envSecret, true},
	}
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			m, err := r.call(adminConnRaw(t, f.tc, f.tokens[fleet.RoleViewer]))
			if err != nil {
				t.Fatalf("as viewer: %v", err)
			}
			b, _ := proto.Marshal(m)
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("viewer's answer contains %q: %v", s, m)
				}
			}
			if r.operatorSees == "" {
				return
			}
			if r.marked && !bytes.Contains(b, []byte(redact.Mark)) {
				t.Errorf("viewer's answer shows no redaction mark: %v", m)
			}
			m, err = r.call(adminConnRaw(t, f.tc, f.tokens[fleet.RoleOperator]))
			if err != nil {
				t.Fatalf("as operator: %v", err)
			}
			if b, _ := proto.Marshal(m); !bytes.Contains(b, []byte(r.operatorSees)) {
				t.Errorf("operator's answer lacks %q: %v", r.operatorSees, m)
			}
		})
	}

	// A refused flight sheet whose error quotes its pool URL must not
	// leave the password in the audit log.
	op := quarryv1.NewMinerServiceClient(adminConnRaw(t, f.tc, f.tokens[fleet.RoleOperator]))
	bad := strings.Replace(secretSheet, "@pool.example:3333", "@pool.example", 1)
	if _, err := op.PutFlightSheet(ctx(t), &quarryv1.PutFlightSheetRequest{Yaml: []byte(bad)}); err == nil || !strings.Contains(err.Error(), "needs a port") {
		t.Fatalf("sheet without a pool port: %v", err)
	}
	log, err := f.tc.Fleet().AuditLog(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sawRefusal := false
	for _, e := range log {
		b, _ := proto.Marshal(e)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("audit entry holds %q: %v", s, e)
			}
		}
		sawRefusal = sawRefusal || (e.Action == "flightsheet put" && strings.Contains(e.Result, "needs a port") && strings.Contains(e.Result, redact.Mark))
	}
	if !sawRefusal {
		t.Errorf("the refused put is not audited with a redacted URL: %v", log)
	}
}

// TestViewerMethodsHaveNoSideEffects calls every method whose least role
// is viewer, as a viewer, with arguments naming real objects, and checks
// that the database holds exactly what it held before apart from the
// audit log: no command queued, no record changed.
func TestViewerMethodsHaveNoSideEffects(t *testing.T) {
	f := newViewerFixture(t)
	args := map[string]string{"rig": f.rig, "name": "secret-sheet", "job_id": f.jobID, "command_id": f.cmdID, "selector": "name=" + f.rig}
	conn := adminConnRaw(t, f.tc, f.tokens[fleet.RoleViewer])

	// The check can fail: an operator's command is a visible write.
	before := dbContents(t, f.tc)
	sent, err := quarryv1.NewFleetServiceClient(adminConnRaw(t, f.tc, f.tokens[fleet.RoleOperator])).SendCommand(ctx(t), &quarryv1.SendCommandRequest{Rig: f.rig, Kind: quarryv1.CommandKind_COMMAND_KIND_PING})
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(before, dbContents(t, f.tc)); d == "" {
		t.Fatal("queuing a command left no trace the check can see")
	}
	eventually(t, "ping answered", func() bool {
		c, err := f.tc.Fleet().Command(sent.CommandId)
		return err == nil && c.Status == quarryv1.CommandStatus_COMMAND_STATUS_FAILED
	})

	var walked []string
	for method, role := range f.tc.Roles() {
		if role != fleet.RoleViewer {
			continue
		}
		walked = append(walked, method)
	}
	sort.Strings(walked)
	for _, method := range walked {
		before := dbContents(t, f.tc)
		err := invokeWith(t, conn, method, args)
		if status.Code(err) == codes.PermissionDenied || status.Code(err) == codes.Unauthenticated {
			t.Errorf("%s refused to a viewer: %v", method, err)
		}
		if d := diff(before, dbContents(t, f.tc)); d != "" {
			t.Errorf("%s as a viewer changed the database: %s", method, d)
		}
	}
	for _, must := range []string{quarryv1.MinerService_GetFlightSheet_FullMethodName, quarryv1.FleetService_GetCommand_FullMethodName, quarryv1.JobService_GetJob_FullMethodName, quarryv1.FleetService_ListRigs_FullMethodName} {
		if !strings.Contains(strings.Join(walked, " "), must) {
			t.Errorf("%s was not walked", must)
		}
	}
	if strings.Contains(strings.Join(walked, " "), quarryv1.MinerService_GetRigLogs_FullMethodName) {
		t.Error("GetRigLogs queues a command on the rig yet is a viewer method")
	}
	t.Logf("walked %d viewer methods", len(walked))
}

// invokeWith calls method with a request whose string fields are filled
// from args by field name; a streaming method is read until it ends or
// for a short while.
func invokeWith(t *testing.T, conn *grpc.ClientConn, method string, args map[string]string) error {
	t.Helper()
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		t.Fatal(err)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	req := in.New()
	fields := req.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if v, ok := args[string(fd.Name())]; ok && fd.Kind() == protoreflect.StringKind && !fd.IsList() {
			req.Set(fd, protoreflect.ValueOfString(v))
		}
	}
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if !md.IsStreamingServer() && !md.IsStreamingClient() {
		return conn.Invoke(c, method, req.Interface(), out.New().Interface())
	}
	s, err := conn.NewStream(c, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return err
	}
	if err := s.SendMsg(req.Interface()); err != nil {
		return err
	}
	_ = s.CloseSend()
	for {
		if err := s.RecvMsg(out.New().Interface()); err != nil {
			if status.Code(err) == codes.DeadlineExceeded {
				return nil
			}
			if err.Error() == "EOF" {
				return nil
			}
			return err
		}
	}
}

// dbContents copies every key and value in the database except the audit
// log and the record of when each admin token was last used (both note
// the call itself, not a change it makes), nested buckets included.
func dbContents(t *testing.T, tc *testController) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string, b *store.Bucket) error
	walk = func(prefix string, b *store.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(prefix+string(k)+"/", b.Bucket(k))
			}
			out[prefix+string(k)] = string(v)
			return nil
		})
	}
	err := tc.db.View(func(tx *store.Tx) error {
		return tx.ForEach(func(name []byte, b *store.Bucket) error {
			if string(name) == "audit" || string(name) == "admin_token_use" {
				return nil
			}
			return walk(string(name)+"/", b)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diff(a, b map[string]string) string {
	var d []string
	for k, v := range b {
		if old, ok := a[k]; !ok {
			d = append(d, "added "+k)
		} else if old != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		}
	}
	sort.Strings(d)
	return strings.Join(d, ", ")
}
