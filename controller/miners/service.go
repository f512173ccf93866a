package miners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	"github.com/quarryfleet/quarry/pkg/flightsheet"
	"github.com/quarryfleet/quarry/pkg/market"
	"github.com/quarryfleet/quarry/pkg/redact"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// MinerRoles is the least role each MinerService method needs: changing what
// rigs mine is an operator's job; reading it is a viewer's. Fetching a
// rig's logs is an operator's too: it sends the rig a command, and miner
// logs can echo pool credentials.
var MinerRoles = map[string]string{
	quarryv1.MinerService_PutFlightSheet_FullMethodName:    fleet.RoleOperator,
	quarryv1.MinerService_DeleteFlightSheet_FullMethodName: fleet.RoleOperator,
	quarryv1.MinerService_ApplyFlightSheet_FullMethodName:  fleet.RoleOperator,
	quarryv1.MinerService_RunBenchmark_FullMethodName:      fleet.RoleOperator,
	quarryv1.MinerService_ListFlightSheets_FullMethodName:  fleet.RoleViewer,
	quarryv1.MinerService_GetFlightSheet_FullMethodName:    fleet.RoleViewer,
	quarryv1.MinerService_GetRigLogs_FullMethodName:        fleet.RoleOperator,
	quarryv1.MinerService_ListBenchmarks_FullMethodName:    fleet.RoleViewer,
	quarryv1.MinerService_ListEvents_FullMethodName:        fleet.RoleViewer,
}

// Limits of the requests.
const (
	DefaultBenchmark = 2 * time.Minute
	MaxBenchmark     = 30 * time.Minute
	maxAlgorithms    = 16
	maxLogLines      = 5000
)

// MinerAudit is the audit action of each MinerService method that changes
// what rigs mine or asks a rig for something.
var MinerAudit = map[string]string{
	quarryv1.MinerService_PutFlightSheet_FullMethodName:    "flightsheet put",
	quarryv1.MinerService_DeleteFlightSheet_FullMethodName: "flightsheet delete",
	quarryv1.MinerService_ApplyFlightSheet_FullMethodName:  "flightsheet apply",
	quarryv1.MinerService_RunBenchmark_FullMethodName:      "benchmark",
	quarryv1.MinerService_GetRigLogs_FullMethodName:        "logs",
}

// MinerServer is quarry.v1.MinerService.
type MinerServer struct {
	quarryv1.UnimplementedMinerServiceServer
	S *Store
	// Resolve, if set, turns a sheet naming a catalogue miner into the
	// sheet rigs get, with the catalogue's pins written in.
	Resolve func(yaml []byte) ([]byte, error)
}

func (s *MinerServer) resolve(y []byte) ([]byte, error) {
	if s.Resolve == nil {
		return y, nil
	}
	out, err := s.Resolve(y)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

var _ quarryv1.MinerServiceServer = (*MinerServer)(nil)

func grpcErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, fleet.ErrUnknownRig), errors.Is(err, fleet.ErrUnknownCommand):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNoRigs), errors.Is(err, ErrOffline):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// PutFlightSheet stores a flight sheet.
func (s *MinerServer) PutFlightSheet(ctx context.Context, req *quarryv1.PutFlightSheetRequest) (*quarryv1.PutFlightSheetResponse, error) {
	rec, err := s.S.PutSheet(req.Yaml, auth.CallerFrom(ctx).Name)
	if rec != nil {
		auth.Note(ctx).Target = rec.Name
	}
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.PutFlightSheetResponse{Sheet: rec}, nil
}

// ListFlightSheets lists stored flight sheets. The list carries no YAML,
// so nothing secret, whatever the caller's role.
func (s *MinerServer) ListFlightSheets(context.Context, *quarryv1.ListFlightSheetsRequest) (*quarryv1.ListFlightSheetsResponse, error) {
	recs, err := s.S.Sheets()
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.ListFlightSheetsResponse{Sheets: recs}, nil
}

// GetFlightSheet returns one stored flight sheet.
// A viewer gets the YAML with pool passwords, API tokens and other
// credentials replaced.
func (s *MinerServer) GetFlightSheet(ctx context.Context, req *quarryv1.GetFlightSheetRequest) (*quarryv1.GetFlightSheetResponse, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	rec, err := s.S.Sheet(req.Name)
	if err != nil {
		return nil, grpcErr(err)
	}
	if !auth.SeesSecrets(ctx) {
		rec.Yaml = redact.YAML(rec.Yaml)
	}
	return &quarryv1.GetFlightSheetResponse{Sheet: rec}, nil
}

// DeleteFlightSheet removes a stored flight sheet.
func (s *MinerServer) DeleteFlightSheet(ctx context.Context, req *quarryv1.DeleteFlightSheetRequest) (*quarryv1.DeleteFlightSheetResponse, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	auth.Note(ctx).Target = req.Name
	err := s.S.DeleteSheet(req.Name)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.DeleteFlightSheetResponse{}, nil
}

// ApplyFlightSheet queues the sheet to every matching rig.
func (s *MinerServer) ApplyFlightSheet(ctx context.Context, req *quarryv1.ApplyFlightSheetRequest) (*quarryv1.ApplyFlightSheetResponse, error) {
	resp, err := s.apply(ctx, req)
	target := req.Name
	if resp != nil && resp.Sheet != nil {
		target = resp.Sheet.Name
	}
	detail := "selector=" + strconv.Quote(req.Selector)
	if resp != nil {
		var rigs []string
		for _, r := range resp.Rigs {
			rigs = append(rigs, r.RigName+":"+r.CommandId)
		}
		detail += " rigs=" + strings.Join(rigs, ",")
	}
	a := auth.Note(ctx)
	a.Target, a.Detail = target, detail+a.Detail
	if err != nil {
		return nil, grpcErr(err)
	}
	return resp, nil
}

func (s *MinerServer) apply(ctx context.Context, req *quarryv1.ApplyFlightSheetRequest) (*quarryv1.ApplyFlightSheetResponse, error) {
	if req.TtlSeconds < 0 {
		return nil, fmt.Errorf("%w: ttl_seconds must not be negative", ErrInvalid)
	}
	rigs, err := s.S.Match(req.Selector)
	if err != nil {
		return nil, err
	}
	var rec *quarryv1.FlightSheetRecord
	if len(req.Yaml) > 0 {
		fs, err := ParseSheet(req.Yaml)
		if err != nil {
			return nil, err
		}
		if req.Name != "" && req.Name != fs.Name {
			return nil, fmt.Errorf("%w: name %q differs from the sheet's name %q", ErrInvalid, req.Name, fs.Name)
		}
		if len(rigs) == 0 {
			return nil, fmt.Errorf("%w selector %q", ErrNoRigs, req.Selector)
		}
		if rec, err = s.S.PutSheet(req.Yaml, auth.CallerFrom(ctx).Name); err != nil {
			return nil, err
		}
		auth.Note(ctx).Detail = " (sheet stored)"
	} else {
		if req.Name == "" {
			return nil, fmt.Errorf("%w: name or yaml is required", ErrInvalid)
		}
		if rec, err = s.S.Sheet(req.Name); err != nil {
			return nil, err
		}
		if len(rigs) == 0 {
			return nil, fmt.Errorf("%w selector %q", ErrNoRigs, req.Selector)
		}
	}
	payload, err := s.resolve(rec.Yaml)
	if err != nil {
		return nil, err
	}
	resp := &quarryv1.ApplyFlightSheetResponse{Sheet: rec}
	var errs []error
	for _, r := range rigs {
		cmd, err := s.S.f.QueueCommand(r.Id, quarryv1.CommandKind_COMMAND_KIND_APPLY_FLIGHT_SHEET, payload, time.Duration(req.TtlSeconds)*time.Second)
		if err != nil {
			errs = append(errs, fmt.Errorf("rig %s: %w", r.Name, err))
			continue
		}
		resp.Rigs = append(resp.Rigs, &quarryv1.AppliedRig{RigId: r.Id, RigName: r.Name, CommandId: cmd.Command.Id, Online: r.Online})
	}
	return resp, errors.Join(errs...)
}

// GetRigLogs asks the rig for its miner's last lines and waits for them.
func (s *MinerServer) GetRigLogs(ctx context.Context, req *quarryv1.GetRigLogsRequest) (*quarryv1.GetRigLogsResponse, error) {
	resp, err := s.rigLogs(ctx, req)
	detail := ""
	if resp != nil {
		detail = resp.CommandId
	}
	a := auth.Note(ctx)
	a.Target, a.Detail = req.Rig, detail
	return resp, err
}

func (s *MinerServer) rigLogs(ctx context.Context, req *quarryv1.GetRigLogsRequest) (*quarryv1.GetRigLogsResponse, error) {
	id, err := s.S.f.Resolve(req.Rig)
	if err != nil {
		return nil, grpcErr(err)
	}
	if !s.S.f.Online(id) {
		return nil, grpcErr(fmt.Errorf("%w: %s; logs are read from the rig itself", ErrOffline, req.Rig))
	}
	n := req.Lines
	if n == 0 {
		n = 100
	}
	n = min(n, maxLogLines)
	cmd, err := s.S.f.QueueCommand(id, quarryv1.CommandKind_COMMAND_KIND_MINER_LOGS, []byte(strconv.Itoa(int(n))), time.Minute)
	if err != nil {
		return nil, grpcErr(err)
	}
	rec, err := s.wait(ctx, cmd.Command.Id)
	if err != nil {
		return nil, grpcErr(err)
	}
	if rec.Status != quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		return nil, status.Errorf(codes.Unavailable, "rig %s: %s", req.Rig, rec.Error)
	}
	resp := &quarryv1.GetRigLogsResponse{RigId: id, CommandId: cmd.Command.Id}
	if out := string(rec.Output); out != "" {
		resp.Lines = strings.Split(out, "\n")
	}
	return resp, nil
}

// wait polls a command until it ends or ctx does.
func (s *MinerServer) wait(ctx context.Context, id string) (*quarryv1.CommandRecord, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		rec, err := s.S.f.Command(id)
		if err != nil {
			return nil, err
		}
		switch rec.Status {
		case quarryv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, quarryv1.CommandStatus_COMMAND_STATUS_FAILED, quarryv1.CommandStatus_COMMAND_STATUS_EXPIRED:
			return rec, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// RunBenchmark queues a benchmark on one rig.
func (s *MinerServer) RunBenchmark(ctx context.Context, req *quarryv1.RunBenchmarkRequest) (*quarryv1.RunBenchmarkResponse, error) {
	resp, err := s.benchmark(req)
	detail := ""
	if resp != nil {
		detail = resp.CommandId + " sheets=" + strings.Join(resp.Sheets, ",")
	}
	a := auth.Note(ctx)
	a.Target, a.Detail = req.Rig, detail
	if err != nil {
		return nil, grpcErr(err)
	}
	return resp, nil
}

func (s *MinerServer) benchmark(req *quarryv1.RunBenchmarkRequest) (*quarryv1.RunBenchmarkResponse, error) {
	d := time.Duration(req.DurationSeconds) * time.Second
	if d == 0 {
		d = DefaultBenchmark
	}
	if d < time.Second || d > MaxBenchmark {
		return nil, fmt.Errorf("%w: duration %s: want 1s to %s", ErrInvalid, d, MaxBenchmark)
	}
	if len(req.Algorithms) > maxAlgorithms || len(req.Sheets) > maxAlgorithms {
		return nil, fmt.Errorf("%w: at most %d algorithms at a time", ErrInvalid, maxAlgorithms)
	}
	id, err := s.S.f.Resolve(req.Rig)
	if err != nil {
		return nil, err
	}
	algos := make([]string, 0, len(req.Algorithms))
	for _, a := range req.Algorithms {
		if a = market.CanonicalAlgorithm(a); a != "" {
			algos = append(algos, a)
		}
	}
	recs, err := s.S.sheetsFor(algos, req.Sheets)
	if err != nil {
		return nil, err
	}
	p := flightsheet.BenchmarkPayload{DurationSeconds: int64(d / time.Second)}
	resp := &quarryv1.RunBenchmarkResponse{RigId: id}
	for _, r := range recs {
		y, err := s.resolve(r.Yaml)
		if err != nil {
			return nil, err
		}
		p.Runs = append(p.Runs, flightsheet.BenchmarkRun{Algorithm: market.CanonicalAlgorithm(r.Algorithm), Sheet: string(y)})
		resp.Sheets = append(resp.Sheets, r.Name)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	// The command may wait for an offline rig about as long as it runs.
	cmd, err := s.S.f.QueueCommand(id, quarryv1.CommandKind_COMMAND_KIND_BENCHMARK, b, time.Hour+d*time.Duration(len(recs)))
	if err != nil {
		return nil, err
	}
	if err := s.S.trackBenchmark(cmd.Command.Id, id); err != nil {
		return nil, err
	}
	resp.CommandId = cmd.Command.Id
	return resp, nil
}

// ListBenchmarks lists the figures of one rig or of every rig.
func (s *MinerServer) ListBenchmarks(_ context.Context, req *quarryv1.ListBenchmarksRequest) (*quarryv1.ListBenchmarksResponse, error) {
	s.S.collect() // a benchmark that just finished shows at once
	if req.Rig == "" {
		return &quarryv1.ListBenchmarksResponse{Benchmarks: s.S.All()}, nil
	}
	id, err := s.S.f.Resolve(req.Rig)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.ListBenchmarksResponse{Benchmarks: s.S.list(id)}, nil
}

// ListEvents returns a rig's recent events, oldest first.
func (s *MinerServer) ListEvents(_ context.Context, req *quarryv1.ListEventsRequest) (*quarryv1.ListEventsResponse, error) {
	id, err := s.S.f.Resolve(req.Rig)
	if err != nil {
		return nil, grpcErr(err)
	}
	r, err := s.S.f.Rig(id)
	if err != nil {
		return nil, grpcErr(err)
	}
	ev := r.Events
	if req.Limit > 0 && int(req.Limit) < len(ev) {
		ev = ev[len(ev)-int(req.Limit):]
	}
	return &quarryv1.ListEventsResponse{RigId: id, Events: ev}, nil
}
