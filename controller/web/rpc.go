package web

import (
	"context"
	"errors"
	"io"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/auth"
)

// RPC calls the controller's admin services as the signed-in user. The
// services' own method→role table decides what is allowed and their audit
// interceptor records it, so a page can do no more than the same user
// could with quarryctl. *auth.Gateway fits.
type RPC interface {
	Call(ctx context.Context, c auth.Caller, fullMethod string, decode func(any) error) (any, error)
	Methods() map[string]string
}

// maxRPCBody caps a request from the browser; the largest legitimate one
// is a flight sheet or a profit settings document.
const maxRPCBody = 1 << 20

// rpcMethods lists the methods the page may call and the role each needs,
// for showing only the controls the user may use. The server checks again
// on every call.
func (s *Server) rpcMethods(w http.ResponseWriter, r *http.Request) {
	if s.opts.RPC == nil {
		writeJSON(w, map[string]any{"methods": map[string]string{}})
		return
	}
	writeJSON(w, map[string]any{"methods": s.opts.RPC.Methods()})
}

// rpc answers POST /api/rpc/{service}/{method}: the body is the request
// message in protobuf JSON, the answer the response message (field names
// as in the .proto files, every field present).
func (s *Server) rpc(w http.ResponseWriter, r *http.Request) {
	if s.opts.RPC == nil {
		writeError(w, http.StatusNotFound, "the admin services are not available on this dashboard")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRPCBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request larger than 1 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "reading request: "+err.Error())
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	sess := sessionFrom(r.Context())
	method := "/" + r.PathValue("service") + "/" + r.PathValue("method")
	resp, err := s.opts.RPC.Call(r.Context(), auth.Caller{Name: sess.Who, Role: sess.Role}, method, func(v any) error {
		m, ok := v.(proto.Message)
		if !ok {
			return errors.New("not a protobuf message")
		}
		return protojson.Unmarshal(body, m)
	})
	if err != nil {
		st := status.Convert(err)
		writeJSONStatus(w, httpStatusOf(st.Code()), map[string]string{"error": st.Message(), "code": st.Code().String()})
		return
	}
	m, ok := resp.(proto.Message)
	if !ok {
		writeError(w, http.StatusInternalServerError, "answer is not a protobuf message")
		return
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// httpStatusOf maps a gRPC code to the HTTP status a browser expects.
func httpStatusOf(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound, codes.Unimplemented:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted, codes.FailedPrecondition:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
