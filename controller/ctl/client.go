// Package ctl is quarryctl, the admin command line: it finds the
// controller and a credential, then calls FleetService.
package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/quarryfleet/quarry/pkg/leaderhint"
)

// FileConfig is what 'quarryctl login' stores.
type FileConfig struct {
	// Controller is one controller address, or several comma-separated.
	Controller string `yaml:"controller"`
	Token      string `yaml:"token"`
	CAPEM      string `yaml:"ca_pem"`
}

// Options are the global flags.
type Options struct {
	// Controllers are the controller addresses to try, in order; each
	// entry may itself be a comma-separated list.
	Controllers []string
	Token       string
	CAFile      string
	DataDir     string
	ConfigPath  string
	Output      string
	Timeout     time.Duration

	// chosen is the address that last served, tried first by later calls
	// of this process so a failover is paid for once.
	chosen string
}

// DefaultConfigPath is where login keeps the credential.
func DefaultConfigPath() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "quarry", "quarryctl.yaml")
	}
	return ".quarryctl.yaml"
}

// defaultController is where a controller on this machine listens.
const defaultController = "127.0.0.1:7443"

// resolved is the controller addresses, credential and CA after all sources
// have been consulted.
type resolved struct {
	addrs []string
	token string
	ca    *x509.CertPool
	from  string
}

// resolve takes, in order: flags and environment, then the login file, then
// the local controller's data dir, so 'quarryctl rigs list' works with no
// flags next to a local controller.
func (o *Options) resolve() (resolved, error) {
	r := resolved{addrs: splitAddrs(o.Controllers), token: o.Token}
	var caPEM []byte
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return r, fmt.Errorf("--ca: %w", err)
		}
		caPEM = b
	}
	if fc, err := readFileConfig(o.ConfigPath); err == nil {
		if len(r.addrs) == 0 {
			r.addrs = splitAddrs([]string{fc.Controller})
		}
		if r.token == "" {
			r.token = fc.Token
			r.from = o.ConfigPath
		}
		if caPEM == nil && fc.CAPEM != "" {
			caPEM = []byte(fc.CAPEM)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("config %s: %w", o.ConfigPath, err)
	}
	if r.token == "" {
		if b, err := os.ReadFile(filepath.Join(o.DataDir, "admin.token")); err == nil {
			r.token = strings.TrimSpace(string(b))
			r.from = filepath.Join(o.DataDir, "admin.token")
		}
	}
	if caPEM == nil {
		if b, err := os.ReadFile(filepath.Join(o.DataDir, "ca.crt")); err == nil {
			caPEM = b
		}
	}
	if len(r.addrs) == 0 {
		r.addrs = []string{defaultController}
	}
	for _, a := range r.addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return r, fmt.Errorf("--controller %q: %w", a, err)
		}
	}
	if caPEM == nil {
		return r, fmt.Errorf("no controller CA certificate: run 'quarryctl login' or pass --ca (a local controller keeps it in %s)", filepath.Join(o.DataDir, "ca.crt"))
	}
	r.ca = x509.NewCertPool()
	if !r.ca.AppendCertsFromPEM(caPEM) {
		return r, errors.New("controller CA certificate is not valid PEM")
	}
	if r.token == "" {
		return r, errors.New("no credential: run 'quarryctl login --token TOKEN' or pass --token")
	}
	return r, nil
}

// splitAddrs flattens comma-separated entries, dropping blanks and repeats
// so each address is tried at most once per call.
func splitAddrs(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range in {
		for a := range strings.SplitSeq(e, ",") {
			if a = strings.TrimSpace(a); a != "" && !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func readFileConfig(path string) (FileConfig, error) {
	var fc FileConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return fc, err
	}
	if err := yaml.Unmarshal(b, &fc); err != nil {
		return fc, err
	}
	return fc, nil
}

type bearer struct{ token string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// connect dials addr with the resolved CA and credential. The TLS name is
// the address's own host, so each controller of a group is verified
// against its own certificate.
func (o *Options) connect(r resolved, addr string) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--controller %q: %w", addr, err)
	}
	tc := &tls.Config{RootCAs: r.ca, ServerName: host, MinVersion: tls.VersionTLS13}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc)), grpc.WithPerRPCCredentials(bearer{r.token})}, o.cleanReplies()...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("controller %s: %w", addr, err)
	}
	return conn, nil
}

// finalError marks an error that must not move the call to another
// controller, such as a stream that failed after output was printed.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }
func (e finalError) Unwrap() error { return e.err }

// noFailover wraps err so withController returns it as it is instead of
// trying the next controller.
func noFailover(err error) error {
	if err == nil {
		return nil
	}
	return finalError{err}
}

// attempt is one controller tried during a call and why it did not serve.
type attempt struct {
	addr string
	why  string
	err  error
}

// allFailed is the error of a call no controller served: it names each
// address tried and its reason.
type allFailed []attempt

func (e allFailed) Error() string {
	parts := make([]string, len(e))
	for i, a := range e {
		parts[i] = a.addr + ": " + a.why
	}
	return fmt.Sprintf("no controller served the call (tried %d): %s", len(e), strings.Join(parts, "; "))
}

func (e allFailed) Unwrap() []error {
	errs := make([]error, len(e))
	for i, a := range e {
		errs[i] = a.err
	}
	return errs
}

// withController runs fn against the configured controllers until one
// serves it. A controller that cannot be reached, or a standby refusing
// because it is not the leader, moves the call on: to the leader the
// standby names when that address is one of the configured ones, else to
// the next address in order. A standby's hint to any other address is
// ignored: the standby may be compromised, and following it would send
// the bearer token to a server of its choosing. Each address is tried at
// most once per call; any other error is the call's answer. timeout, when
// positive, bounds each attempt.
//
// An unreachable controller answers before any handler runs and a
// refusal is sent instead of running one, so moving on does not repeat a
// call's effect.
func (o *Options) withController(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, conn grpc.ClientConnInterface) error) error {
	r, err := o.resolve()
	if err != nil {
		return err
	}
	configured := func(a string) bool { return slices.Contains(r.addrs, a) }
	addr := r.addrs[0]
	if configured(o.chosen) {
		addr = o.chosen
	}
	tried := map[string]bool{}
	var failed allFailed
	for addr != "" {
		tried[addr] = true
		err := o.try(ctx, r, addr, timeout, fn)
		var final finalError
		if errors.As(err, &final) {
			return explain(addr, final.err)
		}
		if err == nil {
			o.chosen = addr
			return nil
		}
		hint, refused := leaderhint.Leader(err)
		if !refused && !isConnError(err) {
			o.chosen = addr
			return explain(addr, err)
		}
		failed = append(failed, attempt{addr, why(err, hint, refused, configured(hint)), err})
		addr = nextAddr(r.addrs, addr, hint, tried)
	}
	if len(failed) == 1 {
		return explain(failed[0].addr, failed[0].err)
	}
	return failed
}

// why is the short reason an address did not serve, for the error that
// lists every address tried.
func why(err error, hint string, refused, hintConfigured bool) string {
	switch {
	case refused && hint == "":
		return "not the leader (leader unknown)"
	case refused && hintConfigured:
		return "not the leader (leader is at " + hint + ")"
	case refused:
		return "not the leader (its hint " + hint + " is not a configured controller, so it was not followed)"
	}
	if s, ok := status.FromError(err); ok {
		return "unreachable: " + s.Message()
	}
	return err.Error()
}

// try makes one attempt at addr. A call whose deadline passed before the
// connection was ever up counts as unreachable, not as slow.
func (o *Options) try(ctx context.Context, r resolved, addr string, timeout time.Duration, fn func(ctx context.Context, conn grpc.ClientConnInterface) error) error {
	conn, err := o.connect(r, addr)
	if err != nil {
		return errUnreachable{err}
	}
	defer conn.Close()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err = fn(ctx, conn)
	if status.Code(err) == codes.DeadlineExceeded && conn.GetState() != connectivity.Ready {
		return errUnreachable{err}
	}
	return err
}

// errUnreachable is a controller that could not be connected to at all.
type errUnreachable struct{ err error }

func (e errUnreachable) Error() string { return "unreachable: " + e.err.Error() }
func (e errUnreachable) Unwrap() error { return e.err }

// isConnError reports whether err means the controller could not be
// reached, as opposed to an answer from it.
func isConnError(err error) bool {
	var u errUnreachable
	if errors.As(err, &u) {
		return true
	}
	_, refused := leaderhint.Leader(err)
	return !refused && status.Code(err) == codes.Unavailable
}

// nextAddr is where a call goes after addr failed: the hinted leader if it
// is configured and untried, else the first untried address after addr in
// the configured order; "" when every address has been tried.
func nextAddr(addrs []string, addr, hint string, tried map[string]bool) string {
	if hint != "" && slices.Contains(addrs, hint) && !tried[hint] {
		return hint
	}
	i := slices.Index(addrs, addr)
	for k := 1; k <= len(addrs); k++ {
		if a := addrs[(i+k)%len(addrs)]; !tried[a] {
			return a
		}
	}
	return ""
}

// explain turns transport errors into advice a person can act on.
func explain(addr string, err error) error {
	if hint, refused := leaderhint.Leader(err); refused {
		if hint == "" {
			return fmt.Errorf("controller at %s is a standby and does not know the leader yet; try again shortly: %w", addr, err)
		}
		return fmt.Errorf("controller at %s is a standby; the leader is at %s: add it to --controller or QUARRY_CONTROLLER (a leader hint is only followed to a configured controller): %w", addr, hint, err)
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch s.Code() {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach the controller at %s: %s (is quarry-controller running? set --controller or QUARRY_CONTROLLER)", addr, s.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("controller at %s did not answer in time", addr)
	case codes.Unauthenticated:
		return fmt.Errorf("not authenticated: %s", s.Message())
	case codes.PermissionDenied:
		return fmt.Errorf("permission denied: %s", s.Message())
	case codes.NotFound:
		return fmt.Errorf("not found: %s", s.Message())
	case codes.InvalidArgument:
		return fmt.Errorf("invalid: %s", s.Message())
	}
	return fmt.Errorf("%s: %s", s.Code(), s.Message())
}
