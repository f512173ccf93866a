// Package leaderhint is the wire form of a standby controller's refusal:
// only the leader of the controller group serves, and a standby answers
// every call with a refusal that may name the leader, so clients can move
// there instead of trying addresses blindly.
package leaderhint

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reason and Domain identify the refusal's ErrorInfo detail. Clients match
// on these rather than on the message, which is for people.
const (
	Reason = "NOT_LEADER"
	Domain = "quarry"
	// MetadataLeader is the ErrorInfo metadata key holding the leader's
	// client-facing gRPC address.
	MetadataLeader = "leader"
)

// maxAddrLen bounds the hint a client accepts: it comes from the network
// and ends up in logs and error messages.
const maxAddrLen = 256

// Refusal is the error a standby controller returns for any call:
// codes.Unavailable, message "not the leader" (plus "; leader is at ADDR"
// when leader is known), carrying an errdetails.ErrorInfo with Reason
// NOT_LEADER, Domain quarry and the leader's address under "leader".
// Unavailable is the code gRPC clients already treat as "try elsewhere
// or later", so an old client fails over or retries rather than giving up.
func Refusal(leader string) error {
	msg := "not the leader"
	if leader != "" {
		msg += "; leader is at " + leader
	}
	st := status.New(codes.Unavailable, msg)
	info := &errdetails.ErrorInfo{Reason: Reason, Domain: Domain}
	if leader != "" {
		info.Metadata = map[string]string{MetadataLeader: leader}
	}
	withInfo, err := st.WithDetails(info)
	if err != nil {
		// Only a detail that cannot be marshalled fails here; the bare
		// status still tells the client to go elsewhere.
		return st.Err()
	}
	return withInfo.Err()
}

// Leader reports whether err is a refusal from a standby controller and,
// if the standby knew it, the leader's client-facing gRPC address ("" when
// unknown or implausibly long). The address is only a hint: a caller
// should follow it only to an address it already trusts.
func Leader(err error) (addr string, refused bool) {
	if err == nil {
		return "", false
	}
	st, ok := status.FromError(err)
	if !ok {
		// status.FromError unwraps only one layer of %w; look deeper so
		// wrapped refusals are still recognised.
		var se interface{ GRPCStatus() *status.Status }
		if !errors.As(err, &se) {
			return "", false
		}
		st = se.GRPCStatus()
	}
	if st.Code() != codes.Unavailable {
		return "", false
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != Reason || info.GetDomain() != Domain {
			continue
		}
		leader := info.GetMetadata()[MetadataLeader]
		if len(leader) > maxAddrLen {
			leader = ""
		}
		return leader, true
	}
	return "", false
}
