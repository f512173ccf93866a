package fleet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/quarryfleet/quarry/controller/auth"
	"github.com/quarryfleet/quarry/pkg/pki"
	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// Enrollment is what the agent service needs to enroll and renew rigs.
type Enrollment struct {
	CA          *pki.CA
	CertTTL     time.Duration
	GossipKeys  func() []string
	GossipJoin  func() []string
	EventPubKey []byte
	// GossipKeysChanged, if set, returns a channel closed at the next
	// change of GossipKeys; each rig's stream then pushes the new keyring,
	// the only way rigs take gossip keys after enrollment.
	GossipKeysChanged func() <-chan struct{}
	// GossipKeysSent, if set, is told each time a rig's stream has handed
	// it the keyring (in Welcome or pushed).
	GossipKeysSent func(rigID string, keys []string)
	// RigCertificate, if set, is given the verified certificate a rig
	// presents when its stream opens: its key signs the rig's gossip
	// identity.
	RigCertificate func(rigID string, cert *x509.Certificate)
}

// AgentServer implements AgentService.
type AgentServer struct {
	quarryv1.UnimplementedAgentServiceServer

	Fleet          *Fleet
	Enrollment     Enrollment
	ReportInterval time.Duration
	Log            *slog.Logger
	// OnConnect, if set, is called when a rig's stream is established and
	// again (with online=false) when it ends.
	OnConnect func(rigID string, online bool)
	// Controllers, if set, returns the client-facing gRPC addresses of the
	// controller group, sent to rigs in their settings so they can fail
	// over; nil (a single controller) sends none.
	Controllers func() []string

	limiterOnce sync.Once
	enrollFails *failureLimiter
}

// Enroll is the one method an anonymous peer may call, so its request is
// small and every refusal counts against the caller's address.
const (
	// MaxEnrollRequest bounds a whole EnrollRequest: a token, a hostname
	// and a CSR for an ECDSA or RSA-4096 key fit well inside it.
	MaxEnrollRequest = 8 << 10
	maxHostname      = 253 // the DNS limit
)

func (s *AgentServer) limiter() *failureLimiter {
	s.limiterOnce.Do(func() {
		s.enrollFails = newFailureLimiter(enrollFailBurst, enrollFailEvery, enrollFailKeys, nil)
	})
	return s.enrollFails
}

func (s *AgentServer) rigIdentity(ctx context.Context) (string, error) {
	id, _, err := s.rigCertificate(ctx)
	return id, err
}

// rigCertificate is rigIdentity with the verified certificate, whose key
// signs the rig's gossip identity.
func (s *AgentServer) rigCertificate(ctx context.Context) (string, *x509.Certificate, error) {
	id, leaf, err := auth.PeerIdentity(ctx)
	if err != nil {
		return "", nil, err
	}
	if id.Unit != pki.OURig {
		return "", nil, status.Error(codes.PermissionDenied, "certificate is not a rig certificate")
	}
	known, revoked := s.Fleet.Known(id.Name)
	if revoked {
		return "", nil, status.Errorf(codes.PermissionDenied, "rig %s: %v", id.Name, ErrRevoked)
	}
	if !known {
		return "", nil, status.Errorf(codes.PermissionDenied, "rig %s is not enrolled with this controller", id.Name)
	}
	return id.Name, leaf, nil
}

// RigFrom returns the id of the enrolled, unrevoked rig whose verified
// certificate made the call, for rig-facing services besides this one.
func RigFrom(ctx context.Context, f *Fleet) (string, error) {
	return (&AgentServer{Fleet: f}).rigIdentity(ctx)
}

// Connect is the agent's long-lived stream.
func (s *AgentServer) Connect(stream quarryv1.AgentService_ConnectServer) error {
	ctx := stream.Context()
	rigID, cert, err := s.rigCertificate(ctx)
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "expected Hello: %v", err)
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message on the stream must be Hello")
	}
	if hello.RigId != "" && hello.RigId != rigID {
		return status.Errorf(codes.PermissionDenied, "Hello claims rig %q but the certificate is for %q", hello.RigId, rigID)
	}
	if err := CheckLimits(hello); err != nil {
		s.Log.Warn("hello refused", "rig", rigID, "err", err)
		return status.Errorf(codes.InvalidArgument, "Hello refused: %v", err)
	}
	DropUnknown(hello)
	sess, err := s.Fleet.Attach(ctx, rigID)
	if err != nil {
		if errors.Is(err, ErrRevoked) {
			return status.Error(codes.PermissionDenied, err.Error())
		}
		return status.Error(codes.NotFound, err.Error())
	}
	defer s.Fleet.Detach(sess)
	if err := s.Fleet.SetHello(rigID, hello); err != nil {
		s.Log.Warn("store hello", "rig", rigID, "err", err)
	}
	if s.OnConnect != nil {
		s.OnConnect(rigID, true)
		defer s.OnConnect(rigID, false)
	}
	if cert != nil && s.Enrollment.RigCertificate != nil {
		s.Enrollment.RigCertificate(rigID, cert)
	}
	log := s.Log.With("rig", rigID)
	resume := s.Fleet.LastSeq(rigID) + 1
	keysChanged := s.gossipKeysChanged()
	keys := s.gossipKeys()
	if err := stream.Send(&quarryv1.ConnectResponse{Msg: &quarryv1.ConnectResponse_Welcome{Welcome: &quarryv1.Welcome{
		ResumeFromSeq: resume,
		Settings:      s.settings(keys),
	}}}); err != nil {
		return err
	}
	s.gossipKeysSent(rigID, keys)
	log.Info("agent connected", "resume_from", resume, "version", hello.Version)

	// The handler goroutine is the only writer (gRPC's one-sender rule);
	// one more goroutine reads. Two goroutines a rig keeps a large fleet's
	// stacks small.
	recvErr := make(chan error, 1)
	go func() { recvErr <- s.recvLoop(sess, stream, log) }()

	fromRecv, err := s.sendLoop(sess, stream, recvErr, keysChanged)
	if fromRecv || err != nil {
		return err
	}
	cause := context.Cause(sess.Context())
	switch {
	case errors.Is(cause, ErrRevoked):
		log.Info("agent stream closed: rig revoked")
		return status.Error(codes.PermissionDenied, cause.Error())
	case errors.Is(cause, ErrReplaced):
		log.Info("agent stream closed: replaced by a newer one")
		return status.Error(codes.Aborted, cause.Error())
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Error(codes.Unavailable, "controller is shutting down")
}

func (s *AgentServer) recvLoop(sess *Session, stream quarryv1.AgentService_ConnectServer, log *slog.Logger) error {
	ctx := sess.Context()
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return nil // the agent closed its side: a clean end
			}
			log.Warn("agent stream receive failed", "err", err)
			return err
		}
		switch m := msg.Msg.(type) {
		case *quarryv1.ConnectRequest_Report:
			if m.Report.GetSeq() == 0 {
				return status.Error(codes.InvalidArgument, "report sequence numbers start at 1")
			}
			// Refusing ends only this rig's stream; nothing of the report
			// is stored, and other rigs' reports commit as usual.
			if err := CheckLimits(m.Report); err != nil {
				log.Warn("report refused", "seq", m.Report.GetSeq(), "err", err)
				return status.Errorf(codes.InvalidArgument, "report %d refused: %v", m.Report.GetSeq(), err)
			}
			DropUnknown(m.Report)
			if err := s.Fleet.Ingest(ctx, sess.RigID, m.Report, sess.Ack); err != nil {
				return status.Errorf(codes.Unavailable, "ingest: %v", err)
			}
		case *quarryv1.ConnectRequest_CommandResult:
			res := m.CommandResult
			DropUnknown(res)
			if err := CheckLimits(res); err != nil {
				log.Warn("command result refused", "err", err)
				res = &quarryv1.CommandResult{CommandId: Truncate(res.CommandId, MaxFieldBytes),
					Status: quarryv1.CommandStatus_COMMAND_STATUS_FAILED, Error: "the rig's result was refused: " + err.Error()}
			}
			if err := s.Fleet.CompleteCommand(sess.RigID, res); err != nil {
				log.Warn("command result rejected", "command", m.CommandResult.GetCommandId(), "err", err)
			}
		case *quarryv1.ConnectRequest_Hello:
			return status.Error(codes.InvalidArgument, "duplicate Hello on an established stream")
		default:
			return status.Error(codes.InvalidArgument, "empty or unknown message on the agent stream")
		}
	}
}

// sendLoop writes commands and acks until the session ends (false, nil),
// the receive side fails (true, its error) or a send fails (false, that
// error).
func (s *AgentServer) sendLoop(sess *Session, stream quarryv1.AgentService_ConnectServer, recvErr <-chan error, keysChanged <-chan struct{}) (fromRecv bool, err error) {
	pending, perr := s.Fleet.PendingCommands(sess.RigID)
	if perr != nil {
		return false, status.Errorf(codes.Internal, "%v", perr)
	}
	send := func(c *quarryv1.Command) error {
		if err := stream.Send(&quarryv1.ConnectResponse{Msg: &quarryv1.ConnectResponse_Command{Command: c}}); err != nil {
			return err
		}
		s.Fleet.CommandHandedToStream(c)
		if err := s.Fleet.MarkSent(c.Id); err != nil {
			s.Log.Warn("mark command sent", "command", c.Id, "err", err)
		}
		return nil
	}
	seen := make(map[string]bool, len(pending))
	for _, c := range pending {
		seen[c.Id] = true
		if err := send(c); err != nil {
			return false, err
		}
	}
	var lastAck uint64
	for {
		select {
		case rerr := <-recvErr:
			return true, rerr
		case <-sess.Context().Done():
			return false, nil
		case c := <-sess.Commands():
			if seen[c.Id] {
				continue // already sent from the pending list
			}
			if err := send(c); err != nil {
				return false, err
			}
		case <-keysChanged:
			keysChanged = s.gossipKeysChanged()
			keys := s.gossipKeys()
			if err := stream.Send(&quarryv1.ConnectResponse{Msg: &quarryv1.ConnectResponse_Settings{Settings: s.settings(keys)}}); err != nil {
				return false, err
			}
			s.gossipKeysSent(sess.RigID, keys)
		case <-sess.AckNotify():
			up := sess.AckedUpTo()
			if up <= lastAck {
				continue
			}
			if err := stream.Send(&quarryv1.ConnectResponse{Msg: &quarryv1.ConnectResponse_Ack{Ack: &quarryv1.Ack{UpToSeq: up}}}); err != nil {
				return false, err
			}
			lastAck = up
		}
	}
}

// Enroll trades a join token and a certificate request for a certificate.
func (s *AgentServer) Enroll(ctx context.Context, req *quarryv1.EnrollRequest) (*quarryv1.EnrollResponse, error) {
	e := s.Enrollment
	if e.CA == nil {
		return nil, status.Error(codes.FailedPrecondition, "enrollment is not available")
	}
	src := ""
	if p, ok := peer.FromContext(ctx); ok {
		src = sourceHost(p.Addr)
	}
	lim := s.limiter()
	if ok, wait := lim.Allowed(src); !ok {
		// Not audited: the limit exists so that a flood of refusals
		// cannot fill the audit log.
		return nil, status.Errorf(codes.ResourceExhausted, "too many failed enrolments from %s; try again in %s", src, wait.Round(time.Second))
	}
	refuse := func(code codes.Code, err error) error {
		lim.Failed(src)
		s.audit("", "enroll", req.Hostname, "refused", "from "+src+": "+err.Error())
		return status.Error(code, err.Error())
	}
	if n := proto.Size(req); n > MaxEnrollRequest {
		return nil, refuse(codes.InvalidArgument, fmt.Errorf("enroll request is %d bytes; the limit is %d", n, MaxEnrollRequest))
	}
	if len(req.Hostname) > maxHostname || strings.ContainsFunc(req.Hostname, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, refuse(codes.InvalidArgument, fmt.Errorf("hostname must be at most %d bytes without spaces or control characters", maxHostname))
	}
	if len(req.CsrDer) == 0 {
		return nil, refuse(codes.InvalidArgument, errors.New("certificate request is required"))
	}
	// The CSR is checked in full before the token is touched, so a bad
	// request never spends a use of a single-use token.
	if err := pki.CheckRequest(req.CsrDer); err != nil {
		return nil, refuse(codes.InvalidArgument, err)
	}
	rigID, name, err := s.Fleet.Redeem(req.Token, e.CA.Hash(), req.Hostname)
	if err != nil {
		switch {
		case errors.Is(err, pki.ErrMalformedToken), errors.Is(err, ErrTokenUnknown),
			errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenUsedUp), errors.Is(err, ErrTokenCA):
			return nil, refuse(codes.PermissionDenied, err)
		}
		s.audit("", "enroll", req.Hostname, "error", err.Error())
		return nil, status.Errorf(codes.Internal, "enroll: %v", err)
	}
	der, err := e.CA.SignRequest(req.CsrDer, rigID, pki.OURig, e.CertTTL, s.Fleet.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	s.audit(rigID, "enroll", name, "ok", "hostname "+req.Hostname)
	resp := &quarryv1.EnrollResponse{RigId: rigID, CertificateDer: der, CaCertificateDer: e.CA.CertDER, EventPublicKey: e.EventPubKey}
	if e.GossipKeys != nil {
		resp.GossipKeys = e.GossipKeys()
	}
	if e.GossipJoin != nil {
		resp.GossipJoin = e.GossipJoin()
	}
	return resp, nil
}

// Renew issues a fresh certificate to a rig that still holds a valid one.
func (s *AgentServer) Renew(ctx context.Context, req *quarryv1.RenewRequest) (*quarryv1.RenewResponse, error) {
	rigID, err := s.rigIdentity(ctx)
	if err != nil {
		return nil, err
	}
	der, err := s.Enrollment.CA.SignRequest(req.CsrDer, rigID, pki.OURig, s.Enrollment.CertTTL, s.Fleet.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return &quarryv1.RenewResponse{CertificateDer: der}, nil
}

// audit records an enrolment attempt. AgentService is not an admin
// service, so the audit interceptor leaves it alone: its one audited
// method says here who the caller turned out to be.
func (s *AgentServer) audit(rig, action, target, result, detail string) {
	_ = s.Fleet.Audit(&quarryv1.AuditEntry{Who: rig, Role: auth.RoleRig, Action: action, Target: target, Result: result, Detail: detail})
}

// settings is what a rig is told at Welcome and on each push: keys is the
// current gossip keyring, so a rig that missed a key rotation while away
// catches up when it reconnects; the gossip join address is this
// controller's, since the one from enrollment may be a dead leader's.
func (s *AgentServer) settings(keys []string) *quarryv1.AgentSettings {
	st := &quarryv1.AgentSettings{ReportIntervalSeconds: uint32(s.ReportInterval / time.Second), GossipKeys: keys}
	if s.Controllers != nil {
		st.Controllers = s.Controllers()
	}
	if s.Enrollment.GossipJoin != nil {
		st.GossipJoin = s.Enrollment.GossipJoin()
	}
	return st
}

// gossipKeysChanged is nil (never ready) without a gossip keyring.
func (s *AgentServer) gossipKeysChanged() <-chan struct{} {
	if s.Enrollment.GossipKeysChanged == nil {
		return nil
	}
	return s.Enrollment.GossipKeysChanged()
}

func (s *AgentServer) gossipKeysSent(rigID string, keys []string) {
	if s.Enrollment.GossipKeysSent != nil && len(keys) > 0 {
		s.Enrollment.GossipKeysSent(rigID, keys)
	}
}

func (s *AgentServer) gossipKeys() []string {
	if s.Enrollment.GossipKeys == nil {
		return nil
	}
	return s.Enrollment.GossipKeys()
}
