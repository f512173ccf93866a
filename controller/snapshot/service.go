package snapshot

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/pkg/store"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// OperatorRoles is the least role each OperatorService method needs. A
// snapshot holds every fact of the fleet (token hashes, billing, audit)
// and a restore replaces them all: both are the admin's.
var OperatorRoles = map[string]string{
	quarryv1.OperatorService_SaveSnapshot_FullMethodName:    auth.RoleAdmin,
	quarryv1.OperatorService_RestoreSnapshot_FullMethodName: auth.RoleAdmin,
}

// OperatorAudit is the audit action of each OperatorService method.
var OperatorAudit = map[string]string{
	quarryv1.OperatorService_SaveSnapshot_FullMethodName:    "snapshot save",
	quarryv1.OperatorService_RestoreSnapshot_FullMethodName: "snapshot restore",
}

// chunkSize is the size of the pieces a snapshot is streamed in.
const chunkSize = 256 << 10

// OperatorServer is quarry.v1.OperatorService.
type OperatorServer struct {
	quarryv1.UnimplementedOperatorServiceServer
	DB *store.DB
	// DBPath is the database file; a restore is staged beside it.
	DBPath string
	// Required are buckets every controller database holds; a snapshot
	// without them is refused.
	Required []string
	// Count names buckets whose key counts a restore reports, as
	// rigs, flight_sheets and customers.
	Count map[string]string
	// MaxRestoreBytes caps an uploaded snapshot.
	MaxRestoreBytes int64
	// RestoreRefused, when set, is why this controller takes no restore:
	// a group member's file is the group's, and a staged file would
	// replace one member's copy only.
	RestoreRefused string
}

func grpcErr(err error) error {
	return auth.StatusError(err, func(err error) (codes.Code, bool) {
		switch {
		case errors.Is(err, ErrInvalid):
			return codes.InvalidArgument, true
		case errors.Is(err, ErrTooLarge):
			return codes.ResourceExhausted, true
		}
		return codes.OK, false
	})
}

// SaveSnapshot implements quarry.v1.OperatorService.
func (s *OperatorServer) SaveSnapshot(_ *quarryv1.SaveSnapshotRequest, stream quarryv1.OperatorService_SaveSnapshotServer) error {
	cw := &chunkWriter{stream: stream, buf: make([]byte, 0, chunkSize)}
	sum, err := Save(stream.Context(), s.DB, cw)
	if err == nil {
		err = cw.flush(&quarryv1.SnapshotChunk{Last: true, Size: sum.Size, Sha256: sum.SHA256})
	}
	auth.Note(stream.Context()).Detail = "size=" + strconv.FormatInt(sum.Size, 10) + " sha256=" + sum.SHA256
	return grpcErr(err)
}

// chunkWriter sends what the copy writes in chunks of chunkSize.
type chunkWriter struct {
	stream quarryv1.OperatorService_SaveSnapshotServer
	buf    []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), chunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == chunkSize {
			if err := w.flush(&quarryv1.SnapshotChunk{}); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush(c *quarryv1.SnapshotChunk) error {
	c.Data = w.buf
	err := w.stream.Send(c)
	w.buf = make([]byte, 0, chunkSize) // Send may keep the slice until written
	return err
}

// RestoreSnapshot implements quarry.v1.OperatorService.
func (s *OperatorServer) RestoreSnapshot(stream quarryv1.OperatorService_RestoreSnapshotServer) error {
	if s.RestoreRefused != "" {
		auth.Note(stream.Context()).Detail = "refused: group member"
		return status.Error(codes.FailedPrecondition, s.RestoreRefused)
	}
	resp, err := s.restore(stream)
	note := auth.Note(stream.Context())
	if resp != nil {
		note.Target = resp.StagedPath
		note.Detail = fmt.Sprintf("size=%d sha256=%s rigs=%d", resp.Size, resp.Sha256, resp.Rigs)
	}
	if err != nil {
		return grpcErr(err)
	}
	return stream.SendAndClose(resp)
}

func (s *OperatorServer) restore(stream quarryv1.OperatorService_RestoreSnapshotServer) (*quarryv1.RestoreSnapshotResponse, error) {
	count := make([]string, 0, len(s.Count))
	for _, b := range s.Count {
		count = append(count, b)
	}
	st, err := NewStager(s.DBPath, s.Required, count, s.MaxRestoreBytes)
	if err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			st.Abort()
			return nil, fmt.Errorf("%w: the upload ended without its closing message (size and sha256)", ErrInvalid)
		}
		if err != nil {
			st.Abort()
			return nil, err
		}
		if _, err := st.Write(msg.Data); err != nil {
			st.Abort()
			return nil, err
		}
		if msg.Last {
			sm, err := st.Commit(msg.Size, msg.Sha256)
			if err != nil {
				return nil, err
			}
			return &quarryv1.RestoreSnapshotResponse{
				Size: sm.Size, Sha256: sm.SHA256, StagedPath: s.DBPath + StagedSuffix,
				Rigs:         int64(sm.Keys[s.Count["rigs"]]),
				FlightSheets: int64(sm.Keys[s.Count["flight_sheets"]]),
				Customers:    int64(sm.Keys[s.Count["customers"]]),
			}, nil
		}
	}
}
