package auth

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StatusError is how a service answers with a domain error: codeOf gives
// the status code of the domain's own errors; a cancelled or expired call
// keeps its context code, an error that already is a status keeps it, and
// anything else is Internal.
func StatusError(err error, codeOf func(error) (codes.Code, bool)) error {
	if err == nil {
		return nil
	}
	if c, ok := codeOf(err); ok {
		return status.Error(c, err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}
