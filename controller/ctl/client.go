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
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	quarryv1 "github.com/quarryfleet/quarry/proto/quarry/v1"
)

// FileConfig is what 'quarryctl login' stores.
type FileConfig struct {
	Controller string `yaml:"controller"`
	Token      string `yaml:"token"`
	CAPEM      string `yaml:"ca_pem"`
}

// Options are the global flags.
type Options struct {
	Controller string
	Token      string
	CAFile     string
	DataDir    string
	ConfigPath string
	Output     string
	Timeout    time.Duration
}

// DefaultConfigPath is where login keeps the credential.
func DefaultConfigPath() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "quarry", "quarryctl.yaml")
	}
	return ".quarryctl.yaml"
}

// resolved is the controller address, credential and CA after all sources
// have been consulted.
type resolved struct {
	addr  string
	token string
	ca    *x509.CertPool
	from  string
}

// resolve takes, in order: flags and environment, then the login file, then
// the local controller's data dir, so 'quarryctl rigs list' works with no
// flags next to a local controller.
func (o *Options) resolve() (resolved, error) {
	r := resolved{addr: o.Controller, token: o.Token}
	var caPEM []byte
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return r, fmt.Errorf("--ca: %w", err)
		}
		caPEM = b
	}
	if fc, err := readFileConfig(o.ConfigPath); err == nil {
		if r.addr == "" {
			r.addr = fc.Controller
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
	if r.addr == "" {
		r.addr = "127.0.0.1:7443"
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

// dial connects to the controller.
func (o *Options) dial() (quarryv1.FleetServiceClient, func(), string, error) {
	conn, addr, err := o.dialConn()
	if err != nil {
		return nil, nil, "", err
	}
	return quarryv1.NewFleetServiceClient(conn), func() { conn.Close() }, addr, nil
}

// dialConn connects to the controller for any admin service.
func (o *Options) dialConn() (*grpc.ClientConn, string, error) {
	r, err := o.resolve()
	if err != nil {
		return nil, "", err
	}
	host, _, err := net.SplitHostPort(r.addr)
	if err != nil {
		return nil, "", fmt.Errorf("--controller %q: %w", r.addr, err)
	}
	tc := &tls.Config{RootCAs: r.ca, ServerName: host, MinVersion: tls.VersionTLS13}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc)), grpc.WithPerRPCCredentials(bearer{r.token})}, o.cleanReplies()...)
	conn, err := grpc.NewClient(r.addr, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("controller %s: %w", r.addr, err)
	}
	return conn, r.addr, nil
}

// explain turns transport errors into advice a person can act on.
func explain(addr string, err error) error {
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
