package catalogue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/controller/fleet"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// CatalogueRoles is the least role each CatalogueService method needs:
// what rigs may run is an admin's decision; the list is a viewer's to read.
var CatalogueRoles = map[string]string{
	quarryv1.CatalogueService_AddMiner_FullMethodName:    fleet.RoleAdmin,
	quarryv1.CatalogueService_RemoveMiner_FullMethodName: fleet.RoleAdmin,
	quarryv1.CatalogueService_ListMiners_FullMethodName:  fleet.RoleViewer,
}

// CatalogueAudit is the audit action of each CatalogueService method that
// changes what rigs may run.
var CatalogueAudit = map[string]string{
	quarryv1.CatalogueService_AddMiner_FullMethodName:    "miner add",
	quarryv1.CatalogueService_RemoveMiner_FullMethodName: "miner remove",
}

// chunkSize is the size of the archive chunks streamed to rigs.
const chunkSize = 256 << 10

func grpcErr(err error) error {
	return auth.StatusError(err, func(err error) (codes.Code, bool) {
		switch {
		case errors.Is(err, ErrNotFound):
			return codes.NotFound, true
		case errors.Is(err, ErrExists):
			return codes.AlreadyExists, true
		case errors.Is(err, ErrInvalid):
			return codes.InvalidArgument, true
		case errors.Is(err, ErrInUse):
			return codes.FailedPrecondition, true
		}
		return codes.OK, false
	})
}

// CatalogueServer is quarry.v1.CatalogueService.
type CatalogueServer struct {
	quarryv1.UnimplementedCatalogueServiceServer
	S   *Store
	Log *slog.Logger
	// SheetsUsing, if set, names the stored flight sheets that run a
	// catalogue version; such a version is not removed, so that applying
	// them keeps working.
	SheetsUsing func(name, version string) ([]string, error)
}

func auditTo(f *fleet.Fleet, log *slog.Logger, who, role, action, target string, err error, detail string) {
	result := "ok"
	if err != nil {
		result = "error: " + err.Error()
	}
	if aerr := f.Audit(&quarryv1.AuditEntry{Who: who, Role: role, Action: action, Target: target, Result: result, Detail: detail}); aerr != nil && log != nil {
		log.Error("audit write failed", "action", action, "err", aerr)
	}
}

// AddMiner stores an uploaded or fetched archive.
func (s *CatalogueServer) AddMiner(stream quarryv1.CatalogueService_AddMinerServer) error {
	ctx := stream.Context()
	m, target, err := s.add(stream)
	detail := ""
	if m != nil {
		detail = "sha256=" + m.Sha256 + " size=" + strconv.FormatInt(m.Size, 10) + " binary=" + m.Binary + " source=" + m.Source
	}
	note := auth.Note(ctx)
	note.Target, note.Detail = target, detail
	if err != nil {
		return grpcErr(err)
	}
	return stream.SendAndClose(&quarryv1.AddMinerResponse{Miner: m})
}

func (s *CatalogueServer) add(stream quarryv1.CatalogueService_AddMinerServer) (*quarryv1.CatalogueMiner, string, error) {
	first, err := stream.Recv()
	if err != nil {
		return nil, "", err
	}
	h := first.GetHeader()
	if h == nil {
		return nil, "", fmt.Errorf("%w: the first message must be the header", ErrInvalid)
	}
	target := h.Name + " " + h.Version
	who := auth.CallerFrom(stream.Context()).Name
	if h.Url != "" {
		m, err := s.S.AddURL(stream.Context(), h, who)
		return m, target, err
	}
	m, err := s.S.Add(h, &chunkReader{stream: stream}, who)
	return m, target, err
}

// chunkReader reads the upload's chunks as one stream.
type chunkReader struct {
	stream quarryv1.CatalogueService_AddMinerServer
	buf    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		msg, err := r.stream.Recv()
		if err != nil {
			return 0, err // io.EOF ends the archive
		}
		if msg.GetHeader() != nil {
			return 0, fmt.Errorf("%w: a second header", ErrInvalid)
		}
		r.buf = msg.GetChunk()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// ListMiners lists the catalogue.
func (s *CatalogueServer) ListMiners(_ context.Context, req *quarryv1.ListMinersRequest) (*quarryv1.ListMinersResponse, error) {
	ms, err := s.S.List(req.Name)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.ListMinersResponse{Miners: ms}, nil
}

// RemoveMiner deletes one version.
func (s *CatalogueServer) RemoveMiner(ctx context.Context, req *quarryv1.RemoveMinerRequest) (*quarryv1.RemoveMinerResponse, error) {
	err := s.remove(req)
	auth.Note(ctx).Target = req.Name + " " + req.Version
	if err != nil {
		return nil, grpcErr(err)
	}
	return &quarryv1.RemoveMinerResponse{}, nil
}

func (s *CatalogueServer) remove(req *quarryv1.RemoveMinerRequest) error {
	if _, err := s.S.Get(req.Name, req.Version); err != nil {
		return err
	}
	if s.SheetsUsing != nil {
		names, err := s.SheetsUsing(req.Name, req.Version)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return fmt.Errorf("miner %s %s is %w: %s; change or delete them first", req.Name, req.Version, ErrInUse, strings.Join(names, ", "))
		}
	}
	return s.S.Remove(req.Name, req.Version)
}

// DownloadServer is quarry.v1.MinerDownloadService: any enrolled,
// unrevoked rig may fetch catalogue archives, identified by its
// certificate; the archives hold nothing secret.
type DownloadServer struct {
	quarryv1.UnimplementedMinerDownloadServiceServer
	S   *Store
	Log *slog.Logger
}

// FetchMinerArchive streams an archive from the requested offset.
func (s *DownloadServer) FetchMinerArchive(req *quarryv1.FetchMinerArchiveRequest, stream quarryv1.MinerDownloadService_FetchMinerArchiveServer) error {
	rig, err := fleet.RigFrom(stream.Context(), s.S.f)
	if err != nil {
		return err
	}
	sent, err := s.fetch(req, stream)
	auditTo(s.S.f, s.Log, rig, "rig", "miner fetch", req.Name+" "+req.Version, err,
		"offset="+strconv.FormatInt(req.Offset, 10)+" sent="+strconv.FormatInt(sent, 10))
	return grpcErr(err)
}

func (s *DownloadServer) fetch(req *quarryv1.FetchMinerArchiveRequest, stream quarryv1.MinerDownloadService_FetchMinerArchiveServer) (int64, error) {
	f, m, err := s.S.OpenArchive(req.Name, req.Version, req.Offset)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	off, sent := req.Offset, int64(0)
	buf := make([]byte, chunkSize)
	first := true
	for off < m.Size || first {
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), m.Size-off)])
		if err != nil && n == 0 && off < m.Size {
			return sent, fmt.Errorf("read archive: %w", err)
		}
		c := &quarryv1.MinerArchiveChunk{Offset: off, Data: buf[:n]}
		if first {
			c.Size, c.Sha256, first = m.Size, m.Sha256, false
		}
		if err := stream.Send(c); err != nil {
			return sent, err
		}
		off += int64(n)
		sent += int64(n)
	}
	return sent, nil
}
