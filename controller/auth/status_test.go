package auth

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatusError(t *testing.T) {
	errGone := errors.New("gone")
	codeOf := func(err error) (codes.Code, bool) {
		if errors.Is(err, errGone) {
			return codes.NotFound, true
		}
		return codes.OK, false
	}
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"domain error, wrapped", fmt.Errorf("job x: %w", errGone), codes.NotFound},
		{"cancelled call", fmt.Errorf("read: %w", context.Canceled), codes.Canceled},
		{"expired call", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"already a status", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied},
		{"anything else", errors.New("disk on fire"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := StatusError(tc.err, codeOf)
			if status.Code(got) != tc.want || status.Convert(got).Message() == "" {
				t.Errorf("StatusError(%v) = %v, want code %s", tc.err, got, tc.want)
			}
		})
	}
	if StatusError(nil, codeOf) != nil {
		t.Error("nil error mapped to a status")
	}
}
