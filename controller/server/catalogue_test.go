package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/agent/miner"
	"github.com/quarryfleet/quarry/agent/minerfetch"
	"github.com/quarryfleet/quarry/controller/catalogue"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/minerarchive/archivetest"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// uploadMiner adds an archive through CatalogueService as quarryctl does.
func uploadMiner(t *testing.T, conn *grpc.ClientConn, name, version string, archive []byte) (*quarryv1.CatalogueMiner, error) {
	t.Helper()
	stream, err := quarryv1.NewCatalogueServiceClient(conn).AddMiner(ctx(t))
	if err != nil {
		return nil, err
	}
	send := func(m *quarryv1.AddMinerRequest) error {
		if err := stream.Send(m); errors.Is(err, io.EOF) {
			_, rerr := stream.CloseAndRecv()
			return rerr
		} else {
			return err
		}
	}
	if err := send(&quarryv1.AddMinerRequest{Msg: &quarryv1.AddMinerRequest_Header{Header: &quarryv1.AddMinerHeader{Name: name, Version: version}}}); err != nil {
		return nil, err
	}
	for len(archive) > 0 {
		n := min(len(archive), 100<<10)
		if err := send(&quarryv1.AddMinerRequest{Msg: &quarryv1.AddMinerRequest_Chunk{Chunk: archive[:n]}}); err != nil {
			return nil, err
		}
		archive = archive[n:]
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return resp.Miner, nil
}

func localAdminToken(t *testing.T, tc *testController) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tc.dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestCatalogueAddListRemoveAndRoles(t *testing.T) {
	tc := startTestController(t, nil)
	admin := adminConnRaw(t, tc, localAdminToken(t, tc))
	viewerTok, err := tc.Fleet().CreateAdminToken("eve", fleet.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	viewer := adminConnRaw(t, tc, viewerTok)
	operatorTok, err := tc.Fleet().CreateAdminToken("otto", fleet.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}

	prog := []byte("\x7fELF fake miner")
	for _, c := range []struct {
		version string
		archive []byte
		binary  string
	}{
		{"1.0", archivetest.TarGz(archivetest.Member{Name: "xmrig-1.0/xmrig", Body: prog, Mode: 0o755}, archivetest.Member{Name: "xmrig-1.0/SHA256SUMS", Body: []byte("x")}), "xmrig-1.0/xmrig"},
		{"1.1", archivetest.Zip(archivetest.Member{Name: "bin/run", Body: prog, Mode: 0o755}), "bin/run"},
	} {
		m, err := uploadMiner(t, admin, "xmrig", c.version, c.archive)
		if err != nil {
			t.Fatalf("add %s: %v", c.version, err)
		}
		if m.Sha256 != sum(c.archive) || m.Size != int64(len(c.archive)) || m.Binary != c.binary || m.BinarySha256 != sum(prog) {
			t.Errorf("add %s: %+v", c.version, m)
		}
	}

	// A viewer (and an operator) may not add or remove; a viewer may list.
	for _, conn := range []*grpc.ClientConn{viewer, adminConnRaw(t, tc, operatorTok)} {
		_, err = uploadMiner(t, conn, "xmrig", "2.0", archivetest.TarGz(archivetest.Member{Name: "xmrig", Body: prog, Mode: 0o755}))
		wantCode(t, err, codes.PermissionDenied, "needs role admin")
		_, err = quarryv1.NewCatalogueServiceClient(conn).RemoveMiner(ctx(t), &quarryv1.RemoveMinerRequest{Name: "xmrig", Version: "1.0"})
		wantCode(t, err, codes.PermissionDenied, "needs role admin")
	}
	list, err := quarryv1.NewCatalogueServiceClient(viewer).ListMiners(ctx(t), &quarryv1.ListMinersRequest{})
	if err != nil || len(list.Miners) != 2 {
		t.Fatalf("viewer list: %v %v", list, err)
	}

	// Refusals, each losing nothing.
	bad := []struct {
		name, version string
		archive       []byte
		code          codes.Code
		msg           string
	}{
		{"xmrig", "1.0", archivetest.TarGz(archivetest.Member{Name: "x", Body: prog, Mode: 0o755}), codes.AlreadyExists, "already"},
		{"../x", "1", archivetest.TarGz(archivetest.Member{Name: "x", Body: prog, Mode: 0o755}), codes.InvalidArgument, "miner name"},
		{"x", "1", archivetest.TarGz(archivetest.Member{Name: "../../x", Body: prog, Mode: 0o755}), codes.InvalidArgument, ".."},
		{"x", "2", archivetest.Zip(archivetest.Member{Name: "x", Body: prog, Mode: 0o755}, archivetest.Member{Name: "l", Link: "/etc/passwd"}), codes.InvalidArgument, "absolute"},
		{"x", "3", []byte("not an archive"), codes.InvalidArgument, "not a tar.gz or zip"},
		{"x", "4", archivetest.TarGz(archivetest.Member{Name: "bash", Body: prog, Mode: 0o755}), codes.InvalidArgument, "interpreter"},
	}
	for _, b := range bad {
		_, err := uploadMiner(t, admin, b.name, b.version, b.archive)
		wantCode(t, err, b.code, b.msg)
	}
	stream, _ := quarryv1.NewCatalogueServiceClient(admin).AddMiner(ctx(t))
	_ = stream.Send(&quarryv1.AddMinerRequest{Msg: &quarryv1.AddMinerRequest_Header{Header: &quarryv1.AddMinerHeader{Name: "x", Version: "5", Url: "http://example.org/x.tar.gz"}}})
	_, err = stream.CloseAndRecv()
	wantCode(t, err, codes.InvalidArgument, "only https")

	// A version a stored sheet names stays until the sheet changes.
	sheet := "name: xmr\ncoin: XMR\nalgorithm: rx/0\nminer: {name: xmrig, version: \"1.1\"}\npools: [{url: 'stratum+tcp://pool.example:3333', user: w}]\n"
	if _, err := quarryv1.NewMinerServiceClient(admin).PutFlightSheet(ctx(t), &quarryv1.PutFlightSheetRequest{Yaml: []byte(sheet)}); err != nil {
		t.Fatal(err)
	}
	_, err = quarryv1.NewCatalogueServiceClient(admin).RemoveMiner(ctx(t), &quarryv1.RemoveMinerRequest{Name: "xmrig", Version: "1.1"})
	wantCode(t, err, codes.FailedPrecondition, "flight sheets: xmr")
	if _, err := quarryv1.NewMinerServiceClient(admin).DeleteFlightSheet(ctx(t), &quarryv1.DeleteFlightSheetRequest{Name: "xmr"}); err != nil {
		t.Fatal(err)
	}
	if _, err := quarryv1.NewCatalogueServiceClient(admin).RemoveMiner(ctx(t), &quarryv1.RemoveMinerRequest{Name: "xmrig", Version: "1.1"}); err != nil {
		t.Fatal(err)
	}
	list, _ = quarryv1.NewCatalogueServiceClient(admin).ListMiners(ctx(t), &quarryv1.ListMinersRequest{})
	if len(list.Miners) != 1 || list.Miners[0].Version != "1.0" {
		t.Fatalf("after remove: %v", list.Miners)
	}
	ents, _ := os.ReadDir(filepath.Join(tc.dir, catalogue.Dir))
	if len(ents) != 1 {
		t.Errorf("catalogue dir holds %d files, want the one archive left: %v", len(ents), ents)
	}

	log, err := tc.Fleet().AuditLog(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var added, removed, refused int
	for _, e := range log {
		switch {
		case e.Action == "miner add" && e.Result == "ok" && strings.Contains(e.Detail, "sha256="):
			added++
		case e.Action == "miner remove" && e.Result == "ok":
			removed++
		case e.Action == "authorize" && e.Who == "eve" && strings.Contains(e.Target, "AddMiner"):
			refused++
		}
	}
	if added != 2 || removed != 1 || refused != 1 {
		t.Errorf("audit: %d adds, %d removes, %d refusals of eve; want 2, 1, 1", added, removed, refused)
	}
}

// cutOnce ends the first archive stream after a few chunks, as a broken
// link would.
type cutOnce struct {
	calls   atomic.Int32
	offsets sync.Map // call number → requested offset
}

func (c *cutOnce) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != quarryv1.MinerDownloadService_FetchMinerArchive_FullMethodName {
		return handler(srv, ss)
	}
	n := c.calls.Add(1)
	return handler(srv, &cutStream{ServerStream: ss, c: c, call: n, left: 2})
}

type cutStream struct {
	grpc.ServerStream
	c    *cutOnce
	call int32
	left int
}

func (s *cutStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*quarryv1.FetchMinerArchiveRequest); ok && err == nil {
		s.c.offsets.Store(s.call, r.Offset)
	}
	return err
}

func (s *cutStream) SendMsg(m any) error {
	if s.call == 1 {
		if s.left == 0 {
			return status.Error(codes.Unavailable, "link cut by the test")
		}
		s.left--
	}
	return s.ServerStream.SendMsg(m)
}

func catalogueMiner(t *testing.T, tc *testController, admin *grpc.ClientConn, version string, prog []byte) flightsheet.Miner {
	t.Helper()
	_, err := uploadMiner(t, admin, "xmrig", version, archivetest.TarGz(
		archivetest.Member{Name: "xmrig-" + version + "/xmrig", Body: prog, Mode: 0o755},
		archivetest.Member{Name: "xmrig-" + version + "/pad", Body: randomBytes(t, 600<<10)}))
	if err != nil {
		t.Fatal(err)
	}
	fs := &flightsheet.FlightSheet{Name: "s", Miner: flightsheet.Miner{Name: "xmrig", Version: version}}
	if err := tc.Catalogue().Resolve(fs); err != nil {
		t.Fatal(err)
	}
	return fs.Miner
}

// A rig downloads a catalogue archive with its certificate, resuming
// after the stream breaks; keeps the last three versions; refuses a
// tampered archive; and an admin token is no rig identity.
func TestMinerDownloadResumesVerifiesAndPrunes(t *testing.T) {
	cut := &cutOnce{}
	tc := startTestController(t, nil, grpc.ChainStreamInterceptor(cut.intercept))
	admin := adminConnRaw(t, tc, localAdminToken(t, tc))
	a := enrollAgent(t, tc, tc.token(t, time.Hour, 1))
	conn, err := grpc.NewClient(tc.GRPCAddr(), grpc.WithTransportCredentials(credsFor(a)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	minersDir := t.TempDir()
	in := &minerfetch.Installer{MinersDir: minersDir, StateDir: filepath.Join(a.dir, "catalogue"), Conn: conn, RetryWait: 10 * time.Millisecond}

	prog := randomBytes(t, 300<<10)
	m := catalogueMiner(t, tc, admin, "1.0", prog)
	path, fresh, err := in.Install(context.Background(), m, nil)
	if err != nil || !fresh {
		t.Fatalf("install: %v (fresh %v)", err, fresh)
	}
	if got, err := miner.FileSHA256(path); err != nil || got != sum(prog) || path != filepath.Join(minersDir, "xmrig-1.0", "xmrig-1.0", "xmrig") {
		t.Fatalf("installed %s: sha256 %s, %v", path, got, err)
	}
	if _, err := flightsheet.ResolveMinerPath(minersDir, path); err != nil {
		t.Fatalf("the agent would refuse the installed program: %v", err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm()&0o100 == 0 {
		t.Errorf("program lost its execute bit: %v", st.Mode())
	}
	if n := cut.calls.Load(); n < 2 {
		t.Fatalf("%d download calls; the cut should have forced a second", n)
	}
	if off, _ := cut.offsets.Load(int32(2)); off.(int64) <= 0 {
		t.Errorf("second call asked from offset %v; want a resume past 0", off)
	}
	// Installed again: nothing downloaded.
	calls := cut.calls.Load()
	if _, fresh, err := in.Install(context.Background(), m, nil); err != nil || fresh || cut.calls.Load() != calls {
		t.Errorf("second install: fresh %v, %v, %d calls", fresh, err, cut.calls.Load()-calls)
	}

	// Three more versions: the oldest goes, unless it is in use.
	inUse := func(dir string) bool { return dir == "xmrig-1.1" }
	for _, v := range []string{"1.1", "1.2", "1.3", "1.4"} {
		if _, _, err := in.Install(context.Background(), catalogueMiner(t, tc, admin, v, prog), inUse); err != nil {
			t.Fatalf("install %s: %v", v, err)
		}
	}
	var held []string
	for _, im := range in.Installed() {
		held = append(held, im.Version)
	}
	if strings.Join(held, ",") != "1.4,1.3,1.2,1.1" {
		t.Errorf("installed %v; want the newest three and the one in use", held)
	}
	for _, gone := range []string{"xmrig-1.0"} {
		if _, err := os.Stat(filepath.Join(minersDir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s was not removed", gone)
		}
	}

	// Tampered on the controller: the rig refuses it and installs nothing.
	tm := catalogueMiner(t, tc, admin, "2.0", prog)
	file := filepath.Join(tc.dir, catalogue.Dir, "xmrig-2.0.archive")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = in.Install(context.Background(), tm, nil)
	if !errors.Is(err, minerfetch.ErrChecksum) || !strings.Contains(err.Error(), "pinned "+tm.Archive.SHA256) {
		t.Fatalf("tampered archive: %v", err)
	}
	if _, err := os.Stat(filepath.Join(minersDir, "xmrig-2.0")); !os.IsNotExist(err) {
		t.Error("a tampered archive was unpacked")
	}
	if ents, _ := os.ReadDir(in.StateDir); len(ents) != 4 {
		t.Errorf("state dir holds %v; the bad download should be gone", ents)
	}

	// An admin token is not a rig: downloads need a rig certificate.
	stream, err := quarryv1.NewMinerDownloadServiceClient(admin).FetchMinerArchive(ctx(t), &quarryv1.FetchMinerArchiveRequest{Name: "xmrig", Version: "1.0"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.Unauthenticated, "client certificate")
}
